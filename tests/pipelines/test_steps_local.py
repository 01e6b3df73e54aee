"""A single step through kfp.local, on files made here: the regression evaluate step, which no
project's test pipeline reaches on small data (carvision's pipeline is the slowest)."""

import json
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest
from kfp import dsl, local
from kfp.dsl import Artifact, Dataset, Model

from components.core.contracts import EvaluationSummary, SourceInfo
from components.core.projects import PROJECTS
from components.steps import evaluate
from tests.conftest import quick_model, small_split

SPEC = PROJECTS["carvision"]


def test_the_regression_evaluate_step_writes_a_named_report_and_no_classification(
    tmp_path: Path,
) -> None:
    split = small_split(SPEC)
    joblib.dump(quick_model(SPEC).model, tmp_path / "model.joblib")
    split.test.to_csv(tmp_path / "test.csv", index=False)
    SourceInfo(
        source="synthetic:1500",
        synthetic=True,
        rows=1500,
        columns=len(SPEC.source_columns),
        sha256="a" * 64,
        removed_rows={},
        notice="SYNTHETIC DATA: not the real listings",
        stratified=False,
        train_rows=len(split.train),
        test_rows=len(split.test),
    ).write(tmp_path / "source_info.json")

    @dsl.pipeline(name="evaluate-regression")
    def evaluate_only() -> None:
        def imported(name: str, kind: type) -> dsl.PipelineTask:
            return dsl.importer(artifact_uri=str(tmp_path / name), artifact_class=kind)

        evaluate(
            project=SPEC.name,
            model=imported("model.joblib", Model).output,
            test=imported("test.csv", Dataset).output,
            source_info=imported("source_info.json", Artifact).output,
            gate_overrides='{"r2": 0.0, "mape": 10.0}',
            run_name="evaluate-only-run",
        )

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    evaluate_only()
    [folder] = (tmp_path / "kfp").glob("evaluate-regression-*/evaluate")
    outputs = {path.name for path in folder.iterdir()}
    assert outputs - {"executor_output.json"} == {
        "metrics",
        "report.html",
        "evaluation",
        "classification",
    }
    # A regression has no curves: its classification artifact is written, and empty.
    assert json.loads((folder / "classification").read_text()) == {}
    page = (folder / "report.html").read_text()
    assert "Used-car price (carvision): evaluation on the test split" in page
    assert "SYNTHETIC DATA" in page and "evaluate-only-run" in page
    record = EvaluationSummary.read(folder / "evaluation")
    assert record.passed and set(record.intervals) == {"r2", "rmse", "mae", "mape"}
    assert record.reading.startswith(f"On the {len(split.test):,} test listings")


@pytest.fixture(autouse=True)
def _restore_local_config() -> Iterator[None]:
    """kfp.local's configuration is process-wide: leave none behind for other modules."""
    yield
    local.config.LocalExecutionConfig.instance = None


def test_the_rollout_step_rolls_a_failing_canary_back_in_a_real_registry(tmp_path: Path) -> None:
    """The monitoring pipeline's rollout step, on a real SQLite registry and a log of a canary
    failing a quarter of its requests: the verdict artifact names the version, the check and
    the move, and the registry holds it; a run over a file of served inputs judges nothing."""
    import datetime as dt

    import numpy as np

    from components.core import inference_log, rollout
    from components.core.contracts import RolloutVerdict
    from components.steps import rollout as rollout_step
    from tests.support.models import registry_with_a_canary

    uri, client = registry_with_a_canary(tmp_path, "telecom", 0.5)
    telecom = PROJECTS["telecom"]
    rows = telecom.make_synthetic(400, 5)
    rng = np.random.default_rng(5)
    now = dt.datetime.now(dt.UTC)
    records = []
    for i in range(400):
        version, stage = ("1", "champion") if i % 2 else ("2", "canary")
        failed = stage == "canary" and rng.random() < 0.25
        outputs = {} if failed else {"ultra_probability": 0.3, "recommended_plan": "Standard"}
        records.append(inference_log.record(
            f"r{i}", 0, now, "telecom", version,
            {c: rows.iloc[i][c] for c in telecom.input_columns}, outputs, stage=stage,
            latency_ms=2.0, error="ValueError: planted" if failed else None,
        ))  # fmt: skip
    inference_log.write_part(str(tmp_path / "log"), "telecom", records)

    @dsl.pipeline(name="rollout-only")
    def rollout_only() -> None:
        for source in ("log", str(tmp_path / "served.csv")):
            rollout_step(
                project="telecom",
                source=source,
                log_root=str(tmp_path / "log"),
                labels="",
                mlflow_tracking_uri=uri,
                approval="automatic",
                policy='{"canary_share": 0.5}',
            )

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    rollout_only()
    verdicts = {
        RolloutVerdict.read(path).action: RolloutVerdict.read(path)
        for path in (tmp_path / "kfp").glob("rollout-only-*/rollout*/verdict")
    }
    assert set(verdicts) == {"rollback", "skipped"}
    judged = verdicts["rollback"]
    assert (judged.version, judged.stage, judged.moved_to) == ("2", "canary", "rolled_back")
    assert judged.reason.startswith("rolled back: errors worse than the champion's")
    assert [c.name for c in judged.checks][:2] == ["errors", "latency"]
    assert judged.challenger_requests == 200 and 0 < judged.challenger_failed < 100
    tags = client.get_model_version("telecom", "2").tags
    assert tags[rollout.STAGE_TAG] == "rolled_back" and tags[rollout.REASON_TAG] == judged.reason
    assert verdicts["skipped"].reason == "not the inference log: nothing to judge"
