"""Bearer-token authentication of the model server's HTTP routes.

With a token (the environment variable MLOPS_API_TOKEN, or `--api-token-file`), every request
needs `Authorization: Bearer <token>`, except GET and HEAD on the read-only routes in
OPEN_ROUTES: liveness, readiness, model metadata and `/metrics`, which probes and Prometheus
call without credentials. Anything else, routes KServe may add included, is closed by default.
The check runs before the body is read; a refusal is a 401 with the server's error body and
`WWW-Authenticate: Bearer`, logged as one INFO line, counted like any other client error.
The token is never logged, nor is the Authorization header.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Mapping
from pathlib import Path

from kserve.logging import logger

from serving import errors, metrics
from serving.metrics import ASGIApp, Receive, Scope, Send

TOKEN_ENV = "MLOPS_API_TOKEN"
TOKEN_FILE_FLAG = "--api-token-file"
SHORT_TOKEN = 16
"""Fewer characters than this draw a warning: such a token is easy to guess."""
UNAUTHORIZED = "missing or invalid bearer token"
"""The one message of every 401: it does not say whether the header was missing or wrong."""

OPEN_ROUTES = (
    "/",
    "/metrics",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v1/models",
    "/v1/models/{model_name}",
    "/v2/models",
    "/v2/models/{model_name}",
    "/v2/models/{model_name}/ready",
    "/v2/models/{model_name}/versions/{model_version}",
    "/v2/models/{model_name}/versions/{model_version}/ready",
)
"""Answered without a token on GET and HEAD."""
CLOSED_ROUTES = (
    "/v1/models/{model_name}:predict",
    "/v1/models/{model_name}:explain",
    "/v2/models/{model_name}/infer",
    "/v2/models/{model_name}/versions/{model_version}/infer",
    "/v2/repository/models/{model_name}/load",
    "/v2/repository/models/{model_name}/unload",
)
"""KServe's routes that need the token, named here only to label their 401s in the request
metrics; a route on neither list needs the token too (and its 401 is labelled unmatched)."""
OPEN_METHODS = frozenset({"GET", "HEAD"})


class TokenError(ValueError):
    """The token cannot be read or used; the message says why (and never contains it)."""


def _pattern(template: str) -> re.Pattern[str]:
    """A route template as Starlette matches it: each `{param}` is one path segment."""
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile(
        "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts if p) + "$"
    )


_OPEN = [_pattern(t) for t in OPEN_ROUTES]
_LABELS = [(_pattern(t), t) for t in CLOSED_ROUTES + OPEN_ROUTES]


def is_open(method: str, path: str) -> bool:
    return method in OPEN_METHODS and any(p.match(path) for p in _OPEN)


def route_template(path: str) -> str:
    for pattern, template in _LABELS:
        if pattern.match(path):
            return template
    return metrics.UNMATCHED_ROUTE


def _checked(token: bytes, where: str) -> bytes:
    token = token.strip()
    if not token:
        raise TokenError(f"{where} is empty: give a token, or drop it to serve without one")
    if not all(0x21 <= byte <= 0x7E for byte in token):
        raise TokenError(
            f"{where} holds characters other than printable ASCII, or spaces: a bearer "
            "token is sent in an HTTP header, so clients could not send this one"
        )
    return token


def read_token(token_file: str | None, environ: Mapping[str, str] = os.environ) -> bytes | None:
    """The API token from `--api-token-file` (its content, stripped) or $MLOPS_API_TOKEN;
    None when neither is given (no authentication). Raises TokenError naming the problem."""
    from_env = environ.get(TOKEN_ENV)
    if token_file is not None and from_env is not None:
        raise TokenError(
            f"both {TOKEN_FILE_FLAG} and ${TOKEN_ENV} are given: give the token one way"
        )
    if token_file is not None:
        where = f"the API token file {token_file}"
        try:
            content = Path(token_file).read_bytes()
        except OSError as exc:
            raise TokenError(f"cannot read {where}: {exc.strerror or exc}") from None
        token = _checked(content, where)
    elif from_env is not None:
        token = _checked(from_env.encode("utf-8", "surrogateescape"), f"${TOKEN_ENV}")
    else:
        return None
    return token


def log_setting(token: bytes | None, token_file: str | None) -> None:
    """One line at start saying whether predict, explain and infer need a token (never it)."""
    if token is None:
        logger.info("no API token given: predict, explain and infer answer any client")
        return
    source = f"{TOKEN_FILE_FLAG} {token_file}" if token_file else f"${TOKEN_ENV}"
    logger.info("predict, explain and infer require the bearer token from %s", source)
    if len(token) < SHORT_TOKEN:
        logger.warning("the API token is shorter than %d characters: easy to guess", SHORT_TOKEN)


def bearer(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The credentials of the request's one `Authorization: Bearer ...` header, else None."""
    values = [value for name, value in headers if name.lower() == b"authorization"]
    if len(values) != 1:
        return None
    scheme, _, credentials = values[0].strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return credentials.strip() or None


class BearerAuth:
    """ASGI middleware: closed routes answer 401 unless the request carries the token."""

    def __init__(self, app: ASGIApp, token: bytes) -> None:
        if not token:
            raise ValueError("BearerAuth needs a token")
        self.app, self.token = app, token

    def authorized(self, scope: Scope) -> bool:
        given = bearer(scope.get("headers", []))
        return given is not None and hmac.compare_digest(given, self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        method = scope.get("method", "GET")
        if self.authorized(scope) or is_open(method, path):
            await self.app(scope, receive, send)
            return
        route = route_template(path)
        if scope["type"] == "websocket":  # KServe has no websocket route; closed all the same
            scope[metrics.ROUTE_TEMPLATE] = route
            await send({"type": "websocket.close", "code": 1008})
            return
        challenge = {"WWW-Authenticate": "Bearer"}
        await errors.refuse_unrouted(scope, receive, send, route, 401, UNAUTHORIZED, challenge)
