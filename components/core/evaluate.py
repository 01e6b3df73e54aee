"""Test-split evaluation, per-group figures, the HTML report and the quality gate."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.metrics import confusion_matrix, roc_curve

from components.core import report
from components.core.contracts import EvaluationSummary, GroupFigures
from components.core.metrics import task_metrics
from components.core.outputs import model_output
from components.core.spec import Gate, ProjectSpec
from components.core.train import split_xy


class GateFailed(RuntimeError):
    """The model missed a quality gate; it must not be registered."""


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
        figures = task_metrics(spec.task, y[idx], score[idx], threshold)
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
    groups: list[GroupFigures]
    rows: int
    curves: dict[str, Any] = field(default_factory=dict)
    """For classifiers: ROC curve points and the confusion matrix, JSON-safe."""

    def groups_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"column": g.column, "group": g.group, "rows": g.rows, **g.figures}
                for g in self.groups
            ]
        )


GROUP_FIGURES = {
    "binary": ("roc_auc", "precision", "recall", "f1"),
    "regression": ("rmse", "mae", "mape"),
}


def evaluate(
    spec: ProjectSpec, model: BaseEstimator, test_frame: pd.DataFrame
) -> tuple[Evaluation, np.ndarray]:
    """Figures on the test split; returns them with the model's output (probability or price)."""
    X, y_series = split_xy(spec, test_frame)
    y = y_series.to_numpy()
    score = model_output(spec, model, X)
    threshold = float(getattr(model, "threshold", 0.5)) if spec.task == "binary" else 0.5
    metrics = task_metrics(spec.task, y, score, threshold)
    curves: dict[str, Any] = {}
    if spec.task == "binary":
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
    groups = []
    for col in spec.group_columns:
        for value, idx in X.groupby(col).indices.items():
            figures = task_metrics(spec.task, y[idx], score[idx], threshold)
            if spec.task == "binary":
                figures["positive_rate"] = float(y[idx].mean())
            kept = ("positive_rate", *GROUP_FIGURES[spec.task])
            groups.append(
                GroupFigures(
                    column=col,
                    group=str(value),
                    rows=len(idx),
                    figures={k: figures[k] for k in kept if k in figures},
                )
            )
    return Evaluation(metrics, groups, len(y), curves), score


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
    plt = report.pyplot()

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
    if evaluation.groups:
        sections.append(("By group", report.table_html(evaluation.groups_frame())))
    return report.page(f"{spec.title}: evaluation", sections, notice)


def parse_gate_overrides(text: str) -> dict[str, float]:
    """`{"roc_auc": 0.8}` -> thresholds by metric; a bad document is named, not ignored."""
    try:
        overrides = json.loads(text or "{}")
        if not isinstance(overrides, dict):
            raise ValueError("expected a JSON object of metric: threshold")
        return {str(k): float(v) for k, v in overrides.items()}
    except (ValueError, TypeError) as exc:
        raise ValueError(f"gate_overrides {text!r}: {exc}") from None


@dataclass
class Assessment:
    """What the evaluate step hands on: the record, the gates applied, the curves and the report."""

    summary: EvaluationSummary
    gates: tuple[Gate, ...]
    curves: dict[str, Any]
    html: str


def assess(
    spec: ProjectSpec,
    model: BaseEstimator,
    test_frame: pd.DataFrame,
    gate_overrides: str = "{}",
    notice: str = "",
) -> Assessment:
    """Scores the test split once and checks the gates (`gate_overrides` as JSON)."""
    gates = spec.with_gate_overrides(parse_gate_overrides(gate_overrides))
    result, score = evaluate(spec, model, test_frame)
    passed, gate_lines = check_gates(gates, result.metrics)
    summary = EvaluationSummary(
        rows=result.rows,
        metrics=result.metrics,
        groups=result.groups,
        gates=gate_lines,
        passed=passed,
    )
    html = html_report(spec, result, test_frame, score, gate_lines, notice)
    return Assessment(summary, gates, result.curves, html)
