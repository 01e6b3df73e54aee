"""A stand-in for the KFP REST API on 127.0.0.1 (no KFP API server can run here), for the tests
that submit, schedule or start runs through `kfp.Client`."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any
from urllib.parse import urlsplit


class KfpApi:
    """A stand-in for a KFP API server on 127.0.0.1: it records every request and answers the
    calls `kfp.Client` makes to submit or schedule a run (health, experiment by name, run,
    recurring run)."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.authorizations: list[str | None] = []
        """Each request's Authorization header, in the order of `requests`."""
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.answer(self)

            def do_POST(self) -> None:
                api.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length) or b"{}")
        path = urlsplit(handler.path).path
        self.requests.append((handler.command, path, body))
        self.authorizations.append(handler.headers.get("Authorization"))
        replies: dict[tuple[str, str], dict[str, Any]] = {
            ("GET", "/apis/v2beta1/healthz"): {"multi_user": False},
            ("GET", "/apis/v2beta1/experiments"): {
                "experiments": [{"experiment_id": "exp-1", "display_name": "existing"}],
                "total_size": 1,
            },
            ("POST", "/apis/v2beta1/runs"): {"run_id": "run-1", "experiment_id": "exp-1"},
            ("POST", "/apis/v2beta1/recurringruns"): {"recurring_run_id": "rr-1"},
        }
        reply = replies.get((handler.command, path))
        data = json.dumps(reply if reply is not None else {"error": "not found"}).encode()
        handler.send_response(200 if reply is not None else 404)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def sent(self, method: str, path: str) -> dict[str, Any]:
        [body] = [b for m, p, b in self.requests if (m, p) == (method, path)]
        return body

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
