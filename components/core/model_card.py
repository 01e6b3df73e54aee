"""The Markdown model card, rendered from the run's own figures, in the sections of Model Cards
for Model Reporting (Mitchell et al., 2019) and Google's Model Card Toolkit."""

from __future__ import annotations

from typing import Any

from components.core.contracts import Registration, RunRecord
from components.core.evaluate import group_gaps, small_group
from components.core.lineage import code_version, data_kind, utc_stamp
from components.core.metrics import METRICS
from components.core.spec import ProjectSpec
from components.core.train import CV_FOLDS

SECTIONS = (
    "Model details",
    "Intended use",
    "Factors",
    "Metrics",
    "Evaluation data",
    "Training data",
    "Quantitative analyses",
    "Explanation",
    "Drift against the champion",
    "Ethical considerations",
    "Caveats and recommendations",
)
"""The card's sections, in order (a test checks every card has them)."""


def _fmt(value: Any, metric: str = "") -> str:
    """Figures in the target's unit (USD) in whole units, others to four decimals."""
    if isinstance(value, float):
        in_target_unit = metric in METRICS and METRICS[metric].unit == "target"
        return f"{value:,.0f}" if in_target_unit or abs(value) >= 100 else f"{value:,.4f}"
    return str(value)


def protocol(spec: ProjectSpec, record: RunRecord) -> str:
    """How the model and its threshold were chosen, true for this project's task."""
    split = f"{1 - record.test_size:.0%}/{record.test_size:.0%}"
    kind = "stratified " if spec.task.stratified else ""
    text = (
        f"{kind}{split} split, seed {record.seed}; candidate and hyperparameters chosen by "
        f"{CV_FOLDS}-fold CV on the training part"
    )
    text += spec.task.protocol(CV_FOLDS, record.selection.threshold)
    return text + "; test part used once, for the figures below"


def summary(spec: ProjectSpec, record: RunRecord, registration: Registration) -> str:
    """The card in one paragraph: the model version's description in the registry."""
    source, evaluation = record.source, record.evaluation
    name = spec.primary_metric
    value = evaluation.metrics.get(name, float("nan"))
    interval = evaluation.intervals.get(name)
    spread = f" (95% interval {interval[0]:.4f} to {interval[1]:.4f})" if interval else ""
    use = spec.card.intended_use if spec.card else ""
    return (
        f"{spec.title} ({spec.name} v{registration.version}): {record.selection.candidate} "
        f"predicting {spec.output_unit}, trained on {data_kind(source.synthetic)} "
        f"{source.source} (sha256 {source.sha256[:12]}). Test {name} {value:.4f}{spread} on "
        f"{evaluation.rows:,} rows. {registration.decision}. {use}"
    ).strip()


