"""A real Prometheus, Pushgateway and Alertmanager on free local ports (Debian packages
`prometheus`, `prometheus-pushgateway` and `prometheus-alertmanager`), for the tests that watch
what the servers and the monitoring runs emit, and where their alerts go."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from grafana import local
from tests.support.servers import ServerProcess, free_port, start


class Prometheus:
    def __init__(self, url: str, log_path: Path) -> None:
        self.url, self.log_path = url, log_path

    @classmethod
    def of(cls, process: ServerProcess) -> Prometheus:
        return cls(process.url, process.log_path)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", f"{expr}\n{answer}"
        return answer["data"]["result"]  # type: ignore[no-any-return]

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := self.query(expr):
                return result
            time.sleep(0.5)
        raise AssertionError(f"no result for {expr} after {timeout} s:\n{self.log_tail()}")


def require(binary: str, why: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed ({why})")
    return path


def run_prometheus(root: Path, config: dict[str, Any]) -> ServerProcess:
    """A Prometheus on a free port with `config` (grafana.local's), ready."""
    require("prometheus", "Debian package `prometheus`; .ci/run installs it")
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    return start(
        "prometheus",
        local.command(root / "prometheus.yml", root / "data", f"127.0.0.1:{port}"),
        root / "prometheus.log",
        port,
    ).ready_or_stopped(timeout=30.0, path="/-/ready")


def run_pushgateway(root: Path) -> ServerProcess:
    """A Pushgateway on a free port, ready; it keeps what is pushed in `root`."""
    binary = require("prometheus-pushgateway", "Debian package `prometheus-pushgateway`")
    port = free_port()
    return start(
        "pushgateway",
        [
            binary,
            f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={root / 'pushgateway.data'}",
        ],
        root / "pushgateway.log",
        port,
    ).ready_or_stopped(timeout=30.0, path="/-/ready")


def run_alertmanager(root: Path, config: dict[str, Any]) -> ServerProcess:
    """An Alertmanager on a free port with `config` (grafana.alertmanager's), ready; alone (no
    cluster peers), its state in `root`."""
    binary = require(
        "prometheus-alertmanager",
        "Debian package `prometheus-alertmanager`; .ci/run installs it",
    )
    (root / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    return start(
        "alertmanager",
        [
            binary,
            f"--config.file={root / 'alertmanager.yml'}",
            f"--storage.path={root / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        root / "alertmanager.log",
        port,
    ).ready_or_stopped(timeout=30.0, path="/-/ready")
