"""The largest request body the model server reads.

A predict request holds at most `inputs.MAX_INSTANCES` rows, but that is only known once its JSON
is parsed, and parsing a body of hundreds of megabytes would take the pod past its memory limit
first. So the body is read here, before any route sees it: a declared `Content-Length` over the
limit is refused before a byte is read, and a chunked body as soon as it passes the limit. The
refusal is a 413 with the server's error body, logged as one INFO line and counted like any other
client error. The default is far above the largest valid request (1,000 rows of about 300 bytes).
"""

from __future__ import annotations

from serving import errors
from serving.auth import route_template
from serving.metrics import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_REQUEST_FLAG = "--max_request_bytes"


def too_large(limit: int) -> str:
    return (
        f"request body is larger than the {limit:,} bytes this server accepts "
        f"({MAX_REQUEST_FLAG}); send fewer instances per request"
    )


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when it has none (chunked) or it is not a number
    (the HTTP server refuses that before the app sees it)."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """ASGI middleware: reads each HTTP request body up to `limit` bytes, then hands it on; a
    larger one is answered 413 and the app never sees it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"the request body limit must be positive, got {limit}")
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.limit:
            await self.refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                replay = message
                break
            body = message.get("body", b"")
            size += len(body)
            if size > self.limit:
                await self.refuse(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                replay = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        sent = False

        async def replayed() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return replay
            return await receive()

        await self.app(scope, replayed, send)

    async def refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = route_template(scope.get("path", ""))
        message = too_large(self.limit)
        closing = {"Connection": "close"}
        await errors.refuse_unrouted(scope, receive, send, route, 413, message, closing)
