"""The Markdown model card, rendered from the run's own figures."""

from __future__ import annotations

from typing import Any

from components.core.contracts import Registration, RunRecord
from components.core.spec import ProjectSpec


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def render(spec: ProjectSpec, record: RunRecord, registration: Registration) -> str:
    source, selection, evaluation = record.source, record.selection, record.evaluation
    lines = [f"# Model card: {spec.name} ({spec.title})", ""]
    if source.synthetic:
        lines += [f"> **{source.notice}**", ""]
    lines += [
        "## Model",
        f"- task: {spec.task}; target `{spec.target}`; primary metric `{spec.primary_metric}`",
        f"- estimator: {selection.candidate} with {selection.params}",
    ]
    if selection.threshold is not None:
        lines.append(
            f"- decision threshold: {selection.threshold:.4f} (applied by the served model)"
        )
    lines += [f"- {note}" for note in selection.notes]
    lines += [
        f"- registry: `{spec.name}` version {registration.version}, aliases {registration.aliases}, run `{registration.run_id}`",
        f"- decision: {registration.decision}",
        "",
        "## Data",
        f"- source: `{source.source}` (sha256 `{source.sha256}`), {source.rows} rows after cleaning",
    ]
    lines += [f"- cleaning: {rule}: {n} rows removed" for rule, n in source.removed_rows.items()]
    lines += [
        f"- protocol: {'stratified ' if spec.task == 'binary' else ''}{1 - record.test_size:.0%}/{record.test_size:.0%} split, seed {record.seed}; "
        "model and threshold chosen by 5-fold CV on the training part; test part used once",
        f"- inputs: {', '.join(spec.input_columns)}; ignored: {', '.join(spec.ignored_columns) or 'none'}",
        "",
        "## Figures",
        "| metric | CV mean | CV std | test |",
        "|---|---|---|---|",
    ]
    for name, value in evaluation.metrics.items():
        lines.append(
            f"| {name} | {_fmt(selection.cv_mean.get(name, ''))} | {_fmt(selection.cv_std.get(name, ''))} | {_fmt(value)} |"
        )
    lines += ["", "### Quality gate", *[f"- {g}" for g in evaluation.gates], ""]
    if evaluation.groups:
        keys = ["rows", *evaluation.groups[0].figures]
        lines += [
            "### By group",
            "| column | group | " + " | ".join(keys) + " |",
            "|---" * (len(keys) + 2) + "|",
        ]
        lines += [
            f"| {g.column} | {g.group} | "
            + " | ".join(_fmt(g.rows if k == "rows" else g.figures[k]) for k in keys)
            + " |"
            for g in evaluation.groups
        ]
        lines.append("")
    lines += [
        "## Explanation (mean |SHAP|)",
        *[f"- {k}: {v:.4f}" for k, v in list(record.explanation.importance.items())[:10]],
        "",
    ]
    drift = record.drift
    lines += [
        "## Drift (Evidently: this training data vs the champion's reference)",
        f"- compared with: {drift.reference} ({drift.reference_rows} rows)"
        if drift.reference_rows
        else "- compared with: nothing",
        f"- verdict: {drift.reason}",
        "",
        "## Limits",
        "- figures hold for data like the source above; check the drift report before trusting new batches",
        "- the model sees only the input columns listed; it knows nothing of events after the data was collected",
    ]
    return "\n".join(lines) + "\n"
