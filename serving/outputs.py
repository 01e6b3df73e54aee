"""What a prediction looks like to a client, per project: field names, decisions, risk bands.

The spec says what the model predicts; this says how each project's consumers read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.core.spec import ProjectSpec

RISK_BANDS = ("low", "medium", "high")
MEDIUM_RISK_FROM = 0.5
"""The medium band starts at this fraction of the decision threshold."""


def risk_bands(probability: np.ndarray, threshold: float) -> np.ndarray:
    """`high` at or above the decision threshold (the model predicts the positive class),
    `medium` from half the threshold up to it, `low` below half the threshold."""
    return np.where(
        probability >= threshold,
        RISK_BANDS[2],
        np.where(probability >= MEDIUM_RISK_FROM * threshold, RISK_BANDS[1], RISK_BANDS[0]),
    ).astype(object)


@dataclass(frozen=True)
class BinaryFormat:
    probability: str
    """Field holding P(positive class)."""
    decision: str
    """Field holding the decision at the model's threshold."""
    decision_as_label: bool = False
    """The decision as the spec's class label (e.g. "Ultra") rather than 0/1."""
    with_risk_band: bool = False

    def columns(
        self, spec: ProjectSpec, probability: np.ndarray, threshold: float
    ) -> dict[str, np.ndarray]:
        positive = probability >= threshold
        labels = spec.label_names
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

    def columns(self, prediction: np.ndarray) -> dict[str, np.ndarray]:
        return {self.value: prediction.astype(float)}


ResponseFormat = BinaryFormat | RegressionFormat

FORMATS: dict[str, ResponseFormat] = {
    "bankchurn": BinaryFormat("churn_probability", "churn", with_risk_band=True),
    "telecom": BinaryFormat("ultra_probability", "recommended_plan", decision_as_label=True),
    "carvision": RegressionFormat("price"),
}


def response_format(spec: ProjectSpec) -> ResponseFormat:
    """The project's format; a project without one gets `probability`/`prediction` fields."""
    if spec.name in FORMATS:
        return FORMATS[spec.name]
    if spec.task == "binary":
        return BinaryFormat("probability", "prediction")
    return RegressionFormat("prediction")


def explained_output(fmt: ResponseFormat) -> str:
    """The response field that SHAP contributions (plus the base value) add up to."""
    return fmt.probability if isinstance(fmt, BinaryFormat) else fmt.value
