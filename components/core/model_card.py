"""The Markdown model card, rendered from the run's own figures."""

from __future__ import annotations

from typing import Any

from components.core.spec import ProjectSpec


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def render(
    spec: ProjectSpec,
    *,
    source: dict[str, Any],
    selection: dict[str, Any],
    test_metrics: dict[str, float],
    cv_mean: dict[str, float],
    cv_std: dict[str, float],
    gate_lines: list[str],
    groups: list[dict[str, Any]],
    importance: dict[str, float],
    drift: dict[str, Any],
    registry: dict[str, Any],
    seed: int,
    test_size: float,
) -> str:
    lines = [f"# Model card: {spec.name} ({spec.title})", ""]
    if source.get("synthetic"):
        lines += [f"> **{source.get('notice')}**", ""]
    lines += [
        "## Model",
        f"- task: {spec.task}; target `{spec.target}`; primary metric `{spec.primary_metric}`",
        f"- estimator: {selection['candidate']} with {selection['params']}",
    ]
    if selection.get("threshold") is not None:
        lines.append(
            f"- decision threshold: {selection['threshold']:.4f} (applied by the served model)"
        )
    lines += [f"- {note}" for note in selection.get("notes", [])]
    lines += [
        f"- registry: `{spec.name}` version {registry.get('version')}, aliases {registry.get('aliases')}, run `{registry.get('run_id')}`",
        f"- decision: {registry.get('decision')}",
        "",
        "## Data",
        f"- source: `{source.get('source')}` (sha256 `{source.get('sha256')}`), {source.get('rows')} rows after cleaning",
    ]
    lines += [
        f"- cleaning: {rule}: {n} rows removed"
        for rule, n in source.get("removed_rows", {}).items()
    ]
    lines += [
        f"- protocol: {'stratified ' if spec.task == 'binary' else ''}{1 - test_size:.0%}/{test_size:.0%} split, seed {seed}; "
        "model and threshold chosen by 5-fold CV on the training part; test part used once",
        f"- inputs: {', '.join(spec.input_columns)}; ignored: {', '.join(spec.ignored_columns) or 'none'}",
        "",
        "## Figures",
        "| metric | CV mean | CV std | test |",
        "|---|---|---|---|",
    ]
    for name, value in test_metrics.items():
        lines.append(
            f"| {name} | {_fmt(cv_mean.get(name, ''))} | {_fmt(cv_std.get(name, ''))} | {_fmt(value)} |"
        )
    lines += ["", "### Quality gate", *[f"- {g}" for g in gate_lines], ""]
    if groups:
        keys = [k for k in groups[0] if k not in ("column", "group")]
        lines += [
            "### By group",
            "| column | group | " + " | ".join(keys) + " |",
            "|---" * (len(keys) + 2) + "|",
        ]
        lines += [
            f"| {g['column']} | {g['group']} | " + " | ".join(_fmt(g[k]) for k in keys) + " |"
            for g in groups
        ]
        lines.append("")
    lines += [
        "## Explanation (mean |SHAP|)",
        *[f"- {k}: {v:.4f}" for k, v in list(importance.items())[:10]],
        "",
    ]
    lines += [
        "## Drift (Evidently, current batch vs training data)",
        f"- drifted columns: {drift.get('drifted_columns')} (share {drift.get('drift_share', 0):.2f}); dataset drift: {drift.get('dataset_drift')}",
        "",
        "## Limits",
        "- figures hold for data like the source above; check the drift report before trusting new batches",
        "- the model sees only the input columns listed; it knows nothing of events after the data was collected",
    ]
    return "\n".join(lines) + "\n"
