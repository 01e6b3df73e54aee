"""Contract records as the steps write them, for tests that need one without running the step."""

from __future__ import annotations

from typing import Any

from components.core.contracts import DriftSummary, MonitoringSummary


def drift_summary(**changes: Any) -> DriftSummary:
    """The drift a telecom monitoring run found in mb_used on 800 rows; `changes` replace any
    field."""
    fields: dict[str, Any] = {
        "rows": 800,
        "reference_rows": 2571,
        "reference": "telecom v4 training sample (2571 rows)",
        "enough_data": True,
        "drift_detected": True,
        "drifted_columns": ["mb_used"],
        "drift_share": 0.25,
        "weighted_drift_share": 0.6,
        "important_columns": ["mb_used", "calls"],
        "drifted_important_columns": ["mb_used"],
        "column_scores": {"mb_used": 0.31, "calls": 0.02, "minutes": 0.03, "messages": 0.01},
        "column_methods": dict.fromkeys(["mb_used", "calls", "minutes", "messages"], "psi"),
        "column_drifted": {"mb_used": True, "calls": False, "minutes": False, "messages": False},
        "reason": "drift in important column(s) mb_used",
    }
    return DriftSummary(**(fields | changes))


def monitoring_summary(**changes: Any) -> MonitoringSummary:
    """A telecom monitoring run that found drift in mb_used on 800 rows, 300 labelled; `changes`
    replace any field."""
    fields: dict[str, Any] = {
        "project": "telecom",
        "time": "2026-11-29T12:00:00+00:00",
        "champion_version": "4",
        "window": "file x.csv",
        "rows": 800,
        "labelled_rows": 300,
        "drift": drift_summary(),
        "live_metrics": {"accuracy": 0.7},
        "registered_metrics": {"accuracy": 0.82},
        "quality_ok": False,
        "retrain": True,
        "reason": "drift",
    }
    return MonitoringSummary(**(fields | changes))
