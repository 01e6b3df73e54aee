"""Every metric the platform reports, in one place: how it is computed, which way is better, the
scikit-learn scorer that cross-validation uses for it and its unit.

Gates, promotion, cross-validation and the quality benchmark all read a metric's direction here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    mean_absolute_error,
    mean_absolute_percentage_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    unit: str
    """"" for a share or score without unit; "target" for the regression target's unit."""
    scorer: str | None = None
    """The scikit-learn scorer cross-validation uses, or None when CV does not report it."""
    meaning: str = ""
    """One line a reader of a report needs to read the figure."""

    def better(self, challenger: float, incumbent: float) -> bool:
        """Strictly better: a tie keeps the incumbent."""
        if self.higher_is_better:
            return challenger > incumbent
        return challenger < incumbent

    def meets(self, value: float, bound: float) -> bool:
        """`value` is at least as good as `bound` (a gate's threshold or a target)."""
        return value >= bound if self.higher_is_better else value <= bound

    def rank(self, value: float) -> float:
        """A sort key under which larger is better, whatever the metric's direction."""
        return value if self.higher_is_better else -value

    @property
    def comparison(self) -> str:
        return ">=" if self.higher_is_better else "<="

    def from_cv(self, value: float) -> float:
        """A cross-validation score in the metric's own sign (scikit-learn negates losses)."""
        return -value if self.scorer is not None and self.scorer.startswith("neg_") else value


_ALL = (
    Metric(
        "roc_auc",
        True,
        "",
        "roc_auc",
        "chance that a random positive is scored above a random negative (0.5 = guessing)",
    ),
    Metric(
        "pr_auc",
        True,
        "",
        "average_precision",
        "average precision over all thresholds; the positive share is what guessing scores",
    ),
    Metric("accuracy", True, "", "accuracy", "share of all rows given the right class"),
    Metric("f1", True, "", "f1", "harmonic mean of precision and recall at the threshold"),
    Metric("precision", True, "", meaning="share of rows flagged positive that are positive"),
    Metric("recall", True, "", meaning="share of the positives that the model flags"),
    Metric(
        "lift_top10",
        True,
        "",
        meaning="positive rate in the top-scored 10%, over the positive rate of all rows",
    ),
    Metric("threshold", True, "", meaning="probability at or above which a row is flagged"),
    Metric("r2", True, "", "r2", "share of the target's variance the model explains (1 = all)"),
    Metric(
        "rmse",
        False,
        "target",
        "neg_root_mean_squared_error",
        "root mean squared error, in the target's unit; large errors weigh more",
    ),
    Metric(
        "mae",
        False,
        "target",
        "neg_mean_absolute_error",
        "mean absolute error, in the target's unit",
    ),
    Metric("mape", False, "", meaning="mean absolute error as a share of the true value"),
)
METRICS: dict[str, Metric] = {m.name: m for m in _ALL}


def metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known metrics: {sorted(METRICS)}") from None


def lift_at(y: np.ndarray, score: np.ndarray, share: float = 0.1) -> float:
    """Positive rate among the top `share` by score, over the overall positive rate."""
    top = max(1, math.ceil(len(score) * share))
    order = np.argsort(-score, kind="stable")[:top]
    base = y.mean()
    return float(y[order].mean() / base) if base > 0 else float("nan")


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    pred = score >= threshold
    positive = np.asarray(y) == 1
    both = bool(positive.any() and (~positive).any())
    # Counted directly: scikit-learn's per-call checks cost more than the sums, and the
    # bootstrap calls this a thousand times.
    true_pos = float(np.sum(pred & positive))
    flagged, positives = float(np.sum(pred)), float(np.sum(positive))
    precision = true_pos / flagged if flagged else 0.0
    recall = true_pos / positives if positives else 0.0
    return {
        "roc_auc": float(roc_auc_score(y, score)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, score)) if both else float("nan"),
        "accuracy": float(np.mean(pred == positive)),
        "precision": precision,
        "recall": recall,
        "f1": 2 * true_pos / (flagged + positives) if flagged + positives else 0.0,
        "lift_top10": lift_at(y, score),
        "threshold": float(threshold),
    }


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(root_mean_squared_error(y, pred)),
        "mae": float(mean_absolute_error(y, pred)),
        "r2": float(r2_score(y, pred)) if len(y) > 1 else float("nan"),
        "mape": float(mean_absolute_percentage_error(y, pred)),
    }


