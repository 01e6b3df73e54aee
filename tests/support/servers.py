"""Start a server as a separate process on a free local port and wait for it (tests, benchmarks)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.models import model_file_sha256

REPO_ROOT = Path(__file__).resolve().parents[2]


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before by this process: servers started together
    bind only later, and the kernel may offer a port it just offered again."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


TOKEN_ENV = "MLOPS_API_TOKEN"


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a server, less any API token of the caller's (a server
    requires one only when the test gives it)."""
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.update(extra or {})
    return env


@dataclass
class ServerProcess:
    project: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    group: bool = False
    """The command leads a process group of its own (e.g. `make serve` and the server it
    starts): signals go to the whole group."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def status(self, path: str) -> int | None:
        """HTTP status of GET `path`, or None while nothing listens."""
        try:
            return httpx.get(self.url + path, timeout=5.0).status_code
        except httpx.TransportError:
            return None

    def _wait(self, path: str, timeout: float, interval: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.project} server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.status(path) == 200:
                return
            time.sleep(interval)
        raise TimeoutError(
            f"{self.project} server: {path} not 200 after {timeout:g}s:\n{self.log_tail()}"
        )

    def wait_live(self, timeout: float = 120.0) -> None:
        self._wait("/", timeout, 0.02)

    def wait_ready(self, timeout: float = 180.0, path: str = "/v2/health/ready") -> None:
        self._wait(path, timeout, 0.2)

    def ready_or_stopped(self, timeout: float, path: str) -> ServerProcess:
        """Waits until `path` answers 200 and returns this server; stops it if it never does."""
        try:
            self.wait_ready(timeout=timeout, path=path)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_exit(self, timeout: float = 120.0) -> int:
        return self.process.wait(timeout=timeout)

    def _signal(self, number: int) -> None:
        if self.group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, number)
        else:
            self.process.send_signal(number)

    def terminate(self) -> None:
        """Asks the server to stop (SIGTERM) without waiting; `stop()` waits."""
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait()


def launch(
    project: str,
    model_uri: str | Path,
    log_path: Path,
    *,
    port: int | None = None,
    cpu: int | None = None,
    extra_args: Sequence[str] = (),
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    inference_log: str | Path | None = None,
    pin_digest: bool = True,
) -> ServerProcess:
    """Starts `python -m serving` (pinned to `cpu` with taskset when given) without waiting;
    `env` adds to this process's environment; `inference_log` is where the server logs what it
    answers (default: nowhere, whatever MLOPS_INFERENCE_LOG says). A model directory is served
    with --model_sha256 of its model file, as a deploy pins it, unless `pin_digest` is False or
    `extra_args` say otherwise (registry URIs carry their digest as a version tag)."""
    port = port or free_port()
    verification = {"--model_sha256", "--allow-unverified-model"}
    if pin_digest and Path(model_uri).is_dir() and not verification & set(extra_args):
        extra_args = ["--model_sha256", model_file_sha256(Path(model_uri)), *extra_args]
    command = [
        python, "-m", "serving",
        "--model_name", project,
        "--model_uri", str(model_uri),
        "--http_port", str(port),
        "--inference_log", str(inference_log or ""),
        *extra_args,
    ]  # fmt: skip
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    return start(project, command, log_path, port, env)


def start(
    name: str,
    command: Sequence[str],
    log_path: Path,
    port: int,
    env: dict[str, str] | None = None,
    group: bool = False,
) -> ServerProcess:
    """Starts `command`, which will listen on `port`, in the background without waiting; its
    output goes to `log_path`; `group`: in a process group of its own, stopped as a whole."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(env),
            cwd=REPO_ROOT,
            start_new_session=group,
        )
    return ServerProcess(name, port, process, log_path, group)
