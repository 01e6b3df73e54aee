"""Client errors answered as data and logged as one line; server errors logged as KServe logs them.

KServe 0.21's exception handlers (`kserve/errors.py`) log every error response at ERROR with its
traceback, a misspelt field as loudly as a crash, about twenty lines each. Here:

- The server's own client errors (`RequestRejected`: 400, `UnknownModel`: 404), FastAPI's 422
  (a v2 body that is not the Open Inference Protocol's) and Starlette's other 4xx (a v2 body
  that is not readable JSON, an unknown route) have handlers of their own, which answer
  `{"error": ..., "problems": [...]}` and log one INFO line. Starlette picks the handler of the
  most specific class in the exception's MRO, so KServe's handlers for the base classes, which it
  installs when it starts, do not replace these.
- What KServe's own handlers log for a client error or a not-ready answer (a readiness probe
  while the model loads) becomes one INFO line, through a filter on KServe's logger.
- Anything else, a 5xx, keeps KServe's ERROR line and traceback.

A 401 (`serving.auth`) is answered before routing, and logged by `log_client_error` too.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady
from kserve.logging import logger
from starlette.exceptions import HTTPException

from serving.inputs import Problem, RequestRejected
from serving.metrics import ROUTE_TEMPLATE, Receive, Scope, Send

CLIENT_SIDE = (InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady)
"""What KServe's handlers answer with a 4xx, or a 503 that only says "not ready yet"."""
KSERVE_HANDLERS = os.path.join("kserve", "errors.py")
"""Where KServe's exception handlers log."""


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


class UnknownModel(ModelNotFound):
    """A 404 for a model name this server does not serve, with the closest one it does."""

    def __init__(self, name: str, served: Sequence[str]) -> None:
        super().__init__(name)
        close = difflib.get_close_matches(name, list(served), n=1)
        self.suggestion = close[0] if close else None
        hint = f": did you mean {self.suggestion!r}?" if self.suggestion else ""
        listed = ", ".join(sorted(served))
        self.reason = f"no model named {name[:100]!r} here{hint} (served: {listed})"
        self.problem = Problem(
            None, "model_name", self.reason, value=name, suggestion=self.suggestion
        )

    def body(self) -> dict[str, Any]:
        return {"error": self.reason, "problems": [self.problem.to_json()]}


def log_client_error(status: int, method: str, route: str, message: str) -> None:
    logger.info("client error %d on %s %s: %s", status, method, route, _one_line(message))


async def refuse_unrouted(
    scope: Scope,
    receive: Receive,
    send: Send,
    route: str,
    status: int,
    message: str,
    headers: dict[str, str],
) -> None:
    """Answers a request that middleware refuses before routing (401, 413) as the routes answer
    a client error: the error body, one INFO line, and `route` (its template) for the metrics."""
    scope[ROUTE_TEMPLATE] = route
    log_client_error(status, scope.get("method", ""), route, message)
    response = JSONResponse(
        status_code=status, content={"error": message, "problems": []}, headers=headers
    )
    await response(scope, receive, send)


def _answer(request: Request, status: int, body: dict[str, Any]) -> JSONResponse:
    route = getattr(request.scope.get("route"), "path", "unmatched")
    log_client_error(status, request.method, route, str(body["error"]))
    return JSONResponse(status_code=status, content=body)


async def _request_rejected_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestRejected)
    return _answer(request, 400, exc.body())


async def _unknown_model_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnknownModel)
    return _answer(request, 404, exc.body())


async def _request_validation_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 (a v2 body that does not follow the protocol's schema), as a client error."""
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = [str(part) for part in error.get("loc", ())]
        # KServe's infer body is `InferenceRequest | bytes`: pydantic reports both branches, and
        # only the first says anything to a client that sent JSON
        if where[:2] == ["body", "bytes"]:
            continue
        where = [part for part in where if part not in ("body", "InferenceRequest")]
        rule = str(error.get("type", "invalid"))
        problems.append(
            Problem(
                ".".join(where) or None,
                rule,
                str(error.get("msg", "invalid")),
                value=None if rule == "missing" else error.get("input"),
            )
        )
    if not problems:
        problems.append(Problem(None, "format", "the body does not follow the protocol"))
    return _answer(request, 422, RequestRejected(problems).body())


HTTP_RULES = {403: "forbidden", 404: "route", 405: "method"}
"""The rule of a Starlette 4xx other than a body FastAPI could not read."""


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette's and FastAPI's own 4xx (a v2 body that is not readable JSON, an unknown route,
    a wrong method) in the server's error body; anything else as FastAPI answers it."""
    assert isinstance(exc, HTTPException)
    if not 400 <= exc.status_code < 500:
        return await http_exception_handler(request, exc)
    cause = exc.__cause__
    if exc.status_code == 400 and cause is not None:  # FastAPI read the body as JSON and failed
        reason = (
            "nested too deeply"
            if isinstance(cause, RecursionError)
            else f"{type(cause).__name__}: {cause}"
        )
        problem = Problem(None, "json", f"body is not valid JSON: {reason}")
    else:
        problem = Problem(None, HTTP_RULES.get(exc.status_code, "request"), str(exc.detail))
    response = _answer(request, exc.status_code, RequestRejected([problem]).body())
    response.headers.update(exc.headers or {})
    return response


class _ClientErrorsAsInfo(logging.Filter):
    """Turns what KServe's exception handlers log for a client error or a not-ready answer into
    one INFO line: the exception's class and message, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if (
            record.levelno < logging.ERROR
            or not record.pathname.endswith(KSERVE_HANDLERS)
            or not isinstance(error, CLIENT_SIDE)
        ):
            return True
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.msg, record.args = "%s: %s", (type(error).__name__, _one_line(str(error)))
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def install(app: FastAPI) -> None:
    """Adds the handlers to KServe's app and the filter to its logger (after KServe has set up
    its logging, which replaces the logger's handlers but keeps its filters)."""
    app.add_exception_handler(RequestRejected, _request_rejected_handler)
    app.add_exception_handler(UnknownModel, _unknown_model_handler)
    app.add_exception_handler(RequestValidationError, _request_validation_handler)
    app.add_exception_handler(HTTPException, _http_error_handler)
    if not any(isinstance(f, _ClientErrorsAsInfo) for f in logger.filters):
        logger.addFilter(_ClientErrorsAsInfo())
