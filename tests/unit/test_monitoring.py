"""Monitoring's logic: collecting a window (log with late labels, or a file), the verdict, and the
figures it pushes to a real Pushgateway."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from components.core import drift, inference_log, monitoring
from components.core.projects import PROJECTS
from components.core.validate import DataValidationError
from tests.support.records import monitoring_summary
from tests.support.servers import free_port

TELECOM = PROJECTS["telecom"]


def log_rows(root: Path, count: int, when: dt.datetime) -> None:
    frame = TELECOM.make_synthetic(count, 3)
    records = [
        inference_log.record(
            f"req-{i // 2}",
            i % 2,
            when,
            "telecom",
            "4",
            {c: frame.iloc[i][c] for c in TELECOM.input_columns},
            {"ultra_probability": 0.4, "recommended_plan": "Standard"},
        )
        for i in range(count)
    ]
    inference_log.write_part(str(root), "telecom", records)


def test_a_log_window_takes_late_labels_by_request_and_row(tmp_path: Path) -> None:
    now = dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)
    log_rows(tmp_path / "log", 6, now - dt.timedelta(hours=1))
    log_rows(tmp_path / "log", 4, now - dt.timedelta(hours=30))  # outside a 24-hour window
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,row,is_ultra\nreq-0,1,1\nreq-2,0,0\nreq-9,0,1\n")
    window = monitoring.collect(TELECOM, "log", str(tmp_path / "log"), 24, str(labels), now=now)
    assert len(window.frame) == 6 and "inference log" in window.description
    assert list(window.frame.columns) == [*TELECOM.input_columns, "is_ultra"]
    assert window.frame["is_ultra"].fillna(-1).tolist() == [-1, 1, -1, -1, 0, -1]
    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,plan\nreq-0,1\n")
    with pytest.raises(monitoring.MonitoringError, match=r"lacks the column\(s\) \['is_ultra'\]"):
        monitoring.collect(TELECOM, "log", str(tmp_path / "log"), 24, str(bad), now=now)
    with pytest.raises(monitoring.MonitoringError, match="needs the inference log's root"):
        monitoring.collect(TELECOM, "log")


def test_a_file_window_keeps_its_target_as_ground_truth(tmp_path: Path) -> None:
    path = tmp_path / "served.csv"
    TELECOM.make_synthetic(50, 1).to_csv(path, index=False)
    window = monitoring.collect(TELECOM, str(path))
    assert window.frame.shape == (50, 5) and window.description == f"file {path}"
    broken = window.frame.assign(calls=-1.0)
    with pytest.raises(DataValidationError, match="below the minimum 0"):
        monitoring.validate_window(TELECOM, broken)


def result(shifted: bool) -> drift.DriftResult:
    reference = TELECOM.make_synthetic(3000, 1)
    batch = TELECOM.make_synthetic(800, 2)
    if shifted:
        batch = drift.shift(batch, {"mb_used": 1.6})
    return drift.detect(TELECOM, reference, batch, {"mb_used": 1.0, "minutes": 0.5, "calls": 0.2})


def test_the_verdict_retrains_on_drift_or_a_quality_drop_and_not_otherwise() -> None:
    policy = monitoring.MonitoringPolicy()
    registered = {"accuracy": 0.82}
    ok, retrain, why = monitoring.verdict(
        TELECOM, policy, result(False), {"accuracy": 0.80}, 300, registered
    )
    assert (ok, retrain) == (True, False) and why.endswith("live quality within tolerance")
    ok, retrain, why = monitoring.verdict(
        TELECOM, policy, result(False), {"accuracy": 0.70}, 300, registered
    )
    assert (ok, retrain) == (False, True)
    assert why == (
        "live accuracy 0.7000 on 300 labelled rows is worse than the registered 0.8200 by more "
        "than 0.05"
    )
    ok, retrain, why = monitoring.verdict(TELECOM, policy, result(True), {}, 0, registered)
    assert (ok, retrain) == (None, True) and why == "drift in important column(s) mb_used"
    ok, retrain, why = monitoring.verdict(
        TELECOM, policy, result(False), {"accuracy": 0.1}, 20, registered
    )
    assert (ok, retrain) == (None, False) and "not judged (20 labelled rows, 100 needed)" in why


def test_retraining_runs_only_when_called_for_switched_on_and_judgeable() -> None:
    policy = monitoring.MonitoringPolicy(retrain_min_labelled_rows=200)
    assert monitoring.retraining_plan(policy, False, 5000) == (False, "")
    now, why = monitoring.retraining_plan(policy, True, 250)
    assert now and why.endswith("the window's 250 labelled rows")
    now, why = monitoring.retraining_plan(policy, True, 150)
    assert not now and "150 labelled rows in the window, 200 needed" in why
    off = monitoring.MonitoringPolicy(retrain=False)
    assert monitoring.retraining_plan(off, True, 5000) == (
        False,
        "retraining recommended; not run (retraining is off for this run)",
    )
    with pytest.raises(ValueError, match="retrain_min_labelled_rows 1 >= 2"):
        monitoring.MonitoringPolicy(retrain_min_labelled_rows=1)


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        pytest.skip(
            "prometheus-pushgateway is not installed (Debian package prometheus-pushgateway)"
        )
    port = free_port()
    address = f"127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("pushgateway") / "log.txt").open("w")
    process = subprocess.Popen([binary, f"--web.listen-address={address}"], stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{address}/-/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    yield address
    process.terminate()
    process.wait(timeout=10)


def test_the_figures_reach_a_real_pushgateway(pushgateway: str) -> None:
    summary = monitoring_summary()
    monitoring.publish(summary, pushgateway)
    text = httpx.get(f"http://{pushgateway}/metrics", timeout=5).text
    pushed = {
        (
            sample.name,
            tuple(sorted((k, v) for k, v in sample.labels.items() if k not in ("instance", "job"))),
        ): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("job") == "mlops-monitoring"
    }
    project = ("project", "telecom")
    assert pushed[("mlops_monitoring_drift_detected", (project,))] == 1
    assert pushed[("mlops_monitoring_column_drifted", (("column", "mb_used"), project))] == 1
    assert pushed[("mlops_monitoring_live_metric", (("metric", "accuracy"), project))] == 0.7
    assert pushed[("mlops_monitoring_registered_metric", (("metric", "accuracy"), project))] == 0.82
    assert pushed[("mlops_monitoring_last_run_timestamp_seconds", (project,))] == (
        dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC).timestamp()
    )
