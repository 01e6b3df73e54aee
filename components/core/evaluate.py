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
from components.core.lineage import Provenance
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
    seed: int = 42,
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


SMALL_GROUP_ROWS = 100
"""Groups with fewer rows (or, for classifiers, fewer than SMALL_GROUP_CLASS rows of a class)
are listed but not judged: their figures move too much by chance."""
SMALL_GROUP_CLASS = 20
INTERVAL_FIGURES = {
    "binary": ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1"),
    "regression": ("r2", "rmse", "mae", "mape"),
}
GAP_FIGURE = {"binary": "recall", "regression": "mape"}
"""The figure whose spread across groups the card and the report call out."""


def small_group(spec: ProjectSpec, group: GroupFigures) -> bool:
    if group.rows < SMALL_GROUP_ROWS:
        return True
    if spec.task == "binary":
        positives = group.rows * group.figures.get("positive_rate", 0.0)
        return min(positives, group.rows - positives) < SMALL_GROUP_CLASS
    return False


def group_gaps(spec: ProjectSpec, groups: list[GroupFigures]) -> list[str]:
    """Per group column, the spread of the gap figure across the groups large enough to judge."""
    figure = GAP_FIGURE[spec.task]
    lines = []
    for column in dict.fromkeys(g.column for g in groups):
        judged = [
            g
            for g in groups
            if g.column == column and not small_group(spec, g) and figure in g.figures
        ]
        if len(judged) < 2:
            continue
        ranked = sorted(judged, key=lambda g: g.figures[figure])
        low, high = ranked[0], ranked[-1]
        gap = high.figures[figure] - low.figures[figure]
        lines.append(
            f"{column}: {figure} ranges from {low.figures[figure]:.2f} ({low.group}, "
            f"{low.rows:,} rows) to {high.figures[figure]:.2f} ({high.group}, {high.rows:,} rows), "
            f"a gap of {gap:.2f}"
        )
    return lines


def reading_facts(
    spec: ProjectSpec, y: np.ndarray, score: np.ndarray, threshold: float
) -> dict[str, float]:
    """The counts a business reading is written from (the fields `spec.reading` may use)."""
    if spec.task == "binary":
        flagged = score >= threshold
        found = int(np.sum(flagged & (y == 1)))
        return {
            "rows": len(y),
            "positives": int(np.sum(y == 1)),
            "flagged": int(np.sum(flagged)),
            "found": found,
            "precision": found / max(int(np.sum(flagged)), 1),
            "recall": found / max(int(np.sum(y == 1)), 1),
            "accuracy": float(np.mean(flagged == (y == 1))),
            "threshold": threshold,
        }
    error = np.abs(score - y)
    share = error / np.maximum(np.abs(y), 1e-9)
    return {
        "rows": len(y),
        "median_abs_error": float(np.median(error)),
        "p90_abs_error": float(np.quantile(error, 0.9)),
        "within_10pct": float(np.mean(share <= 0.10)),
        "within_20pct": float(np.mean(share <= 0.20)),
        "mape": float(np.mean(share)),
    }


def business_reading(spec: ProjectSpec, y: np.ndarray, score: np.ndarray, threshold: float) -> str:
    return spec.reading.format(**reading_facts(spec, y, score, threshold)) if spec.reading else ""


def figures_table(
    evaluation: Evaluation, intervals: dict[str, tuple[float, float]], gate_lines: list[str]
) -> pd.DataFrame:
    from components.core.metrics import METRICS

    gates = {line.split(" ", 1)[0]: line.rsplit(": ", 1)[-1] for line in gate_lines}
    rows = []
    for name, value in evaluation.metrics.items():
        low, high = intervals.get(name, (math.nan, math.nan))
        rows.append(
            {
                "metric": name,
                "value": value,
                "95% interval": "" if math.isnan(low) else f"{low:,.4f} to {high:,.4f}",
                "gate": gates.get(name, ""),
                "meaning": METRICS[name].meaning if name in METRICS else "",
            }
        )
    return pd.DataFrame(rows)


