"""Test-split evaluation, per-group figures, the HTML report and the quality gate."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from components.core import report
from components.core.contracts import EvaluationSummary, GroupFigures
from components.core.lineage import Provenance
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
        figures = spec.task.metrics(y[idx], score[idx], threshold)
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


def evaluate(
    spec: ProjectSpec, model: BaseEstimator, test_frame: pd.DataFrame
) -> tuple[Evaluation, np.ndarray]:
    """Figures on the test split; returns them with the model's output (probability or price)."""
    X, y_series = split_xy(spec, test_frame)
    y = y_series.to_numpy()
    task = spec.task
    score = task.model_output(model, X)
    threshold = task.threshold_of(model)
    metrics = task.metrics(y, score, threshold)
    curves = task.curves(y, score, threshold)
    groups = []
    for col in spec.group_columns:
        for value, idx in X.groupby(col).indices.items():
            extra = task.group_extra(y[idx])
            figures = task.metrics(y[idx], score[idx], threshold) | extra
            groups.append(
                GroupFigures(
                    column=col,
                    group=str(value),
                    rows=len(idx),
                    figures={k: figures[k] for k in (*extra, *task.group_figures) if k in figures},
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


def small_group(spec: ProjectSpec, group: GroupFigures) -> bool:
    return spec.task.small_group(group.rows, group.figures)


def group_gaps(spec: ProjectSpec, groups: list[GroupFigures]) -> list[str]:
    """Per group column, the spread of the gap figure across the groups large enough to judge."""
    figure = spec.task.gap_figure
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
    return spec.task.reading_facts(y, score, threshold)


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


def _groups_html(spec: ProjectSpec, groups: list[GroupFigures]) -> str:
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
                f"Too small to judge ({spec.task.small_group_rule}): {', '.join(small)}. Their "
                "figures move a lot by chance.",
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
    sections += spec.task.report_sections(spec.target, y, score, threshold)
    if evaluation.groups:
        sections.append(("By group", _groups_html(spec, evaluation.groups)))
    return report.page(
        f"{spec.title} ({spec.name}): evaluation on the test split", provenance, sections, intro
    )


def _parse_gate_overrides(text: str) -> dict[str, float]:
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
    gates = spec.with_gate_overrides(_parse_gate_overrides(gate_overrides))
    result, score = evaluate(spec, model, test_frame)
    passed, gate_lines = check_gates(gates, result.metrics)
    y = split_xy(spec, test_frame)[1].to_numpy()
    threshold = float(result.metrics.get("threshold", 0.5))
    intervals = bootstrap_intervals(
        spec, y, score, threshold, list(spec.task.interval_figures), resamples
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
