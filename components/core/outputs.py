"""A model's output, and how a project's consumers read it.

`model_output` is THE output of a project model: the probability of the positive class for a
binary task, the prediction (a price) for regression. Evaluation, explanations, the server and
the benchmarks all read it here. The formats turn it into a response's fields; each project's
spec names its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

RISK_BANDS = ("low", "medium", "high")
MEDIUM_RISK_FROM = 0.5
"""The medium band starts at this fraction of the decision threshold."""
REASONS = 3
"""Reasons (largest contributions to the output) a batch-scored row carries when asked for."""


def reason_fields() -> list[str]:
    return [f"reason_{i}" for i in range(1, REASONS + 1)]


class HasTask(Protocol):
    """A project spec, as far as its output is concerned (spec.py imports this module)."""

    @property
    def task(self) -> str: ...


def model_output(spec: HasTask, model: Any, frame: pd.DataFrame) -> np.ndarray:
    if spec.task == "binary":
        return np.asarray(model.predict_proba(frame))[:, 1]
    return np.asarray(model.predict(frame), dtype=float)


def risk_bands(probability: np.ndarray, threshold: float) -> np.ndarray:
    """`high` at or above the decision threshold (the model predicts the positive class),
    `medium` from half the threshold up to it, `low` below half the threshold."""
    band = (probability >= MEDIUM_RISK_FROM * threshold).astype(np.intp)
    band += probability >= threshold
    return np.asarray(RISK_BANDS, dtype=object)[band]


@dataclass(frozen=True)
class BinaryFormat:
    probability: str
    """Field holding P(positive class)."""
    decision: str
    """Field holding the decision at the model's threshold."""
    decision_as_label: bool = False
    """The decision as the spec's class label (e.g. "Ultra") rather than 0/1."""
    with_risk_band: bool = False
    rank: str = ""
    """Field of a batch output holding each row's rank by probability (1: the highest, ties in
    input order); "" for none."""
    with_reasons: bool = False
    """Batch scoring explains each row with its top reasons unless told otherwise."""

    @property
    def explained_field(self) -> str:
        """The field that explanations (contributions plus base value) add up to."""
        return self.probability

    def fields(self) -> dict[str, str]:
        """The response's fields and their kinds (float, int or string), in response order."""
        kinds = {
            self.probability: "float",
            self.decision: "string" if self.decision_as_label else "int",
        }
        return kinds | ({"risk_band": "string"} if self.with_risk_band else {})

    def columns(
        self, labels: tuple[str, str], probability: np.ndarray, threshold: float
    ) -> dict[str, np.ndarray]:
        positive = probability >= threshold
        decision = (
            np.where(positive, labels[1], labels[0]).astype(object)
            if self.decision_as_label
            else positive.astype(np.int64)
        )
        columns = {self.probability: probability, self.decision: decision}
        if self.with_risk_band:
            columns["risk_band"] = risk_bands(probability, threshold)
        return columns


@dataclass(frozen=True)
class RegressionFormat:
    value: str
    """Field holding the prediction: a point estimate, with no interval (see docs/batch.md)."""
    with_reasons: bool = False
    """Batch scoring explains each row with its top reasons unless told otherwise."""

    @property
    def explained_field(self) -> str:
        return self.value

    def fields(self) -> dict[str, str]:
        return {self.value: "float"}

    def columns(self, prediction: np.ndarray) -> dict[str, np.ndarray]:
        return {self.value: prediction.astype(float)}


OutputFormat = BinaryFormat | RegressionFormat