def _binary_figures(
    spec: ProjectSpec, y: np.ndarray, score: np.ndarray, threshold: float
) -> list[tuple[str, str]]:
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve

    plt = report.pyplot()
    negative, positive = spec.label_names
    sections = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    fpr, tpr, _ = roc_curve(y, score)
    axes[0].plot(fpr, tpr, color="#2563eb")
    axes[0].plot([0, 1], [0, 1], "--", color="grey", label="guessing")
    axes[0].set(
        title="ROC curve", xlabel="false positive rate", ylabel="true positive rate (recall)"
    )
    axes[0].legend(loc="lower right")
    precision, recall, _ = precision_recall_curve(y, score)
    axes[1].plot(recall, precision, color="#2563eb")
    axes[1].axhline(y.mean(), ls="--", color="grey", label=f"guessing ({y.mean():.0%} {positive})")
    flagged = score >= threshold
    at = (
        np.sum(flagged & (y == 1)) / max(y.sum(), 1),
        np.sum(flagged & (y == 1)) / max(flagged.sum(), 1),
    )
    axes[1].plot(*at, "o", color="#dc2626", label=f"threshold {threshold:.2f}")
    axes[1].set(title="Precision-recall curve", xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    axes[1].legend(loc="lower left")
    sections.append(
        (
            "ROC and precision-recall curves",
            report.figure_to_html(fig, "ROC and precision-recall curves")
            + report.paragraph(
                f"The precision-recall curve matters most when the class '{positive}' is the "
                f"rarer one: guessing scores its share of the rows ({y.mean():.0%}). The red dot "
                "is the stored decision threshold."
            ),
        )
    )

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    observed, predicted = calibration_curve(y, score, n_bins=10, strategy="quantile")
    axes[0].plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    axes[0].plot(predicted, observed, "o-", color="#2563eb", label="model")
    axes[0].set(
        title="Calibration (10 bins of equal size)",
        xlabel=f"mean predicted P({positive})",
        ylabel=f"observed share of {positive}",
    )
    axes[0].legend(loc="upper left")
    grid = np.linspace(0.01, 0.99, 99)
    curves = {
        name: [task_metrics(spec.task, y, score, t)[name] for t in grid]
        for name in ("precision", "recall", "f1")
    }
    for name, values in curves.items():
        axes[1].plot(grid, values, label=name)
    axes[1].axvline(threshold, color="#dc2626", ls="--", label=f"stored threshold {threshold:.2f}")
    axes[1].set(title="Figures against the threshold", xlabel="threshold", ylim=(0, 1.02))
    axes[1].legend(loc="best")
    sections.append(
        (
            "Calibration and threshold",
            report.figure_to_html(fig, "Calibration and threshold")
            + report.paragraph(
                "Left: where the dots sit on the diagonal, a predicted probability can be read "
                f"as the share of {positive} among similar rows. Right: precision, recall and F1 "
                "if the label were drawn at another threshold; the dashed line is the one the "
                "served model applies."
            ),
        )
    )

    cm = confusion_matrix(y, flagged.astype(int), labels=[0, 1])
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(share):
        ax.text(
            j,
            i,
            f"{value:.0%}\n({cm[i, j]:,})",
            ha="center",
            va="center",
            color="white" if value > 0.5 else "#111827",
            fontsize=12,
        )
    ax.set(
        title="Confusion matrix (share of each actual class)",
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=[negative, positive],
        yticklabels=[negative, positive],
        xlabel="predicted",
        ylabel="actual",
    )
    sections.append(
        (
            "Confusion matrix",
            report.figure_to_html(fig, "Confusion matrix")
            + report.paragraph(
                f"Each row is an actual class and adds up to 100%; counts in brackets. Threshold "
                f"{threshold:.2f}."
            ),
        )
    )
    return sections


def _regression_figures(
    spec: ProjectSpec, y: np.ndarray, score: np.ndarray
) -> list[tuple[str, str]]:
    plt = report.pyplot()
    unit = spec.target_unit or spec.target
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    axes[0].scatter(y, score, s=3, alpha=0.3)
    top = float(max(y.max(), score.max()))
    axes[0].plot([0, top], [0, top], "--", color="grey")
    axes[0].set(
        title="Predicted against actual", xlabel=f"actual ({unit})", ylabel=f"predicted ({unit})"
    )
    axes[1].hist(score - y, bins=60, color="#2563eb")
    axes[1].set(title="Residuals", xlabel=f"predicted - actual ({unit})", ylabel="rows")
    bands = pd.qcut(pd.Series(y), 5, duplicates="drop")
    error = pd.Series(np.abs(score - y) / np.maximum(np.abs(y), 1e-9))
    by_band = error.groupby(bands, observed=True).median()
    fig2, ax = plt.subplots(figsize=(11, 3.6))
    labels = [f"{band.left:,.0f} to {band.right:,.0f}" for band in by_band.index]
    ax.bar(labels, by_band.to_numpy(), color="#2563eb")
    ax.set(
        title=f"Median absolute percentage error by actual {spec.target} (fifths of the test rows)",
        xlabel=unit,
        ylabel="median |error| / actual",
    )
    return [
        (
            "Predictions and residuals",
            report.figure_to_html(fig, "Predicted against actual")
            + report.paragraph(
                "Left: each dot is one test row; on the dashed line the estimate equals the "
                f"actual value. Right: how far estimates miss, in {unit}."
            ),
        ),
        (
            f"Error by {spec.target} band",
            report.figure_to_html(fig2, "Error by band")
            + report.paragraph(
                f"Relative errors by fifths of the actual value ({unit}): where the estimate is "
                "least to be trusted."
            ),
        ),
    ]


def groups_html(spec: ProjectSpec, groups: list[GroupFigures]) -> str:
    frame = pd.DataFrame(
        [
            {
                "column": g.column,
                "group": g.group,
                "rows": g.rows,
                **g.figures,
                "note": "too small to judge" if small_group(spec, g) else "",
            }
            for g in groups
        ]
    )
    small = [f"{g.column}={g.group}" for g in groups if small_group(spec, g)]
    notes = []
    if small:
        notes.append(
            report.paragraph(
                f"Too small to judge (under {SMALL_GROUP_ROWS} rows"
                + (f" or under {SMALL_GROUP_CLASS} of a class" if spec.task == "binary" else "")
                + f"): {', '.join(small)}. Their figures move a lot by chance.",
                "warning",
            )
        )
    notes += [report.paragraph(f"Gap: {line}.") for line in group_gaps(spec, groups)]
    return report.table_html(frame) + "".join(notes)


def html_report(
    spec: ProjectSpec,
    evaluation: Evaluation,
    test_frame: pd.DataFrame,
    score: np.ndarray,
    gate_lines: list[str],
    provenance: Provenance,
    intervals: dict[str, tuple[float, float]] | None = None,
    reading: str = "",
) -> str:
    y = test_frame[spec.target].to_numpy(dtype=float)
    threshold = float(evaluation.metrics.get("threshold", 0.5))
    intro = report.paragraph(reading, "reading") if reading else ""
    sections = [
        (
            f"Test-split figures ({evaluation.rows:,} rows, used once)",
            report.table_html(figures_table(evaluation, intervals or {}, gate_lines))
            + report.paragraph(
                "Intervals: 95% percentile bootstrap over the test rows, i.e. how far a figure "
                "moves with the luck of which rows the split drew."
            ),
        ),
    ]
    if spec.task == "binary":
        sections += _binary_figures(spec, y.astype(int), score, threshold)
    else:
        sections += _regression_figures(spec, y, score)
    if evaluation.groups:
        sections.append(("By group", groups_html(spec, evaluation.groups)))
    return report.page(
        f"{spec.title} ({spec.name}): evaluation on the test split", provenance, sections, intro
    )


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
    provenance: Provenance,
    gate_overrides: str = "{}",
    resamples: int = 1000,
) -> Assessment:
    """Scores the test split once, with bootstrap intervals, and checks the gates
    (`gate_overrides` as JSON)."""
    gates = spec.with_gate_overrides(parse_gate_overrides(gate_overrides))
    result, score = evaluate(spec, model, test_frame)
    passed, gate_lines = check_gates(gates, result.metrics)
    y = split_xy(spec, test_frame)[1].to_numpy()
    threshold = float(result.metrics.get("threshold", 0.5))
    intervals = bootstrap_intervals(
        spec, y, score, threshold, list(INTERVAL_FIGURES[spec.task]), resamples
    )
    reading = business_reading(spec, y, score, threshold)
    summary = EvaluationSummary(
        rows=result.rows,
        metrics=result.metrics,
        groups=result.groups,
        gates=gate_lines,
        passed=passed,
        intervals=intervals,
        reading=reading,
    )
    html = html_report(spec, result, test_frame, score, gate_lines, provenance, intervals, reading)
    return Assessment(summary, gates, result.curves, html)
