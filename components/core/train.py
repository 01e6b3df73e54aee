"""Model selection and fitting under the written evaluation protocol (see docs/protocol.md).

The whole model is one pipeline: feature engineering, preprocessing, optional SMOTE and the
estimator, so every stateful part is refitted inside each CV fold and serving loads exactly the
object that was evaluated. Only the training split ever reaches this module.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from imblearn.over_sampling import SMOTE
from imblearn.pipeline import Pipeline
from sklearn.base import BaseEstimator
from sklearn.model_selection import (
    BaseCrossValidator,
    ParameterSampler,
    cross_validate,
)

from components.core import metrics
from components.core.contracts import Selection
from components.core.preprocessing import make_preprocessor
from components.core.spec import Candidate, ProjectSpec
from components.core.tasks import cv_scoring

CV_FOLDS = 5
TIME_BUDGET_S = 600.0
"""A safety cap on the search: reached, it skips the remaining trials and says so."""


@dataclass
class Trial:
    candidate: str
    params: dict[str, Any]
    cv_mean: dict[str, float]
    cv_std: dict[str, float]
    fit_seconds: float


@dataclass
class TrainResult:
    model: BaseEstimator
    best: Trial
    trials: list[Trial]
    threshold: float | None
    cv_mean: dict[str, float]
    """CV figures of the chosen configuration (at the chosen threshold for classifiers)."""
    cv_std: dict[str, float]
    seconds: float
    budget_exhausted: bool = False
    notes: list[str] = field(default_factory=list)

    def trials_frame(self) -> pd.DataFrame:
        rows = []
        for i, t in enumerate(self.trials):
            row: dict[str, Any] = {
                "trial": i,
                "candidate": t.candidate,
                "chosen": t is self.best,
                "fit_seconds": round(t.fit_seconds, 3),
                # As JSON, so an int stays an int through the CSV (a column with blanks reads
                # back as floats).
                "params": json.dumps(t.params, sort_keys=True, default=str),
                "cv_threshold": 0.5 if self.threshold is not None else None,
            }
            row.update({f"param.{k}": v for k, v in t.params.items()})
            row.update({f"cv_mean.{k}": v for k, v in t.cv_mean.items()})
            row.update({f"cv_std.{k}": v for k, v in t.cv_std.items()})
            rows.append(row)
        return pd.DataFrame(rows)


def split_xy(spec: ProjectSpec, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return frame[spec.input_columns], spec.task.target(frame[spec.target])


BACKGROUND_ROWS = 50
"""Raw training rows stored with a model as its input example: the rows its explainer is built
on, in the server and in the explain step alike."""


def background_sample(
    spec: ProjectSpec, frame: pd.DataFrame, rows: int = BACKGROUND_ROWS, seed: int = 0
) -> pd.DataFrame:
    """At most `rows` rows of `frame`'s input columns, drawn with `seed`: the register step's
    input example from the training split, and the explainers' sample of whatever background
    they are given (the training split, or that input example), so both build one explainer."""
    sample = frame[spec.input_columns]
    return sample.sample(rows, random_state=seed) if len(sample) > rows else sample


def folds(spec: ProjectSpec, seed: int) -> BaseCrossValidator:
    return spec.task.folds(CV_FOLDS, seed)


def build_pipeline(
    spec: ProjectSpec, candidate: Candidate, seed: int, params: dict[str, Any] | None = None
) -> Pipeline:
    steps: list[tuple[str, Any]] = [
        ("features", spec.make_features()),
        ("preprocess", make_preprocessor(candidate.preprocessing)),
    ]
    if candidate.resample:
        steps.append(("resample", SMOTE(random_state=seed)))
    steps.append(("model", candidate.make_estimator(seed)))
    pipeline = Pipeline(steps)
    if params:
        pipeline.set_params(**params)
    return pipeline


def sample_trials(
    spec: ProjectSpec, trials_per_candidate: int, seed: int
) -> list[tuple[Candidate, dict[str, Any]]]:
    """Round-robin over candidates, so a time budget that runs out still leaves each one tried."""
    per_candidate = []
    for cand in spec.candidates:
        if cand.search_space:
            space = {k: list(v) for k, v in cand.search_space.items()}
            params = list(ParameterSampler(space, n_iter=trials_per_candidate, random_state=seed))
        else:
            params = [{}]
        per_candidate.append([(cand, p) for p in params])
    order: list[tuple[Candidate, dict[str, Any]]] = []
    for i in range(max(len(p) for p in per_candidate)):
        order.extend(p[i] for p in per_candidate if i < len(p))
    return order


def run_trial(
    spec: ProjectSpec,
    cand: Candidate,
    params: dict[str, Any],
    X: pd.DataFrame,
    y: pd.Series,
    seed: int,
) -> Trial:
    scoring = cv_scoring(spec.task)
    start = time.perf_counter()
    scores = cross_validate(
        build_pipeline(spec, cand, seed, params),
        X,
        y,
        cv=folds(spec, seed),
        scoring=scoring,
        error_score="raise",
    )
    mean = {m: metrics.metric(m).from_cv(float(np.mean(scores[f"test_{m}"]))) for m in scoring}
    std = {m: float(np.std(scores[f"test_{m}"])) for m in scoring}
    return Trial(cand.name, params, mean, std, time.perf_counter() - start)


def train(
    spec: ProjectSpec,
    train_frame: pd.DataFrame,
    seed: int = 42,
    trials_per_candidate: int = 0,
    time_budget_s: float = TIME_BUDGET_S,
) -> TrainResult:
    """Searches the spec's candidates by CV on the training split, then fits the winner on all of it."""
    start = time.perf_counter()
    trials_per_candidate = trials_per_candidate or spec.search_trials
    X, y = split_xy(spec, train_frame)
    trials: list[Trial] = []
    exhausted = False
    for cand, params in sample_trials(spec, trials_per_candidate, seed):
        if trials and time.perf_counter() - start > time_budget_s:
            exhausted = True
            break
        trials.append(run_trial(spec, cand, params, X, y, seed))
    best = max(trials, key=lambda t: spec.primary.rank(t.cv_mean[spec.primary_metric]))
    pipeline = build_pipeline(spec, spec.candidate(best.candidate), seed, best.params)
    notes = [f"{len(trials)} trials; chosen {best.candidate} by CV {spec.primary_metric}"]
    if exhausted:
        notes.append(f"time budget of {time_budget_s:g}s reached: later trials skipped")

    fitted = spec.task.fit(pipeline, X, y, folds(spec, seed))
    single_threaded(fitted.model)
    return TrainResult(
        fitted.model,
        best,
        trials,
        fitted.threshold,
        fitted.cv_mean or best.cv_mean,
        fitted.cv_std or best.cv_std,
        time.perf_counter() - start,
        exhausted,
        notes + fitted.notes,
    )


