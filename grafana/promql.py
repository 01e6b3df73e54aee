"""PromQL that the alerts and the dashboard both read, written once."""

from __future__ import annotations


def ratio(numerator: str, denominator: str, window: str) -> str:
    """Per project, the rate of `numerator` series over the rate of `denominator` series."""
    return (
        f"sum by (isvc) (rate({numerator}[{window}]))\n"
        f"  /\nsum by (isvc) (rate({denominator}[{window}]))"
    )


def class_share(window: str, selector: str = "") -> str:
    """Share of each predicted class among a classifier's predictions over `window`."""
    predictions = (
        f"mlops_predictions_total{{{selector}}}" if selector else "mlops_predictions_total"
    )
    return (
        f"sum by (isvc, class) (rate({predictions}[{window}]))\n"
        f"  / ignoring (class) group_left\n"
        f"sum by (isvc) (rate({predictions}[{window}]))"
    )


# The quality figures a monitoring run pushes (`mlops_monitoring_live_metric{metric}` next to
# `mlops_monitoring_registered_metric{metric}`), by direction (components/core/metrics.py; a test
# checks the two agree). Precision, recall, lift and the threshold are left out: they move with
# the decision threshold rather than with the model's quality.
SCORES = ("accuracy", "f1", "pr_auc", "r2", "roc_auc")
"""Higher is better."""
ERRORS = ("mae", "mape", "rmse")
"""Lower is better."""


def metric_names(names: tuple[str, ...]) -> str:
    """A label matcher value for `metric=~`."""
    return "|".join(names)