def _metrics_table(spec: ProjectSpec, record: RunRecord) -> list[str]:
    selection, evaluation = record.selection, record.evaluation
    at = f" at threshold {selection.threshold:.4f}" if selection.threshold is not None else ""
    gates = {line.split(" ", 1)[0]: line for line in evaluation.gates}
    lines = [
        f"| metric | test | 95% interval | CV mean ± std{at} | gate | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for name, value in evaluation.metrics.items():
        low_high = evaluation.intervals.get(name)
        interval = f"{_fmt(low_high[0], name)} to {_fmt(low_high[1], name)}" if low_high else ""
        cv = (
            f"{_fmt(selection.cv_mean[name], name)} ± {_fmt(selection.cv_std.get(name, 0.0), name)}"
            if name in selection.cv_mean
            else ""
        )
        gate = gates.get(name, "")
        gate = gate.split("(", 1)[1].rstrip(")").replace("): ", " ") if "(" in gate else ""
        meaning = METRICS[name].meaning if name in METRICS else ""
        lines.append(f"| {name} | {_fmt(value, name)} | {interval} | {cv} | {gate} | {meaning} |")
    return lines


def _groups(spec: ProjectSpec, record: RunRecord) -> list[str]:
    groups = record.evaluation.groups
    if not groups:
        return [f"No group table: {spec.card.factors if spec.card else 'no group columns'}"]
    keys = ["rows", *groups[0].figures]
    lines = [
        "| column | group | " + " | ".join(keys) + " | note |",
        "|---" * (len(keys) + 3) + "|",
    ]
    for g in groups:
        cells = " | ".join(_fmt(g.rows if k == "rows" else g.figures.get(k, "")) for k in keys)
        note = "too small to judge" if small_group(spec, g) else ""
        lines.append(f"| {g.column} | {g.group} | {cells} | {note} |")
    lines += ["", f"Groups {spec.task.small_group_rule} are listed but too small to judge."]
    gaps = group_gaps(spec, groups)
    lines += [f"- **Gap** in {gap}." for gap in gaps] or ["- No gap to call out."]
    return lines


def render(spec: ProjectSpec, record: RunRecord, registration: Registration) -> str:
    source, selection, evaluation = record.source, record.selection, record.evaluation
    card = spec.card
    lines = [f"# Model card: {spec.name} v{registration.version} ({spec.title})", ""]
    if source.synthetic:
        lines += [f"> **{source.notice}**", ""]
    lines += [
        f"**{data_kind(source.synthetic)}.** {summary(spec, record, registration)}",
        "",
        "## Model details",
        f"- owner: {card.owner if card else 'not stated'}",
        f"- registry: `{spec.name}` version {registration.version}, aliases "
        f"{', '.join(registration.aliases)}; decision: {registration.decision}",
        f"- date: {utc_stamp()}",
        f"- task: {spec.task.name}; target `{spec.target}`; output {spec.output_unit}; primary "
        f"metric `{spec.primary_metric}`",
        f"- estimator: {selection.candidate} with {selection.params}",
    ]
    if selection.threshold is not None:
        lines.append(
            f"- decision threshold: {selection.threshold:.4f} (applied by the served model)"
        )
    lines += [f"- {note}" for note in selection.notes]
    lines += [
        f"- lineage: KFP run `{record.run_name}`; MLflow run `{registration.run_id}`; code "
        f"`{code_version()}`; model file sha256 `{record.model_sha256}`; data "
        f"`{source.source}` sha256 `{source.sha256}`; champion before: "
        f"{registration.champion_before or 'none'}",
        "",
        "## Intended use",
    ]
    if card:
        lines += [
            f"- primary use: {card.intended_use}",
            f"- primary users: {card.users}",
            "- out of scope:",
            *[f"  - {use}" for use in card.out_of_scope],
        ]
    else:
        lines.append("- not stated in the project's spec")
    lines += [
        "",
        "## Factors",
        f"- {card.factors if card else 'not stated'}",
        "",
        "## Metrics",
        *_metrics_table(spec, record),
        "",
        "Intervals: 95% percentile bootstrap over the test rows. CV figures: mean ± standard "
        f"deviation over {CV_FOLDS} folds of the training part.",
        "",
        "### Quality gate",
        *[f"- {g}" for g in evaluation.gates],
        "",
        "## Evaluation data",
        f"- the test split: {evaluation.rows:,} rows of the same source, never seen in training",
        f"- protocol: {protocol(spec, record)}",
    ]
    if evaluation.reading:
        lines.append(f"- in the business's words: {evaluation.reading}")
    lines += [
        "",
        "## Training data",
        f"- source: `{source.source}` (sha256 `{source.sha256}`), "
        f"{data_kind(source.synthetic).lower()}, {source.rows:,} rows after cleaning; "
        f"{source.train_rows:,} for training",
    ]
    lines += [f"- cleaning: {rule}: {n} rows removed" for rule, n in source.removed_rows.items()]
    lines += [
        f"- inputs: {', '.join(spec.input_columns)}; read but never used: "
        f"{', '.join(spec.ignored_columns) or 'none'}",
        "",
        "## Quantitative analyses",
        *_groups(spec, record),
        "",
    ]
    explanation = record.explanation
    unit = explanation.unit or spec.output_unit
    lines += [
        "## Explanation",
        f"Mean absolute SHAP contribution to {unit} of each input over {explanation.rows:,} "
        f"test rows ({explanation.method}; the server's :explain gives the same per request):",
        *[f"- {k}: {v:,.4f}" for k, v in list(explanation.importance.items())[:10]],
        "",
    ]
    drift = record.drift
    lines += [
        "## Drift against the champion",
        f"- this run's training split against {drift.reference} ({drift.reference_rows:,} rows)"
        if drift.reference_rows
        else "- nothing to compare with (no champion yet)",
        f"- verdict: {drift.reason}",
        "",
        "## Ethical considerations",
        *[f"- {text}" for text in (card.ethical if card else ())],
    ]
    lines += [f"- measured: {gap}." for gap in group_gaps(spec, evaluation.groups)]
    lines += [
        "",
        "## Caveats and recommendations",
        *[f"- {text}" for text in (card.caveats if card else ())],
        "- figures hold for data like the source above; read the drift report before trusting "
        "new batches",
        "- the model sees only the inputs listed; it knows nothing of events after the data was "
        "collected",
    ]
    if source.synthetic:
        lines.append(
            "- trained on synthetic data: never promoted over a champion trained on real data"
        )
    return "\n".join(lines) + "\n"
