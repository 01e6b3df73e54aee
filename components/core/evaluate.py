"""Test-split evaluation, per-group figures, the HTML report and the quality gate."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    mean_absolute_percentage_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    roc_curve,
    root_mean_squared_error,
)

from components.core import report
from components.core.spec import Gate, ProjectSpec
from components.core.train import positive_scores, split_xy


class GateFailed(RuntimeError):
    """The model missed a quality gate; it must not be registered."""


def lift_at(y: np.ndarray, score: np.ndarray, share: float = 0.1) -> float:
    """Positive rate among the top `share` by score, over the overall positive rate."""
    top = max(1, math.ceil(len(score) * share))
    order = np.argsort(-score, kind="stable")[:top]
    base = y.mean()
    return float(y[order].mean() / base) if base > 0 else float("nan")


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    pred = (score >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, score)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, score)) if both else float("nan"),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
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


def bootstrap_intervals(
    spec: ProjectSpec,
    y: np.ndarray,
    score: np.ndarray,
    threshold: float,
    metrics: list[str],
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of test figures: how far the figure of one test split of
    this size moves by the luck of which rows it drew."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {m: [] for m in metrics}
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        figures = (
            binary_metrics(y[idx], score[idx], threshold)
            if spec.task == "binary"
            else regression_metrics(y[idx], score[idx])
        )
        for m in metrics:
            draws[m].append(figures[m])
    tail = (1.0 - level) / 2
    return {
        m: (float(np.nanquantile(v, tail)), float(np.nanquantile(v, 1.0 - tail)))
        for m, v in draws.items()
    }


@dataclass
class Evaluation:
    metrics: dict[str, float]
    groups: pd.DataFrame
    rows: int
    curves: dict[str, Any] = field(default_factory=dict)
    """For classifiers: ROC curve points and the confusion matrix, JSON-safe."""


def evaluate(
    spec: ProjectSpec, model: BaseEstimator, test_frame: pd.DataFrame
) -> tuple[Evaluation, np.ndarray]:
    """Figures on the test split; returns them with the model's scores (probability or price)."""
    X, y_series = split_xy(spec, test_frame)
    y = y_series.to_numpy()
    group_rows = []
    if spec.task == "binary":
        score = positive_scores(model, X)
        threshold = float(getattr(model, "threshold", 0.5))
        metrics = binary_metrics(y, score, threshold)
        fpr, tpr, thr = roc_curve(y, score)
        # The first ROC threshold is +inf, which JSON cannot carry: cap it at 1.
        thr = np.minimum(thr, 1.0)
        cm = confusion_matrix(y, (score >= threshold).astype(int), labels=[0, 1])
        curves = {
            "fpr": fpr.tolist(),
            "tpr": tpr.tolist(),
            "thresholds": thr.tolist(),
            "confusion_matrix": cm.tolist(),
        }
        for col in spec.group_columns:
            for value, idx in X.groupby(col).indices.items():
                m = binary_metrics(y[idx], score[idx], threshold)
                group_rows.append(
                    {
                        "column": col,
                        "group": value,
                        "rows": len(idx),
                        "positive_rate": float(y[idx].mean()),
                        **{k: m[k] for k in ("roc_auc", "precision", "recall", "f1")},
                    }
                )
    else:
        score = np.asarray(model.predict(X), dtype=float)
        metrics = regression_metrics(y, score)
        curves = {}
        for col in spec.group_columns:
            for value, idx in X.groupby(col).indices.items():
                m = regression_metrics(y[idx], score[idx])
                group_rows.append(
                    {
                        "column": col,
                        "group": value,
                        "rows": len(idx),
                        "rmse": m["rmse"],
                        "mae": m["mae"],
                        "mape": m["mape"],
                    }
                )
    return Evaluation(metrics, pd.DataFrame(group_rows), len(y), curves), score


def check_gates(gates: tuple[Gate, ...], metrics: dict[str, float]) -> tuple[bool, list[str]]:
    lines = []
    passed = True
    for gate in gates:
        value = metrics.get(gate.metric)
        if value is None or math.isnan(value):
            lines.append(f"{gate.metric}: not measured (gate {gate.threshold:g}): FAILED")
            passed = False
            continue
        lines.append(gate.describe(value))
        passed &= gate.passes(value)
    return passed, lines


def enforce_gates(
    spec: ProjectSpec, gates: tuple[Gate, ...], metrics: dict[str, float]
) -> list[str]:
    passed, lines = check_gates(gates, metrics)
    if not passed:
        failing = [line for line in lines if line.endswith("FAILED")]
        raise GateFailed(
            f"{spec.name} model failed its quality gate; it will not be registered:\n  "
            + "\n  ".join(failing)
        )
    return lines


def html_report(
    spec: ProjectSpec,
    evaluation: Evaluation,
    test_frame: pd.DataFrame,
    score: np.ndarray,
    gate_lines: list[str],
    notice: str = "",
) -> str:
    import matplotlib.pyplot as plt

    metrics = pd.DataFrame([{"metric": k, "value": v} for k, v in evaluation.metrics.items()])
    sections = [
        ("Test-split figures", report.table_html(metrics)),
        ("Quality gate", "<ul>" + "".join(f"<li>{line}</li>" for line in gate_lines) + "</ul>"),
    ]
    y = test_frame[spec.target].to_numpy(dtype=float)
    if spec.task == "binary":
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].plot(evaluation.curves["fpr"], evaluation.curves["tpr"])
        axes[0].plot([0, 1], [0, 1], "--", color="grey")
        axes[0].set(
            title=f"ROC (AUC {evaluation.metrics['roc_auc']:.3f})",
            xlabel="false positive rate",
            ylabel="true positive rate",
        )
        cm = np.asarray(evaluation.curves["confusion_matrix"])
        axes[1].imshow(cm, cmap="Blues")
        labels = spec.label_names
        for (i, j), v in np.ndenumerate(cm):
            axes[1].text(j, i, str(v), ha="center", va="center")
        axes[1].set(
            title="Confusion matrix",
            xticks=[0, 1],
            yticks=[0, 1],
            xticklabels=labels,
            yticklabels=labels,
            xlabel="predicted",
            ylabel="actual",
        )
    else:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].scatter(y, score, s=3, alpha=0.3)
        top = float(max(y.max(), score.max()))
        axes[0].plot([0, top], [0, top], "--", color="grey")
        axes[0].set(title="Predicted vs actual", xlabel="actual", ylabel="predicted")
        axes[1].hist(score - y, bins=60)
        axes[1].set(title="Residuals (predicted - actual)")
    sections.append(("Plots", report.figure_to_html(fig)))
    if not evaluation.groups.empty:
        sections.append(("By group", report.table_html(evaluation.groups)))
    return report.page(f"{spec.title}: evaluation", sections, notice)
