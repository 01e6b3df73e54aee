"""What the outputs of every task share: risk bands and the reasons batch scoring gives.

The output itself and how a response reads it belong to the project's task
(components/core/tasks.py).
"""

from __future__ import annotations

import numpy as np

RISK_BANDS = ("low", "medium", "high")
MEDIUM_RISK_FROM = 0.5
"""The medium band starts at this fraction of the decision threshold."""
REASONS = 3
"""Reasons (largest contributions to the output) a batch-scored row carries when asked for."""


def reason_fields() -> list[str]:
    return [f"reason_{i}" for i in range(1, REASONS + 1)]


def risk_bands(probability: np.ndarray, threshold: float) -> np.ndarray:
    """`high` at or above the decision threshold (the model predicts the positive class),
    `medium` from half the threshold up to it, `low` below half the threshold."""
    band = (probability >= MEDIUM_RISK_FROM * threshold).astype(np.intp)
    band += probability >= threshold
    return np.asarray(RISK_BANDS, dtype=object)[band]
