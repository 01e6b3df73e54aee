"""The typed description of a project: everything the shared steps need to know about it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
from sklearn.base import BaseEstimator

from components.core.metrics import Metric, metric
from components.core.tasks import Task

ColumnType = Literal["float", "int", "category", "string", "date"]
Preprocessing = Literal["linear", "tree", "tree_onehot"]


@dataclass(frozen=True)
class Column:
    """One raw input column: its type, allowed values and whether blanks are expected."""

    name: str
    dtype: ColumnType
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] | None = None
    nullable: bool = False
    description: str = ""


@dataclass(frozen=True)
class Gate:
    """A quality gate: `metric` must be at least as good as `threshold` (the metric's own
    direction, from components.core.metrics, says which way is better)."""

    metric: str
    threshold: float

    def __post_init__(self) -> None:
        metric(self.metric)  # an unknown metric fails where the spec is written

    @property
    def measure(self) -> Metric:
        return metric(self.metric)

    def passes(self, value: float) -> bool:
        return self.measure.meets(value, self.threshold)

    def describe(self, value: float) -> str:
        verdict = "passed" if self.passes(value) else "FAILED"
        return f"{self.metric} = {value:.4f} (gate {self.measure.comparison} {self.threshold:g}): {verdict}"


@dataclass(frozen=True)
class Candidate:
    """A candidate model: a factory for the estimator, its preprocessing and its search space."""

    name: str
    make_estimator: Callable[[int], BaseEstimator]
    preprocessing: Preprocessing
    search_space: Mapping[str, list[Any]] = field(default_factory=dict)
    resample: bool = False
    """Put SMOTE before the estimator (inside the pipeline, so it only ever sees training folds)."""


@dataclass(frozen=True)
class CleaningRule:
    """A written rule that removes rows before the split, reported with the rows it removed."""

    description: str
    apply: Callable[[pd.DataFrame], pd.Series]
    """Returns a boolean mask of the rows to KEEP."""


@dataclass(frozen=True)
class CardFacts:
    """What a model card says that no figure can: who the model is for, what it must not be used
    for, and what to weigh before using it (Mitchell et al., Model Cards for Model Reporting)."""

    owner: str
    intended_use: str
    users: str
    out_of_scope: tuple[str, ...]
    factors: str
    """Which groups the evaluation looks at, and why."""
    ethical: tuple[str, ...]
    caveats: tuple[str, ...]


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    title: str
    task: Task
    """The kind of model, with everything that depends on it: the output and how consumers read
    it, the figures, the threshold (components/core/tasks.py)."""
    target: str
    columns: tuple[Column, ...]
    """The raw input columns a served model accepts (the target excluded)."""
    ignored_columns: tuple[str, ...]
    """Columns in the source file that are not features (identifiers, leakage); read, never used."""
    make_features: Callable[[], BaseEstimator]
    """The project's feature engineering: raw input DataFrame in, engineered DataFrame out."""
    candidates: tuple[Candidate, ...]
    primary_metric: str
    gates: tuple[Gate, ...]
    make_synthetic: Callable[[int, int], pd.DataFrame]
    """(rows, seed) -> a synthetic frame with the real file's columns, for tests and demos."""
    synthetic_rows: int
    """Rows the generator makes when no count is given (`synthetic`)."""
    data_file: str
    cleaning_rules: tuple[CleaningRule, ...] = ()
    group_columns: tuple[str, ...] = ()
    """Columns whose groups get their own metrics in the evaluation."""
    min_rows: int = 100
    search_trials: int = 4
    """Hyperparameter trials per candidate model (the pipeline's default)."""
    reference_figures: Mapping[str, float] = field(default_factory=dict)
    """Figures the reference portfolio published on the same data, for the quality benchmark."""
    targets: Mapping[str, float] = field(default_factory=dict)
    """Test-split figures the project aims for (each metric's direction is its own)."""
    card: CardFacts | None = None
    reading: str = ""
    """The test figures in the business's words: a format string over the fields of
    `components.core.evaluate.reading_facts` (counts for classifiers, error spread for prices)."""
    identifier_columns: tuple[str, ...] = ()
    """Columns of the source file that name a row (ids, names): batch scoring carries them into
    its outputs and its rejected rows; the model never reads them."""
    explained_rows: int = 100
    """Test rows the explain step explains with the server's explainer (milliseconds per row for
    tree ensembles and linear models, about 300 ms for permutation SHAP here)."""
    market_analysis: bool = False
    """The training pipeline also analyses the listings' market (components/core/market.py):
    price by year, mileage, condition, type and brand, days listed, what cleaning removed."""

    @property
    def primary(self) -> Metric:
        return metric(self.primary_metric)

    @property
    def input_columns(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def output_unit(self) -> str:
        """What a prediction and its explanation are measured in."""
        return self.task.output_unit(self.target)

    @property
    def source_columns(self) -> list[str]:
        """Every column the real data file has."""
        return [*self.ignored_columns, *self.input_columns, self.target]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no input column {name!r}")

    def candidate(self, name: str) -> Candidate:
        for cand in self.candidates:
            if cand.name == name:
                return cand
        raise KeyError(f"{self.name} has no candidate model {name!r}")

    def gate_thresholds(self) -> dict[str, float]:
        return {g.metric: g.threshold for g in self.gates}

    def with_gate_overrides(self, overrides: Mapping[str, float]) -> tuple[Gate, ...]:
        """The gates with thresholds replaced where `overrides` names the metric."""
        unknown = set(overrides) - {g.metric for g in self.gates}
        if unknown:
            raise ValueError(
                f"{self.name} has no gate on {sorted(unknown)}; gates: {[g.metric for g in self.gates]}"
            )
        return tuple(
            Gate(g.metric, float(overrides.get(g.metric, g.threshold))) for g in self.gates
        )
