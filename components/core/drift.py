"""Evidently data drift of the current batch against the training data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset

from components.core.contracts import DriftSummary
from components.core.spec import ProjectSpec

DATASET_DRIFT_SHARE = 0.5


@dataclass
class DriftResult:
    summary: DriftSummary
    html: str


def _column_drifted(method: str, value: float, threshold: float) -> bool:
    # Evidently reports p-values for statistical tests (drift when small) and distances otherwise.
    return value < threshold if "p_value" in method.replace("-", "_") else value >= threshold


def detect(
    spec: ProjectSpec,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    drift_share: float = DATASET_DRIFT_SHARE,
) -> DriftResult:
    columns = spec.input_columns
    snapshot = Report([DataDriftPreset(drift_share=drift_share)]).run(
        current_data=current[columns], reference_data=reference[columns]
    )
    summary: dict[str, Any] = {}
    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    drifted: dict[str, bool] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            summary = metric["value"]
        elif config["type"].endswith("ValueDrift"):
            name, value = config["column"], float(metric["value"])
            scores[name], methods[name] = value, config["method"]
            drifted[name] = _column_drifted(config["method"], value, float(config["threshold"]))
    share = float(summary.get("share", 0.0))
    return DriftResult(
        DriftSummary(
            drifted_columns=int(summary.get("count", 0)),
            drift_share=share,
            dataset_drift=share >= drift_share,
            column_scores=scores,
            column_methods=methods,
            column_drifted=drifted,
        ),
        snapshot.get_html_str(as_iframe=False),
    )
