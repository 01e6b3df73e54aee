"""The alert receiver (pipelines/alert_receiver.py) as a process on a free local port, with a
stand-in for the monitoring run that records what it was given, and Alertmanager-shaped payloads."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from pipelines import alert_receiver
from tests.support.servers import ServerProcess, free_port, start

MLFLOW = "http://mlflow.mlops:5000"
STAND_IN = """
import json, os, sys, time
with open(os.environ["RECORDED_RUNS"], "a") as out:
    out.write(json.dumps({
        "argv": sys.argv[1:],
        "env": {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLOPS_INFERENCE_LOG", "PUSHGATEWAY")},
    }) + "\\n")
print("monitoring stand-in ran", flush=True)
time.sleep(0.5)
"""
ENVIRONMENT = {
    "MLFLOW_TRACKING_URI": MLFLOW,
    "MLOPS_INFERENCE_LOG": "s3://mlops/inference",
    "PUSHGATEWAY": "127.0.0.1:9091",
}


def alertmanager_payload(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    """What Alertmanager 0.25's webhook sends (version 4)."""
    return {
        "receiver": "mlops-alert-receiver",
        "status": status,
        "alerts": list(alerts),
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]} if alerts else {},
        "commonLabels": alerts[0]["labels"] if len(alerts) == 1 else {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.monitoring:9093",
        "version": "4",
        "groupKey": '{}/{alertname=~"MLOps..."}:{alertname="MLOpsPredictionShift"}',
        "truncatedAlerts": 0,
    }


def alert(
    alertname: str = "MLOpsPredictionShift",
    project: str = "telecom",
    fingerprint: str = "5b3c1ab8f0a0e7d2",
    status: str = "firing",
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": alertname, "isvc": project, "severity": "warning"},
        "annotations": {"summary": f"Predicted classes of {project} moved by more than 15 points"},
        "startsAt": "2026-03-14T21:30:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=...",
        "fingerprint": fingerprint,
    }


class Receiver:
    def __init__(self, process: ServerProcess, state: Path) -> None:
        self.process, self.state = process, state

    @property
    def url(self) -> str:
        return self.process.url

    def post(self, body: Any, token: str | None = None) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.post(f"{self.url}/alerts", content=content, headers=headers, timeout=30)

    def log(self) -> list[dict[str, Any]]:
        path = self.state / alert_receiver.DECISIONS_FILE
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def wait_for(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.log() if line["event"] == event]
            if found:
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no {event} line after {timeout} s:\n{self.process.log_tail()}")

    def counter(self, project: str, decision: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        series = (
            f'mlops_alert_receiver_decisions_total{{decision="{decision}",project="{project}"}}'
        )
        [value] = [line.split()[-1] for line in text.splitlines() if line.startswith(series)]
        return float(value)


def run_receiver(state: Path, *args: str, env: dict[str, str] | None = None) -> Receiver:
    port = free_port()
    command = [
        sys.executable, "-m", "pipelines.alert_receiver",
        "--port", str(port), "--state-dir", str(state), *args,
    ]  # fmt: skip
    process = start(
        "alert-receiver", command, state.parent / f"receiver-{port}.log", port, env
    ).ready_or_stopped(timeout=60.0, path="/healthz")
    return Receiver(process, state)


def stand_in(record: Path) -> tuple[list[str], dict[str, str]]:
    """Arguments and environment for a receiver whose runs are STAND_IN, appending to `record`."""
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(STAND_IN)}"
    return ["--command", command], {"RECORDED_RUNS": str(record)}


def recorded(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