def single_threaded(obj: Any, seen: set[int] | None = None) -> int:
    """Sets `n_jobs` to 1 on every fitted estimator inside `obj`; returns how many it changed.

    A forest with n_jobs=2 starts a joblib pool on every predict call, which costs several
    milliseconds on a batch of one row; the server answers one request at a time per core, so
    parallelism inside a prediction only adds latency. `set_params` would not reach the fitted
    copies (`estimator_`, calibrated folds), hence the walk over attributes.
    """
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, list | tuple):
        return sum(single_threaded(item, seen) for item in obj)
    if isinstance(obj, dict):
        return sum(single_threaded(item, seen) for item in obj.values())
    module = type(obj).__module__
    if not hasattr(obj, "__dict__") or not module.startswith(("sklearn", "imblearn", "components")):
        return 0
    changed = 0
    if vars(obj).get("n_jobs") not in (None, 1):
        obj.n_jobs = 1
        changed = 1
    return changed + sum(single_threaded(value, seen) for value in vars(obj).values())


def final_pipeline(model: BaseEstimator) -> Pipeline:
    """The fitted sklearn/imblearn pipeline inside a model (unwrapping the threshold classifier)."""
    inner = getattr(model, "estimator_", model)
    if not isinstance(inner, Pipeline):
        raise TypeError(f"expected a fitted pipeline, got {type(inner).__name__}")
    return inner


def selection_summary(result: TrainResult) -> Selection:
    return Selection(
        candidate=result.best.candidate,
        params={
            k: (v if isinstance(v, str | int | float | bool) or v is None else str(v))
            for k, v in result.best.params.items()
        },
        threshold=result.threshold,
        trials=len(result.trials),
        seconds=round(result.seconds, 2),
        notes=result.notes,
        cv_mean=result.cv_mean,
        cv_std=result.cv_std,
    )
