"""A webhook on 127.0.0.1 for the pipelines' notices: `http.server` in a thread, keeping every
POST it received (path, content type, JSON body) and answering with the statuses it was given,
then 200."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET_PATH = "/services/T0000/B0000/s3cr3t-t0ken"
"""The part of a Slack-style URL that is a secret: no log or error may show it."""


@dataclass(frozen=True)
class Received:
    path: str
    content_type: str
    body: dict[str, Any]


class Receiver:
    def __init__(self, answers: Iterable[int] = ()) -> None:
        self.answers = deque(answers)
        self.received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.received.append(
                    Received(
                        self.path,
                        self.headers.get("Content-Type", ""),
                        json.loads(self.rfile.read(length)),
                    )
                )
                status = receiver.answers.popleft() if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the tests read what arrived, not the server's access log

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The webhook's URL, with a secret path as a Slack webhook's."""
        return f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def wait_for(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        """The last notice received that passes `check`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := [r.body for r in self.received if check(r.body)]:
                return found[-1]
            time.sleep(0.2)
        raise AssertionError(f"no such notice within {timeout:g} s: {self.received}")

    def take(self) -> list[dict[str, Any]]:
        """The notices received since the last take."""
        taken, self.received = self.received, []
        return [found.body for found in taken]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
