"""The dashboard and the alerts against a real Prometheus scraping the real model servers.

Prometheus (Debian package `prometheus`) scrapes the three servers of this test run every second
with the `isvc` label that the PodMonitor sets on a cluster, and loads the alerting rules. Every
panel query and every rule must then run without error on the series the servers really emit.

A second Prometheus scrapes a real Pushgateway (Debian package `prometheus-pushgateway`) with
`honor_labels`, as the ServiceMonitor does on a cluster, after `components.core.monitoring.publish`
pushed two monitoring runs to it, and a server whose inference log drops every row: the "Data
and model quality" panels must show them and the quality alerts pick out the right projects.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from components.core import monitoring
from components.core.contracts import MonitoringSummary
from grafana import alerts, dashboard, local
from tests.serving.support import Served, instances, predict
from tests.support.observability import Prometheus, run_prometheus, run_pushgateway
from tests.support.records import drift_summary, monitoring_summary
from tests.support.servers import ServerProcess

WINDOW = "30s"
# Every panel has data once the servers have answered good and bad requests, but the 5xx ratio:
# zero or no series, as nothing failed (503s while a model loaded are older than the window).
ZERO_WHEN_HEALTHY = {
    "Server error ratio (5xx)",
    # nothing staged and no arm failing while these servers serve their champions alone
    "Staged version",
    "Failed requests per second by arm",
}
PROMQL_FUNCTIONS = {"sum", "rate", "increase", "max", "abs", "count", "and", "histogram_quantile"}
PROMQL_FUNCTIONS |= {"time", "or"}
GROUPING = re.compile(r"\b(by|on|ignoring|without|group_left|group_right)\s*(\([^)]*\))?")
# What the monitoring runs push and the inference log counts: the second Prometheus's part.
QUALITY_TITLES = {make()["title"] for make in dashboard.QUALITY_PANELS}
QUALITY_ALERTS = {a.name for a in alerts.ALERTS if a.key == "project" or "inference_log" in a.expr}
QUERIES = dashboard.queries(dashboard.dashboard())
SERVING_QUERIES = [(title, expr) for title, expr in QUERIES if title not in QUALITY_TITLES]
QUALITY_QUERIES = [(title, expr) for title, expr in QUERIES if title in QUALITY_TITLES]


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, servers: dict[str, ServerProcess]
) -> Iterator[Prometheus]:
    config = local.prometheus_config(
        {name: f"127.0.0.1:{server.port}" for name, server in servers.items()}, interval="1s"
    )
    process = run_prometheus(tmp_path_factory.mktemp("prometheus"), config)
    try:
        server = Prometheus.of(process)
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


@pytest.mark.parametrize(("title", "expr"), SERVING_QUERIES, ids=lambda v: str(v)[:40])
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


def series_read(exprs: list[str]) -> set[str]:
    """The series names a list of PromQL expressions read."""
    read = set()
    for expr in exprs:
        without_strings = re.sub(r'"[^"]*"', "", expr)
        without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", GROUPING.sub("", without_strings))
        read |= set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels)) - PROMQL_FUNCTIONS
    assert read, "no series found in the queries"
    return read


def assert_emitted(prometheus: Prometheus, read: set[str]) -> None:
    emitted = set(
        httpx.get(f"{prometheus.url}/api/v1/label/__name__/values", timeout=10).json()["data"]
    )
    assert read <= emitted, f"read but never emitted: {sorted(read - emitted)}"


def test_every_series_the_panels_and_rules_read_is_emitted(traffic: Prometheus) -> None:
    exprs = [expr for _, expr in SERVING_QUERIES]
    exprs += [alert.expr for alert in alerts.ALERTS if alert.name not in QUALITY_ALERTS]
    # a staged version's gauge exists only during a rollout (tests/serving/test_rollout_http.py)
    assert_emitted(traffic, series_read(exprs) - {"mlops_staged_share"})


# --- Data and model quality: a real Pushgateway, real pushes, a server that drops its log -----

DRIFTING, STALE = "telecom", "bankchurn"
EXPECTED = {
    # alert -> what its expression returns: (its project label, the metric where it has one)
    "MLOpsDataDrift": {(DRIFTING, None)},
    "MLOpsLiveQualityDrop": {(DRIFTING, "accuracy")},
    "MLOpsRetrainRecommended": {(DRIFTING, None)},
    "MLOpsMonitoringStale": {(STALE, None)},
    "MLOpsInferenceLogDropping": {("bankchurn", None)},
}


def run_summary(served: Served, when: dt.datetime, drifted: bool) -> MonitoringSummary:
    """A monitoring run that found drift in two columns and accuracy 0.12 under the registered
    figure (f1 0.03 under, within tolerance), or a healthy one."""
    columns = served.spec.input_columns[:2] if drifted else []
    live, registered = (
        ({"accuracy": 0.70, "f1": 0.52}, {"accuracy": 0.82, "f1": 0.55})
        if drifted
        else ({"roc_auc": 0.85}, {"roc_auc": 0.86})
    )
    return monitoring_summary(
        project=served.spec.name,
        time=when.isoformat(timespec="seconds"),
        drift=drift_summary(
            drift_detected=drifted,
            drifted_columns=columns,
            drifted_important_columns=columns[:1],
            drift_share=0.25 if drifted else 0.0,
            weighted_drift_share=0.6 if drifted else 0.0,
            column_drifted={c: c in columns for c in served.spec.input_columns},
        ),
        live_metrics=live,
        registered_metrics=registered,
        quality_ok=not drifted,
        retrain=drifted,
        reason="drift" if drifted else "no drift",
    )


@pytest.fixture(scope="module")
def quality(
    tmp_path_factory: pytest.TempPathFactory,
    processes: dict[str, ServerProcess],
    served: dict[str, Served],
) -> Iterator[Prometheus]:
    """Prometheus scraping a Pushgateway that two monitoring runs pushed to (one that found
    drift, one older than the staleness limit), and conftest's `dropping` server once it has
    dropped rows."""
    root = tmp_path_factory.mktemp("quality")
    gateway = run_pushgateway(root)
    port = gateway.port
    dropping = processes["dropping"]
    process: ServerProcess | None = None
    try:
        now = dt.datetime.now(dt.UTC)
        stale = now - dt.timedelta(hours=alerts.STALE_AFTER_HOURS + 10)
        monitoring.publish(run_summary(served[DRIFTING], now, True), f"127.0.0.1:{port}")
        monitoring.publish(run_summary(served[STALE], stale, False), f"127.0.0.1:{port}")
        dropping.wait_ready()
        config = local.prometheus_config(
            {"bankchurn": f"127.0.0.1:{dropping.port}"},
            interval="1s",
            pushgateway=f"127.0.0.1:{port}",
        )
        process = run_prometheus(root, config)
        server = Prometheus.of(process)
        server.wait_for(f'up{{job="{local.JOB}"}} == 1')
        server.wait_for(f'up{{job="{local.PUSHGATEWAY_JOB}"}} == 1')
        # Rows the `dropping` server cannot log, once Prometheus has seen its counter.
        rows = instances(served["bankchurn"].spec, served["bankchurn"].test_frame.head(2))
        for _ in range(3):
            assert predict(dropping, rows).status_code == 200
        server.wait_for(f"increase(mlops_inference_log_dropped_total[{WINDOW}]) > 0")
        yield server
    finally:
        if process is not None:
            process.stop()
        gateway.stop()


def test_the_pushed_series_keep_the_job_and_project_of_the_push(quality: Prometheus) -> None:
    result = quality.query("mlops_monitoring_drift_detected")
    assert {(s["metric"]["job"], s["metric"]["project"]) for s in result} == {
        (monitoring.PUSH_JOB, DRIFTING),
        (monitoring.PUSH_JOB, STALE),
    }


@pytest.mark.parametrize(("title", "expr"), QUALITY_QUERIES, ids=lambda v: str(v)[:40])
def test_every_quality_panel_query_shows_the_monitoring_runs(
    quality: Prometheus, title: str, expr: str
) -> None:
    result = quality.query(as_prometheus_sees_it(expr))
    assert result, f"panel {title!r} shows nothing for {expr}"
    named = {s["metric"].get("project") or s["metric"].get("isvc") for s in result}
    assert named <= {DRIFTING, STALE}, result


LOAD_DEPENDENT = {"MLOpsPredictLatencyHigh"}


def test_the_quality_rules_evaluate_and_pick_out_the_right_projects(quality: Prometheus) -> None:
    assert set(EXPECTED) == QUALITY_ALERTS
    for alert in alerts.ALERTS:
        if alert.name in EXPECTED:
            found = {
                (s["metric"][alert.key], s["metric"].get("metric"))
                for s in quality.query(alert.expr)
            }
            assert found == EXPECTED[alert.name], alert.name
    deadline = time.monotonic() + 15
    while True:
        groups = httpx.get(f"{quality.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        raised = {rule["name"] for rule in rules if rule["state"] != "inactive"}
        if raised >= set(EXPECTED):
            break
        assert time.monotonic() < deadline, f"only {sorted(raised)} raised"
        time.sleep(0.5)
    # The latency rule answers to the machine's load, not to the monitoring runs: on a busy
    # 2-core test machine it may go pending, and it has its own tests.
    assert raised - LOAD_DEPENDENT == set(EXPECTED)
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def test_every_series_the_quality_panels_and_rules_read_is_emitted(quality: Prometheus) -> None:
    exprs = [expr for _, expr in QUALITY_QUERIES]
    exprs += [alert.expr for alert in alerts.ALERTS if alert.name in QUALITY_ALERTS]
    assert_emitted(quality, series_read(exprs))
