"""Data drift of a batch of inputs against what a model learnt from (Evidently), with a verdict
that weighs the columns by their importance to the model.

Per-column tests on a few hundred rows flag some column by chance on almost every window, and
"half of the columns drifted" misses a shift in the one feature that matters. So:

- below `min_rows` the verdict is "not enough data", never a guess;
- the reference is a sample of the model's own training data, of more than a thousand rows, so
  Evidently compares distributions by distance (Wasserstein for numbers, Jensen-Shannon for
  categories), which, unlike a p-value, does not flag small differences just because a window
  is large;
- free-text columns (a car's make and model) keep their most frequent values and pool the rest,
  so a few hundred rows are not judged on a thousand rare values;
- drift is detected when a column among the most important ones drifts (the top
  `important_columns` by importance), or when the drifted columns carry at least
  `weighted_share` of the total importance. A lone minor column does not cry wolf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from components.core.contracts import DriftSummary
from components.core.lineage import Provenance
from components.core.spec import ProjectSpec

if TYPE_CHECKING:
    from evidently import DataDefinition

MIN_ROWS = 500
IMPORTANT_COLUMNS = 3
NUMERIC_THRESHOLD = 0.2
"""Normed Wasserstein distance from which a numeric column counts as drifted. On 20 iid windows
of 500 real rows per project the largest distance seen was 0.13; a 10% shift of a typical
feature is 0.2 to 0.4."""
CATEGORICAL_THRESHOLD = 0.15
"""Jensen-Shannon distance from which a categorical column counts as drifted (0.10 the largest
seen on iid windows of 500 real rows)."""
WEIGHTED_SHARE = 0.5
TOP_VALUES = 20
"""Values of a free-text column kept by name; the rest are pooled as OTHER."""
OTHER = "(other)"


@dataclass(frozen=True)
class DriftPolicy:
    """When a batch counts as drifted. The defaults are what `make bench-monitoring` measured."""

    min_rows: int = MIN_ROWS
    important_columns: int = IMPORTANT_COLUMNS
    weighted_share: float = WEIGHTED_SHARE
    numeric_threshold: float = NUMERIC_THRESHOLD
    categorical_threshold: float = CATEGORICAL_THRESHOLD

    def __post_init__(self) -> None:
        if self.min_rows < 1 or self.important_columns < 0 or not 0 < self.weighted_share <= 1:
            raise ValueError(
                f"drift policy: min_rows {self.min_rows} must be >= 1, important_columns "
                f"{self.important_columns} >= 0, weighted_share {self.weighted_share} in (0, 1]"
            )


@dataclass
class DriftResult:
    summary: DriftSummary
    html: str


def _column_drifted(method: str, value: float, threshold: float) -> bool:
    # Evidently reports p-values for statistical tests (drift when small) and distances otherwise.
    return value < threshold if "p_value" in method.replace("-", "_") else value >= threshold


def comparable(
    spec: ProjectSpec, reference: pd.DataFrame, current: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, DataDefinition]:
    """Both frames as Evidently should compare them: dates as days, numbers as numbers, free
    text reduced to its frequent values."""
    numerical, categorical = [], []
    ref, cur = pd.DataFrame(index=reference.index), pd.DataFrame(index=current.index)
    for column in spec.columns:
        name = column.name
        if column.dtype in ("float", "int"):
            ref[name] = pd.to_numeric(reference[name], errors="coerce")
            cur[name] = pd.to_numeric(current[name], errors="coerce")
            numerical.append(name)
        elif column.dtype == "date":
            for frame, source in ((ref, reference), (cur, current)):
                dates = pd.to_datetime(source[name], errors="coerce")
                frame[name] = (dates - pd.Timestamp("1970-01-01")).dt.days.astype(float)
            numerical.append(name)
        else:
            ref[name] = reference[name].astype("string").fillna("(blank)")
            cur[name] = current[name].astype("string").fillna("(blank)")
            if column.dtype == "string":
                frequent = set(ref[name].value_counts().index[:TOP_VALUES])
                ref[name] = ref[name].where(ref[name].isin(frequent), OTHER)
                cur[name] = cur[name].where(cur[name].isin(frequent), OTHER)
            categorical.append(name)
    from evidently import DataDefinition

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    return ref, cur, definition


def important(importance: Mapping[str, float], columns: list[str], top: int) -> list[str]:
    ranked = sorted(columns, key=lambda c: -importance.get(c, 0.0))
    return [c for c in ranked[:top] if importance.get(c, 0.0) > 0]


def detect(
    spec: ProjectSpec,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    importance: Mapping[str, float] | None = None,
    policy: DriftPolicy = DriftPolicy(),
    reference_label: str = "reference",
) -> DriftResult:
    """Drift of `current` against `reference` (both with the spec's input columns).

    `importance` is each input column's importance to the model (any non-negative scale); without
    it every column weighs the same. The summary says why it decided what it decided."""
    columns = spec.input_columns
    weights = {
        c: 1.0 if importance is None else max(float(importance.get(c, 0.0)), 0.0) for c in columns
    }
    enough = len(current) >= policy.min_rows
    summary = DriftSummary(
        rows=len(current),
        reference_rows=len(reference),
        reference=reference_label,
        enough_data=enough,
        drift_detected=False,
        drifted_columns=[],
        drift_share=0.0,
        weighted_drift_share=0.0,
        important_columns=important(weights, columns, policy.important_columns),
        drifted_important_columns=[],
        column_scores={},
        column_methods={},
        column_drifted={},
        reason=f"not enough data: {len(current)} rows, at least {policy.min_rows} needed",
    )
    if not enough:
        return DriftResult(summary, "")
    # Imported here: every step that reads a drift record would otherwise pay Evidently's ~3 s.
    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset

    ref, cur, definition = comparable(spec, reference[columns], current[columns])
    preset = DataDriftPreset(
        columns=columns,
        num_threshold=policy.numeric_threshold,
        cat_threshold=policy.categorical_threshold,
    )
    snapshot = Report([preset]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    drifted: dict[str, bool] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            name, value = config["column"], float(metric["value"])
            scores[name], methods[name] = value, config["method"]
            drifted[name] = _column_drifted(config["method"], value, float(config["threshold"]))
    flagged = [c for c in columns if drifted.get(c)]
    total = sum(weights.values()) or 1.0
    weighted = sum(weights[c] for c in flagged) / total
    flagged_important = [c for c in summary.important_columns if drifted.get(c)]
    detected = bool(flagged_important) or weighted >= policy.weighted_share
    if flagged_important:
        reason = f"drift in important column(s) {', '.join(flagged_important)}"
    elif detected:
        reason = f"drifted columns carry {weighted:.0%} of the importance (>= {policy.weighted_share:.0%})"
    elif flagged:
        reason = (
            f"no drift: {', '.join(flagged)} moved, but none is among the top "
            f"{policy.important_columns} and together they carry {weighted:.0%} of the importance"
        )
    else:
        reason = "no drift: no column moved"
    summary = summary.model_copy(
        update={
            "drift_detected": detected,
            "drifted_columns": flagged,
            "drift_share": len(flagged) / len(columns),
            "weighted_drift_share": round(weighted, 6),
            "drifted_important_columns": flagged_important,
            "column_scores": scores,
            "column_methods": methods,
            "column_drifted": drifted,
            "reason": reason,
        }
    )
    return DriftResult(summary, snapshot.get_html_str(as_iframe=False))


def no_reference(spec: ProjectSpec, rows: int, why: str) -> DriftResult:
    """The result where there is nothing to compare against (no champion yet)."""
    summary = DriftSummary(
        rows=rows,
        reference_rows=0,
        reference="none",
        enough_data=False,
        drift_detected=False,
        drifted_columns=[],
        drift_share=0.0,
        weighted_drift_share=0.0,
        important_columns=[],
        drifted_important_columns=[],
        column_scores={},
        column_methods={},
        column_drifted={},
        reason=why,
    )
    return DriftResult(summary, "")


def shift(frame: pd.DataFrame, changes: Mapping[str, float]) -> pd.DataFrame:
    """A copy with numeric columns multiplied by a factor (`{"Age": 1.3}`): a planted shift for
    tests, the traffic generator and the monitoring benchmark."""
    out = frame.copy()
    for column, factor in changes.items():
        if column not in out:
            raise KeyError(f"cannot shift {column!r}: no such column ({', '.join(out.columns)})")
        out[column] = pd.to_numeric(out[column], errors="raise") * factor
    return out


def against_champion(
    spec: ProjectSpec, current: pd.DataFrame, policy: DriftPolicy = DriftPolicy()
) -> DriftResult:
    """Drift of `current` against the reference of the project's champion (MLflow tracking URI
    set by the caller), or a result saying there is nothing to compare."""
    from components.core import reference

    try:
        version, record, rows = reference.load_alias(spec.name)
    except reference.NoReference as why:
        return no_reference(spec, len(current), str(why))
    return detect(spec, rows, current, record.importance, policy, reference_label(spec, version))


def reference_label(spec: ProjectSpec, version: str) -> str:
    """How reports name a version's reference rows (their count travels beside it)."""
    return f"{spec.name} v{version} training sample"


def report_html(
    spec: ProjectSpec, result: DriftResult, provenance: Provenance, current: str
) -> str:
    """The drift report a reviewer opens: what `current` (e.g. "this run's training split") is
    compared with, the verdict and why, per-column figures, then Evidently's own report."""
    from components.core import report

    found = result.summary
    title = f"{spec.title} ({spec.name}): data drift of {current} against {found.reference}"
    intro = report.paragraph(
        f"Compares current = {current} ({found.rows:,} rows) with reference = "
        f"{found.reference} ({found.reference_rows:,} rows), column by column on the "
        f"{len(spec.input_columns)} inputs the model reads. Verdict: {found.reason}.",
        "reading",
    )
    columns = pd.DataFrame(
        [
            {
                "column": c,
                "score": found.column_scores.get(c),
                "method": found.column_methods.get(c, ""),
                "drifted": found.column_drifted.get(c, False),
                "important": c in found.important_columns,
            }
            for c in spec.input_columns
        ]
    )
    table = report.table_html(columns) if found.column_scores else ""
    if result.html:
        return report.with_header(result.html, title, provenance, intro + table)
    return report.page(title, provenance, [], intro)