def finite(values: Mapping[str, object]) -> dict[str, float]:
    """The entries that are finite numbers (MLflow and JSON take no NaN)."""
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


QUANTILES = {"p10": 0.1, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p90": 0.9}
"""The quantiles a distribution of outputs is summarised by."""


# The same figures, computed by DuckDB over a table of any size: `y` (0/1 or the target), `score`
# (P(positive) or the prediction) and `ordinal` (the rows' order, which breaks ties in the lift
# as the stable sort above does). Ties in the score count as scikit-learn counts them: ROC-AUC
# gives half credit to a tied pair, average precision steps at each distinct score.
_BINARY_SQL = """
WITH rows AS (SELECT CAST(y AS DOUBLE) AS y, score, ordinal FROM {table}),
totals AS (SELECT count(*) AS n, sum(y) AS positives FROM rows),
by_score AS (
  SELECT score, sum(y) AS pos, count(*) - sum(y) AS neg FROM rows GROUP BY score),
ranked AS (
  SELECT pos, neg,
    sum(neg) OVER (ORDER BY score ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS neg_below,
    sum(pos) OVER (ORDER BY score DESC ROWS UNBOUNDED PRECEDING) AS tp,
    sum(neg) OVER (ORDER BY score DESC ROWS UNBOUNDED PRECEDING) AS fp
  FROM by_score),
curves AS (
  SELECT sum(pos * (coalesce(neg_below, 0) + 0.5 * neg)) AS auc_pairs,
         sum(pos * tp / (tp + fp)) AS ap_sum FROM ranked),
flagged AS (
  SELECT count(*) FILTER (WHERE score >= {threshold}) AS flagged,
         sum(y) FILTER (WHERE score >= {threshold}) AS true_pos,
         count(*) FILTER (WHERE (score >= {threshold}) = (y = 1)) AS correct FROM rows),
top AS (
  SELECT avg(y) AS top_rate FROM (
    SELECT y FROM rows ORDER BY score DESC, ordinal
    LIMIT (SELECT greatest(1, CAST(ceil(n * 0.1) AS BIGINT)) FROM totals)))
SELECT n, positives, auc_pairs, ap_sum, flagged, coalesce(true_pos, 0), correct, top_rate
FROM totals, curves, flagged, top
"""

_REGRESSION_SQL = """
WITH rows AS (SELECT CAST(y AS DOUBLE) AS y, score FROM {table}),
mean AS (SELECT avg(y) AS y_mean FROM rows)
SELECT count(*), sum((y - score) * (y - score)), sum(abs(y - score)),
       sum((y - y_mean) * (y - y_mean)), sum(abs(y - score) / greatest(abs(y), {eps}))
FROM rows, mean
"""


def binary_metrics_sql(con: object, table: str, threshold: float) -> dict[str, float]:
    """`binary_metrics` of the rows of `table`, out of core."""
    found = con.execute(_BINARY_SQL.format(table=table, threshold=float(threshold))).fetchall()[0]  # type: ignore[attr-defined]
    n, positives, auc_pairs, ap_sum, flagged, true_pos, correct, top_rate = found
    if not n:
        return {}
    negatives = n - positives
    both = positives > 0 and negatives > 0
    base = positives / n
    return {
        "roc_auc": auc_pairs / (positives * negatives) if both else float("nan"),
        "pr_auc": ap_sum / positives if both else float("nan"),
        "accuracy": correct / n,
        "precision": true_pos / flagged if flagged else 0.0,
        "recall": true_pos / positives if positives else 0.0,
        "f1": 2 * true_pos / (flagged + positives) if flagged + positives else 0.0,
        "lift_top10": top_rate / base if base > 0 else float("nan"),
        "threshold": float(threshold),
    }


def regression_metrics_sql(con: object, table: str) -> dict[str, float]:
    """`regression_metrics` of the rows of `table`, out of core."""
    eps = float(np.finfo(np.float64).eps)
    n, squared, absolute, spread, relative = con.execute(  # type: ignore[attr-defined]
        _REGRESSION_SQL.format(table=table, eps=eps)
    ).fetchall()[0]
    if not n:
        return {}
    if n < 2:
        r2 = float("nan")
    elif spread == 0:  # scikit-learn's convention for a constant target
        r2 = 1.0 if squared == 0 else 0.0
    else:
        r2 = 1.0 - squared / spread
    return {
        "rmse": math.sqrt(squared / n),
        "mae": absolute / n,
        "r2": r2,
        "mape": relative / n,
    }
