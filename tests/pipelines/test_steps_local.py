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
