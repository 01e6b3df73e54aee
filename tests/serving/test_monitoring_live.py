"""The dashboard and the alerts against a real Prometheus scraping the real model servers.

Prometheus (Debian package `prometheus`) scrapes the three servers of this test run every second
with the `isvc` label that the PodMonitor sets on a cluster, and loads the alerting rules. Every
panel query and every rule must then run without error on the series the servers really emit.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from grafana import alerts, dashboard, local
from tests.serving.support import Served, instances, predict
from tests.support.servers import ServerProcess, free_port, start

WINDOW = "30s"
# Every panel has data once the servers have answered good and bad requests, but the 5xx ratio:
# zero or no series, as nothing failed (503s while a model loaded are older than the window).
ZERO_WHEN_HEALTHY = {"Server error ratio (5xx)"}
PROMQL_FUNCTIONS = {"sum", "rate", "increase", "max", "abs", "count", "and", "histogram_quantile"}
GROUPING = re.compile(r"\b(by|on|ignoring|without|group_left|group_right)\s*(\([^)]*\))?")


class Prometheus:
    def __init__(self, process: ServerProcess) -> None:
        self.process, self.url = process, process.url

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
        raise AssertionError(f"no result for {expr} after {timeout} s:\n{self.process.log_tail()}")


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, servers: dict[str, ServerProcess]
) -> Iterator[Prometheus]:
    if shutil.which("prometheus") is None:
        pytest.skip(
            "prometheus is not installed (Debian package `prometheus`; .ci/run installs it)"
        )
    root = tmp_path_factory.mktemp("prometheus")
    config = local.prometheus_config(
        {name: f"127.0.0.1:{server.port}" for name, server in servers.items()}, interval="1s"
    )
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = start(
        "prometheus",
        local.command(root / "prometheus.yml", root / "data", f"127.0.0.1:{port}"),
        root / "prometheus.log",
        port,
    )
    try:
        process.wait_ready(timeout=30.0, path="/-/ready")
        server = Prometheus(process)
        server.wait_for(f'count(up{{job="{local.JOB}"}} == 1) == {len(servers)}')
        yield server
    finally:
        process.stop()


@pytest.fixture(scope="module")
def traffic(
    prometheus: Prometheus, servers: dict[str, ServerProcess], served: dict[str, Served]
) -> Prometheus:
    """Two bursts of good requests and one bad request per project, scraped on both sides."""
    for burst in range(2):
        for name, server in servers.items():
            rows = instances(served[name].spec, served[name].test_frame.head(5))
            assert predict(server, rows).status_code == 200
            if burst == 0:
                assert predict(server, [{"no_such_field": 1}]).status_code == 400
        time.sleep(2.5)
    prometheus.wait_for(
        f"count(increase(request_predict_seconds_count[{WINDOW}]) > 0) == {len(servers)}"
    )
    return prometheus


def as_prometheus_sees_it(expr: str) -> str:
    """A panel query as Grafana sends it: variables replaced."""
    return expr.replace("$__rate_interval", WINDOW).replace("$isvc", ".*")


@pytest.mark.parametrize(
    ("title", "expr"), dashboard.queries(dashboard.dashboard()), ids=lambda v: str(v)[:40]
)
def test_every_panel_query_runs_and_shows_the_traffic(
    traffic: Prometheus, title: str, expr: str
) -> None:
    result = traffic.query(as_prometheus_sees_it(expr))
    if title in ZERO_WHEN_HEALTHY:
        # No series at all when no server ever answered 5xx.
        assert all(float(series["value"][1]) == 0.0 for series in result), result
    else:
        assert result, f"panel {title!r} shows nothing for {expr}"
        assert {series["metric"].get("isvc") for series in result} <= {
            "telecom",
            "bankchurn",
            "carvision",
        }


def test_the_rules_load_evaluate_cleanly_and_stay_quiet_on_healthy_servers(
    traffic: Prometheus,
) -> None:
    deadline = time.monotonic() + 10
    while True:
        groups = httpx.get(f"{traffic.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(not r["lastEvaluation"].startswith("0001") for r in rules):
            break
        assert time.monotonic() < deadline, "the rules were never evaluated"
        time.sleep(0.5)
    assert sorted(rule["name"] for rule in rules) == sorted(a.name for a in alerts.ALERTS)
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        assert rule["state"] == "inactive", rule["name"]


def test_every_series_the_panels_and_rules_read_is_emitted(traffic: Prometheus) -> None:
    exprs = [expr for _, expr in dashboard.queries(dashboard.dashboard())]
    exprs += [alert.expr for alert in alerts.ALERTS]
    read = set()
    for expr in exprs:
        without_strings = re.sub(r'"[^"]*"', "", expr)
        without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", GROUPING.sub("", without_strings))
        read |= set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels)) - PROMQL_FUNCTIONS
    emitted = set(
        httpx.get(f"{traffic.url}/api/v1/label/__name__/values", timeout=10).json()["data"]
    )
    assert read, "no series found in the queries"
    assert read <= emitted, f"read but never emitted: {sorted(read - emitted)}"
