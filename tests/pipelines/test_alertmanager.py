"""Alertmanager's route to the alert receiver (grafana/alertmanager.py): amtool accepts the file
and routes exactly the action alerts to the receiver; the cluster's AlertmanagerConfig routes the
same; and a real Alertmanager (Debian's `prometheus-alertmanager`) delivers a posted alert, its
repeats and its resolution to a real receiver, which starts exactly one run."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from grafana import alertmanager, alerts
from pipelines import alert_receiver
from tests.support.alert_receiver import Receiver, recorded, run_receiver, stand_in
from tests.support.observability import require, run_alertmanager
from tests.support.servers import ServerProcess

AMTOOL_WHY = "Debian package `prometheus-alertmanager` ships it; .ci/run installs it"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require("amtool", AMTOOL_WHY)
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    path = tmp_path / "alertmanager.yml"
    config = alertmanager.alertmanager_config("http://127.0.0.1:9095/alerts", token)
    path.write_text(yaml.safe_dump(config))
    return path


def test_amtool_accepts_the_configuration(config_file: Path) -> None:
    checked = amtool("check-config", str(config_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


@pytest.mark.parametrize("rule", alerts.ALERTS, ids=lambda rule: rule.name)
def test_only_the_action_and_rollback_alerts_reach_the_receiver(
    config_file: Path, rule: alerts.Alert
) -> None:
    routed = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={config_file}",
        f"alertname={rule.name}",
        f"{rule.key}=telecom",
        f"severity={rule.severity}",
    )
    assert routed.returncode == 0, routed.stderr
    expected = alertmanager.RECEIVER if rule.name in alertmanager.ROUTED else alertmanager.DROP
    assert routed.stdout.strip() == expected


def test_the_clusters_alertmanager_config_routes_what_the_file_routes() -> None:
    file = alertmanager.alertmanager_config("http://x/alerts")
    [route] = file["route"]["routes"]
    [webhook] = file["receivers"][1]["webhook_configs"]
    resource = alertmanager.alertmanager_config_resource()
    spec = resource["spec"]
    [matcher] = spec["route"]["matchers"]
    assert route["matchers"] == [f'alertname{matcher["matchType"]}"{matcher["value"]}"']
    assert set(matcher["value"].split("|")) == set(alertmanager.ROUTED)
    assert spec["route"]["groupBy"] == route["group_by"]
    for snake, camel in [
        ("group_wait", "groupWait"),
        ("group_interval", "groupInterval"),
        ("repeat_interval", "repeatInterval"),
    ]:
        assert spec["route"][camel] == route[snake]
    [receiver] = spec["receivers"]
    [hook] = receiver["webhookConfigs"]
    assert (hook["sendResolved"], hook["maxAlerts"]) == (
        webhook["send_resolved"],
        webhook["max_alerts"],
    )
    assert hook["url"] == alertmanager.CLUSTER_URL
    # A repeat comes within the receiver's cool-down, where it is deduplicated.
    assert _seconds(route["repeat_interval"]) < alert_receiver.COOLDOWN_S


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(duration[:-1]) * units[duration[-1]]


# --- A real Alertmanager -------------------------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Receiver, ServerProcess, Path]]:
    """A receiver (token required, the runs a stand-in) and an Alertmanager routing to it with
    second-long intervals."""
    require("prometheus-alertmanager", "Debian package `prometheus-alertmanager`")
    token = tmp_path / "token"
    token.write_text("am-t0ken\n")
    record = tmp_path / "runs.jsonl"
    args, env = stand_in(record)
    receiver = run_receiver(tmp_path / "state", *args, "--token-file", str(token), env=env)
    try:
        config = alertmanager.alertmanager_config(
            f"{receiver.url}/alerts",
            token,
            group_wait="1s",
            group_interval="1s",
            repeat_interval="2s",
        )
        manager = run_alertmanager(tmp_path, config)
        try:
            yield receiver, manager, record
        finally:
            manager.stop()
    finally:
        receiver.process.stop()


def post_alert(manager: ServerProcess, ends_at: datetime | None = None) -> None:
    now = datetime.now(UTC)
    alert: dict[str, Any] = {
        "labels": {"alertname": "MLOpsPredictionShift", "isvc": "telecom", "severity": "warning"},
        "annotations": {"summary": "Predicted classes of telecom moved by more than 15 points"},
        "startsAt": (now - timedelta(minutes=30)).isoformat(),
        "generatorURL": "http://prometheus.monitoring:9090/graph",
    }
    if ends_at is not None:
        alert["endsAt"] = ends_at.isoformat()
    posted = httpx.post(f"{manager.url}/api/v2/alerts", json=[alert], timeout=10)
    assert posted.status_code == 200, posted.text


def wait_for(receiver: Receiver, found: Any, what: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in receiver.log():
            if found(line):
                return line
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout} s: {receiver.log()}")


def test_an_alert_posted_to_alertmanager_starts_exactly_one_run(
    stack: tuple[Receiver, ServerProcess, Path],
) -> None:
    receiver, manager, record = stack
    post_alert(manager)
    started = wait_for(receiver, lambda line: line.get("decision") == "started", "start")
    [held] = httpx.get(f"{manager.url}/api/v2/alerts", timeout=10).json()
    assert started["fingerprint"] == held["fingerprint"]
    assert (started["project"], started["alertname"]) == ("telecom", "MLOpsPredictionShift")
    # Alertmanager sends the still-firing alert again each repeat_interval: deduplicated.
    wait_for(receiver, lambda line: line.get("decision") == "deduplicated", "repeat")
    # Its resolution reaches the receiver too (send_resolved), which forgets the fingerprint.
    post_alert(manager, ends_at=datetime.now(UTC) - timedelta(seconds=1))
    gone = wait_for(
        receiver,
        lambda line: line.get("status") == "resolved",
        "resolved notification",
    )
    assert (gone["decision"], gone["run"]) == ("ignored", started["run"])
    wait_for(receiver, lambda line: line["event"] == "run-finished", "run-finished")
    decisions = [line["decision"] for line in receiver.log() if line["event"] == "decision"]
    assert decisions.count("started") == 1
    assert set(decisions) == {"started", "deduplicated", "ignored"}
    [run] = recorded(record)
    assert run["argv"] == ["--project", "telecom"]
    # Every notification carried the token: none was refused.
    assert "401" not in receiver.process.log_tail()
