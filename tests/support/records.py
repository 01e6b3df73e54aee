"""Contract records as the steps write them, for tests that need one without running the step."""

from __future__ import annotations

from typing import Any

from components.core.contracts import MonitoringSummary


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
        "enough_data": True,
        "drift_detected": True,
        "drifted_columns": ["mb_used"],
        "drifted_important_columns": ["mb_used"],
        "drift_share": 0.25,
        "weighted_drift_share": 0.6,
        "drift_reason": "drift in important column(s) mb_used",
        "reference": "telecom v4 training sample (2571 rows)",
        "live_metrics": {"accuracy": 0.7},
        "registered_metrics": {"accuracy": 0.82},
        "quality_ok": False,
        "retrain": True,
        "reason": "drift",
    }
    return MonitoringSummary(**(fields | changes))
