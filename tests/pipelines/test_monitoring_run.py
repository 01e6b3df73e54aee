"""The monitoring pipeline end to end on one machine: `python -m pipelines.monitor` (what
`make monitor` runs) through kfp.local, against a champion registered with its reference in a
real MLflow store, over a file of served inputs and over the inference log with late labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from components.core import drift, explain, inference_log, registry
from components.core.contracts import (
    EvaluationSummary,
    ExplanationSummary,
    RunRecord,
    SourceInfo,
)
from components.core.evaluate import evaluate
from components.core.projects import PROJECTS
from components.core.train import selection_summary
from tests.conftest import quick_model, small_split
from tests.support.data import REPO_ROOT

SPEC = PROJECTS["telecom"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A telecom champion with its reference, in a store of its own."""
    root = tmp_path_factory.mktemp("monitoring")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    trained = quick_model(SPEC)
    split = small_split(SPEC)
    evaluation, _ = evaluate(SPEC, trained.model, split.test)
    importance = explain.input_importance(SPEC, trained.model, split.test)
    record = RunRecord(
        source=SourceInfo(
            source="users_behavior.csv",
            synthetic=False,
            rows=len(split.train) + len(split.test),
            columns=5,
            sha256="0" * 64,
            removed_rows={},
            notice="",
            stratified=True,
            train_rows=len(split.train),
            test_rows=len(split.test),
        ),
        selection=selection_summary(trained),
        evaluation=EvaluationSummary(
            rows=evaluation.rows, metrics=evaluation.metrics, groups=[], gates=[], passed=True
        ),
        explanation=ExplanationSummary(
            method="-", base_value=0.0, importance={}, input_importance=importance
        ),
        drift=drift.no_reference(SPEC, len(split.train), "no champion yet").summary,
        seed=7,
        test_size=0.25,
        run_name="monitoring-test",
        model_sha256="monitoring-test",
    )
    done = registry.register(
        SPEC,
        trained.model,
        record,
        train_frame=split.train,
        test_frame=split.test,
        trials=trained.trials_frame(),
        reports={},
        uri=uri,
    )
    assert done.is_champion
    return {"uri": uri, "state": str(root / "state"), "version": done.version}


def monitor(champion: dict[str, str], *args: str) -> dict[str, Any]:
    env = dict(os.environ, MLOPS_STATE_DIR=champion["state"], MLFLOW_TRACKING_URI=champion["uri"])
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.monitor", "--project", "telecom", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    latest = Path(champion["state"]) / "monitor" / "telecom" / "latest.json"
    result: dict[str, Any] = json.loads(latest.read_text())
    assert f"== telecom monitoring: champion v{champion['version']}" in done.stdout
    return result


def test_iid_served_inputs_show_no_drift_and_report_live_quality(
    champion: dict[str, str], tmp_path: Path
) -> None:
    served = tmp_path / "served.csv"
    SPEC.make_synthetic(800, 21).to_csv(served, index=False)
    result = monitor(champion, "--data", str(served))
    assert result["rows"] == 800 and result["enough_data"]
    assert not result["drift_detected"] and not result["retrain_recommended"]
    assert set(result["live_metrics"]) >= {"accuracy", "roc_auc"}
    assert (
        result["champion_version_before"] == result["champion_version_after"] == champion["version"]
    )
    assert (result["retrained"], result["promoted"]) == (False, False)


def test_a_shift_in_an_important_input_is_named_and_calls_for_retraining(
    champion: dict[str, str], tmp_path: Path
) -> None:
    served = tmp_path / "shifted.csv"
    drift.shift(SPEC.make_synthetic(800, 22), {"mb_used": 1.8}).to_csv(served, index=False)
    result = monitor(champion, "--data", str(served))
    assert result["drift_detected"] and "mb_used" in result["drifted_important_columns"]
    assert result["retrain_recommended"] and "mb_used" in result["reason"]


def test_the_inference_log_window_joins_late_labels(
    champion: dict[str, str], tmp_path: Path
) -> None:
    frame = SPEC.make_synthetic(600, 23)
    now = inference_log.utc_now()
    records = [
        inference_log.record(
            f"r{i}", 0, now, "telecom", champion["version"],
            {c: frame.iloc[i][c] for c in SPEC.input_columns}, {"ultra_probability": 0.5},
        )
        for i in range(len(frame))
    ]  # fmt: skip
    log_root = tmp_path / "inference"
    inference_log.write_part(str(log_root), "telecom", records)
    labels = tmp_path / "labels.csv"
    frame.assign(request_id=[f"r{i}" for i in range(len(frame))], row=0)[
        ["request_id", "row", SPEC.target]
    ].head(400).to_csv(labels, index=False)
    result = monitor(champion, "--log-root", str(log_root), "--labels", str(labels), "--hours", "2")
    assert result["rows"] == 600 and result["labelled_rows"] == 400
    assert result["window"].startswith(f"inference log {log_root}")
    assert "accuracy" in result["live_metrics"]
