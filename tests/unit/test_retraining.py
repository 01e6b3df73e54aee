"""Retraining's data and its record, against a real MLflow store: the champion's own data re-read
and hash-checked, the window's labelled rows split into training and holdout, and a retrained
version that carries its trigger and figures and can itself be retrained from its logged data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from components.core import drift, ingest, registry, retraining
from components.core.contracts import (
    EvaluationSummary,
    ExplanationSummary,
    MonitoringSummary,
    RunRecord,
    SourceInfo,
)
from components.core.evaluate import evaluate
from components.core.projects import PROJECTS
from components.core.train import selection_summary
from components.core.validate import DataValidationError
from tests.conftest import quick_model, small_split
from tests.support.records import monitoring_summary

SPEC = PROJECTS["telecom"]
SOURCE = "synthetic:1200"  # what small_split reads, with its seed and test size
SEED, TEST_SIZE = 7, 0.25
COLUMNS = [*SPEC.input_columns, SPEC.target]


def run_record(info: SourceInfo, digest: str) -> RunRecord:
    trained = quick_model(SPEC)
    evaluation, _ = evaluate(SPEC, trained.model, small_split(SPEC).test)
    return RunRecord(
        source=info,
        selection=selection_summary(trained),
        evaluation=EvaluationSummary(
            rows=evaluation.rows, metrics=evaluation.metrics, groups=[], gates=[], passed=True
        ),
        explanation=ExplanationSummary(
            method="-", base_value=0.0, importance={}, input_importance={"mb_used": 1.0}
        ),
        drift=drift.no_reference(SPEC, info.train_rows, "no champion yet").summary,
        seed=SEED,
        test_size=TEST_SIZE,
        run_name=f"retraining-{digest}",
        model_sha256=digest,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A telecom champion trained on `synthetic:1200`, as a training run registers it."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('retraining') / 'mlflow.db'}"
    parts, info = ingest.ingest(SPEC, SOURCE, SEED, TEST_SIZE)
    done = registry.register(
        SPEC,
        quick_model(SPEC).model,
        run_record(info, "champion-1"),
        train_frame=parts.train,
        test_frame=parts.test,
        trials=quick_model(SPEC).trials_frame(),
        reports={},
        uri=uri,
    )
    assert done.is_champion
    return uri


@pytest.fixture(autouse=True)
def tracking(store: str) -> Iterator[None]:
    mlflow.set_tracking_uri(store)
    yield


def window(rows: int, seed: int, labelled: float = 1.0) -> pd.DataFrame:
    """Served rows; the first `labelled` share has its ground truth."""
    frame = SPEC.make_synthetic(rows, seed)
    frame.loc[int(rows * labelled) :, SPEC.target] = None
    return frame


def test_the_champions_data_comes_back_from_its_recorded_source() -> None:
    champion = retraining.champion_data(SPEC)
    assert champion.source == "synthetic:1200 (seed 7)" and champion.synthetic
    assert (champion.seed, champion.test_size, champion.logged_data) == (SEED, TEST_SIZE, False)
    assert retraining.replayable_source(champion.source) == SOURCE
    data = retraining.prepare(SPEC, window(600, 31, labelled=0.5), champion, window_label="w1")
    old = small_split(SPEC)
    # The old test split is the champion's own, row for row; the 300 labelled rows are split.
    pd.testing.assert_frame_equal(data.test, old.test[COLUMNS])
    assert len(data.train) == len(old.train) + 150 and len(data.holdout) == 150
    pd.testing.assert_frame_equal(data.train.head(len(old.train)), old.train[COLUMNS])
    assert data.holdout[SPEC.target].notna().all()
    assert data.info.source == "synthetic:1200 (seed 7) + 150 labelled rows from w1"
    assert data.info.synthetic and data.info.notice == ingest.SYNTHETIC_NOTICE
    assert data.info.train_rows == len(data.train) and data.info.test_rows == len(data.test)
    assert data.info.sha256 == retraining.data_sha256(
        retraining.csv_bytes(data.train), retraining.csv_bytes(data.test)
    )


def test_data_that_moved_is_read_but_data_that_changed_is_refused(tmp_path: Path) -> None:
    moved = tmp_path / "users_behavior.csv"
    same = SPEC.make_synthetic(1200, SEED)
    same.to_csv(moved, index=False)
    champion = retraining.champion_data(SPEC)
    found = retraining.prepare(SPEC, window(400, 3), champion, source=str(moved))
    assert found.info.source.startswith(f"{moved} + 200 labelled rows")
    same.drop(index=5).to_csv(moved, index=False)
    with pytest.raises(retraining.RetrainingError) as refused:
        retraining.prepare(SPEC, window(400, 3), champion, source=str(moved))
    message = str(refused.value)
    assert f"with sha256 {champion.sha256[:12]}" in message
    assert f"{moved} now has sha256" in message and "retrain_source" in message


def test_too_few_or_broken_labels_stop_retraining_before_it_starts() -> None:
    champion = retraining.champion_data(SPEC)
    with pytest.raises(retraining.RetrainingError, match="50 newly labelled rows in w2"):
        retraining.prepare(SPEC, window(500, 5, labelled=0.1), champion, window_label="w2")
    broken = window(400, 5)
    broken.loc[:9, SPEC.target] = 3
    with pytest.raises(DataValidationError, match=f"column '{SPEC.target}'"):
        retraining.prepare(SPEC, broken, champion)


def test_a_project_without_a_champion_has_nothing_to_retrain() -> None:
    other = PROJECTS["bankchurn"]
    with pytest.raises(retraining.RetrainingError, match="bankchurn has no champion"):
        retraining.champion_data(other)
    assert retraining.outcome(other, "2026-01-01T00:00:00+00:00") == retraining.Outcome(
        False, None, False, "", None
    )


def summary(time: str) -> MonitoringSummary:
    return monitoring_summary(
        time=time,
        champion_version="1",
        window="file w3",
        labelled_rows=800,
        reason="drift in important column(s) mb_used",
        retrain_now=True,
        retraining="retraining on the champion's data plus the window's 800 labelled rows",
    )


def test_a_retrained_version_records_why_and_can_be_retrained_from_its_logged_data(
    tmp_path: Path,
) -> None:
    champion = retraining.champion_data(SPEC)
    data = retraining.prepare(SPEC, window(800, 41), champion, window_label="file w3")
    files = {}
    for name, frame in (("train", data.train), ("test", data.test), ("holdout", data.holdout)):
        files[name] = tmp_path / name
        files[name].write_bytes(retraining.csv_bytes(frame))

    class Handed:  # what a KFP input artifact looks like to the register step
        def __init__(self, path: Path) -> None:
            self.path = str(path)

    checked = summary("2026-11-30T03:00:00+00:00")
    (tmp_path / "summary").write_text(checked.to_json())
    given = registry.Retraining.read(
        Handed(files["holdout"]),
        Handed(tmp_path / "summary"),
        str(files["train"]),
        str(files["test"]),
    )
    assert given is not None and registry.Retraining.read(None, None, "", "") is None
    # The champion's own model again: a tie on both splits, so it is kept, and says where.
    done = registry.register(
        SPEC,
        quick_model(SPEC).model,
        run_record(data.info, "retrained-1"),
        train_frame=pd.read_csv(files["train"]),
        test_frame=pd.read_csv(files["test"]),
        trials=quick_model(SPEC).trials_frame(),
        reports={},
        retraining=given,
    )
    assert not done.is_champion
    assert "does not beat it on the test split and the new labelled holdout" in done.decision
    client = mlflow.MlflowClient()
    tags = client.get_model_version(SPEC.name, done.version).tags
    assert tags["trigger"] == checked.reason and tags["trigger_window"] == "file w3"
    assert tags["monitoring_time"] == checked.time and tags["retrained_from"] == champion.version
    before, after = json.loads(tags["figures_before"]), json.loads(tags["figures_after"])
    assert set(before) == set(after) == {registry.TEST_SPLIT, registry.HOLDOUT_SPLIT}
    assert before == after
    assert "holdout_accuracy" in client.get_run(done.run_id).data.metrics
    assert retraining.outcome(SPEC, checked.time) == retraining.Outcome(
        True, done.version, False, done.decision, champion.version
    )

    # Made champion by hand, it is retrained from the files its run logged, hash-checked.
    client.set_registered_model_alias(SPEC.name, "champion", done.version)
    try:
        again = retraining.champion_data(SPEC)
        assert again.logged_data and again.sha256 == data.info.sha256 and again.synthetic
        second = retraining.prepare(SPEC, window(400, 43), again, window_label="w4")
        pd.testing.assert_frame_equal(second.test, data.test)
        assert len(second.train) == len(data.train) + 200
        assert second.info.source.startswith(f"training data of telecom v{done.version}")
    finally:
        client.set_registered_model_alias(SPEC.name, "champion", champion.version)
