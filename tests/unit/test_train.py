from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from imblearn.over_sampling import SMOTE
from sklearn.model_selection import cross_validate

from components.core import tasks
from components.core import train as logic
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from tests.conftest import quick_model, quick_spec, small_split


def test_model_is_one_pipeline_from_raw_columns(spec: ProjectSpec) -> None:
    result = quick_model(spec)
    pipeline = logic.final_pipeline(result.model)
    assert pipeline.steps[0][0] == "features" and pipeline.steps[-1][0] == "model"
    test = small_split(spec).test
    # Raw rows as they come from the file, target and identifiers included, are accepted.
    predictions = result.model.predict(test.drop(columns=[spec.target]))
    assert len(predictions) == len(test)


def test_every_candidate_is_tried_and_the_best_by_cv_is_chosen(spec: ProjectSpec) -> None:
    result = quick_model(spec)
    assert {t.candidate for t in result.trials} == {c.name for c in spec.candidates}
    assert result.best.cv_mean[spec.primary_metric] == max(
        t.cv_mean[spec.primary_metric] for t in result.trials
    )
    frame = result.trials_frame()
    assert len(frame) == len(result.trials) and f"cv_mean.{spec.primary_metric}" in frame


def test_binary_model_applies_its_stored_threshold() -> None:
    spec = PROJECTS["bankchurn"]
    result = quick_model(spec)
    X = small_split(spec).test[spec.input_columns]
    proba = result.model.predict_proba(X)[:, 1]
    assert 0.0 < result.threshold < 1.0
    np.testing.assert_array_equal(result.model.predict(X), (proba >= result.threshold).astype(int))


def test_threshold_never_sees_the_test_split() -> None:
    """Same training split, wildly different test labels: identical threshold and model output."""
    spec = quick_spec(PROJECTS["bankchurn"])
    parts = small_split(spec)
    first = logic.train(spec, parts.train, seed=7, trials_per_candidate=1, time_budget_s=0)
    flipped_test = parts.test.assign(Exited=1 - parts.test["Exited"])
    assert not flipped_test.equals(parts.test)
    second = logic.train(spec, parts.train, seed=7, trials_per_candidate=1, time_budget_s=0)
    assert first.threshold == second.threshold
    X = parts.test[spec.input_columns]
    np.testing.assert_array_equal(first.model.predict_proba(X), second.model.predict_proba(X))
    # The threshold is the F1-best cut of out-of-fold predictions on the training split only.
    assert first.threshold == pytest.approx(
        tasks.best_f1_threshold(*_oof(spec, parts.train, first))
    )


def _oof(
    spec: ProjectSpec, train: pd.DataFrame, result: logic.TrainResult
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import cross_val_predict

    X, y = logic.split_xy(spec, train)
    pipeline = logic.build_pipeline(
        spec, spec.candidate(result.best.candidate), 7, result.best.params
    )
    if spec.task.calibrate:
        pipeline = tasks.calibrated(pipeline, logic.folds(spec, 7))
    return y.to_numpy(), cross_val_predict(
        pipeline, X, y, cv=logic.folds(spec, 7), method="predict_proba"
    )[:, 1]


class RecordingSMOTE(SMOTE):
    """SMOTE that remembers which rows it was given to resample."""

    seen: ClassVar[list[set[int]]] = []

    def fit_resample(self, X, y, **params):  # type: ignore[no-untyped-def]
        RecordingSMOTE.seen.append(set(X.index))
        return super().fit_resample(X, y, **params)


def test_smote_only_ever_sees_the_training_fold() -> None:
    spec = PROJECTS["bankchurn"]
    X, y = logic.split_xy(spec, small_split(spec).train)
    candidate = spec.candidate("gradient_boosting_smote")
    pipeline = logic.build_pipeline(spec, candidate, 7, {"model__max_iter": 20})
    pipeline.steps[2] = ("resample", RecordingSMOTE(random_state=7))
    RecordingSMOTE.seen = []
    folds = list(logic.folds(spec, 7).split(X, y))
    cross_validate(pipeline, X, y, cv=logic.folds(spec, 7), scoring="roc_auc")
    assert len(RecordingSMOTE.seen) == len(folds)
    for seen, (train_idx, valid_idx) in zip(RecordingSMOTE.seen, folds, strict=True):
        assert seen == set(X.index[train_idx])
        assert not seen & set(X.index[valid_idx])


def test_time_budget_stops_the_search_after_one_round() -> None:
    spec = quick_spec(PROJECTS["telecom"])
    result = logic.train(
        spec, small_split(spec).train, seed=7, trials_per_candidate=3, time_budget_s=0
    )
    assert len(result.trials) == 1 and result.budget_exhausted
    assert any("time budget" in note for note in result.notes)


def test_sampled_trials_cover_candidates_round_robin() -> None:
    spec = PROJECTS["bankchurn"]
    order = logic.sample_trials(spec, 2, seed=1)
    names = [c.name for c, _ in order]
    assert names[: len(spec.candidates)] == [c.name for c in spec.candidates]
    assert len(order) == 2 * len(spec.candidates)


def test_served_models_predict_single_threaded(spec: ProjectSpec) -> None:
    result = quick_model(spec)
    jobs = []

    def walk(obj: object, seen: set[int]) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if hasattr(obj, "n_jobs"):
            jobs.append(obj.n_jobs)
        for value in getattr(obj, "__dict__", {}).values():
            for item in value if isinstance(value, list | tuple) else [value]:
                walk(item, seen)

    walk(result.model, set())
    assert all(n in (None, 1) for n in jobs)


def test_the_default_synthetic_data_passes_each_projects_gates(spec: ProjectSpec) -> None:
    """`make run` with no data uses the generator: its models must clear the default gates."""
    from components.core import evaluate, ingest

    frame, _ = ingest.load(spec, "synthetic", seed=42)
    parts = ingest.split(spec, frame, 0.2, seed=42)
    result = logic.train(quick_spec(spec), parts.train, seed=42, trials_per_candidate=1)
    scored, _ = evaluate.evaluate(spec, result.model, parts.test)
    passed, lines = evaluate.check_gates(spec.gates, scored.metrics)
    assert passed, lines
