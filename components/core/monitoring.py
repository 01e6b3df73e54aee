"""Monitoring a served champion: a window of what it answered, checked against the champion's own
reference, with live quality when ground truth has arrived, and a verdict on retraining.

The window is either a slice of the inference log (the server's answers, partitioned by hour)
or a file of served inputs, whose target column, if present, is the ground truth. Labels that
arrive later join the log on request id and row.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from components.core import inference_log, report, retraining
from components.core.contracts import MonitoringSummary
from components.core.drift import DriftPolicy, DriftResult, detect, no_reference, reference_label
from components.core.drift import report_html as drift_report_html
from components.core.ingest import parse_csv, read_bytes
from components.core.lineage import Provenance
from components.core.metrics import task_metrics
from components.core.outputs import model_output
from components.core.spec import ProjectSpec
from components.core.validate import DataValidationError, frame_violations

LOG_SOURCE = "log"
"""`source` value that reads the inference log (any other value is a path or URL of a CSV)."""
QUALITY_TOLERANCE = 0.05
MIN_LABELLED_ROWS = 100


class MonitoringError(ValueError):
    """The window cannot be collected or checked; the message names the source and the problem."""


@dataclass(frozen=True)
class MonitoringPolicy:
    drift: DriftPolicy = field(default_factory=DriftPolicy)
    quality_tolerance: float = QUALITY_TOLERANCE
    """How far the primary metric may fall short of the champion's registered test figure (in the
    metric's own units) before retraining is called for."""
    min_labelled_rows: int = MIN_LABELLED_ROWS
    """Labelled rows below which live quality is reported but not acted on."""
    retrain: bool = True
    """Retrain when the verdict calls for it (False: report the recommendation only)."""
    retrain_min_labelled_rows: int = retraining.MIN_LABELLED_ROWS
    """Labelled rows a retraining needs, so that part of them can judge the challenger."""

    def __post_init__(self) -> None:
        if (
            self.quality_tolerance < 0
            or self.min_labelled_rows < 1
            or self.retrain_min_labelled_rows < 2
        ):
            raise ValueError(
                f"monitoring policy: quality_tolerance {self.quality_tolerance} must be >= 0, "
                f"min_labelled_rows {self.min_labelled_rows} >= 1 and "
                f"retrain_min_labelled_rows {self.retrain_min_labelled_rows} >= 2"
            )


def retraining_plan(policy: MonitoringPolicy, recommended: bool, labelled: int) -> tuple[bool, str]:
    """Whether the pipeline retrains now, and why or why not."""
    if not recommended:
        return False, ""
    if not policy.retrain:
        return False, "retraining recommended; not run (retraining is off for this run)"
    if labelled < policy.retrain_min_labelled_rows:
        return False, (
            f"retraining recommended; not run: {labelled} labelled rows in the window, "
            f"{policy.retrain_min_labelled_rows} needed to judge a challenger on new data"
        )
    return True, f"retraining on the champion's data plus the window's {labelled} labelled rows"


@dataclass
class Window:
    frame: pd.DataFrame
    """The spec's input columns, and the target where ground truth is known."""
    description: str


def _labels(spec: ProjectSpec, frame: pd.DataFrame, labels: str) -> pd.DataFrame:
    """Joins a labels file (request_id, row, target) onto logged rows."""
    table = parse_csv(read_bytes(labels), labels)
    missing = [c for c in ("request_id", spec.target) if c not in table.columns]
    if missing:
        raise MonitoringError(f"labels file {labels} lacks the column(s) {missing}")
    if "row" not in table.columns:
        table["row"] = 0
    table = table[["request_id", "row", spec.target]].drop_duplicates(["request_id", "row"])
    table["request_id"] = table["request_id"].astype(str)
    frame = frame.drop(columns=[spec.target], errors="ignore")
    return frame.merge(table, on=["request_id", "row"], how="left")


def collect(
    spec: ProjectSpec,
    source: str,
    log_root: str = "",
    hours: float = 24.0,
    labels: str = "",
    now: dt.datetime | None = None,
) -> Window:
    """The window to check: the last `hours` of the inference log under `log_root` (source
    `log`), or a CSV at a path or URL."""
    if source == LOG_SOURCE:
        if not log_root:
            raise MonitoringError("source 'log' needs the inference log's root (log_root)")
        end = now or inference_log.utc_now()
        start = end - dt.timedelta(hours=hours)
        logged = inference_log.read_window(log_root, spec.name, start, end)
        if labels and not logged.empty:
            logged = _labels(spec, logged, labels)
        described = f"inference log {log_root}, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
        columns = [c for c in [*spec.input_columns, spec.target] if c in logged.columns]
        return Window(logged[columns].reset_index(drop=True), described)
    frame = parse_csv(read_bytes(source), source)
    if labels:
        raise MonitoringError("labels join logged rows by request id: use them with source 'log'")
    columns = [c for c in [*spec.input_columns, spec.target] if c in frame.columns]
    return Window(frame[columns].reset_index(drop=True), f"file {source}")


def validate_window(spec: ProjectSpec, frame: pd.DataFrame) -> None:
    """The inputs must follow the schema the model was trained on (the target need not be there)."""
    if frame.empty:
        return
    violations = frame_violations(spec, frame, with_target=False)
    if violations:
        raise DataValidationError(f"{spec.name} monitoring window", violations)


def live_quality(
    spec: ProjectSpec,
    model: object,
    frame: pd.DataFrame,
    threshold: float | None,
) -> tuple[dict[str, float], int]:
    """The champion's figures on the labelled rows of the window, and how many there were."""
    if spec.target not in frame.columns:
        return {}, 0
    labelled = frame[frame[spec.target].notna()]
    if labelled.empty:
        return {}, 0
    y = labelled[spec.target].to_numpy(dtype=float)
    output = model_output(spec, model, labelled[spec.input_columns])
    if spec.task == "binary":
        y = y.astype(int)
    figures = task_metrics(spec.task, y, output, threshold if threshold is not None else 0.5)
    return {k: float(v) for k, v in figures.items() if np.isfinite(v)}, len(labelled)


def verdict(
    spec: ProjectSpec,
    policy: MonitoringPolicy,
    drift_result: DriftResult,
    live: dict[str, float],
    labelled: int,
    registered: dict[str, float],
) -> tuple[bool | None, bool, str]:
    """(quality ok, retrain, why) from the drift result and the live figures."""
    found = drift_result.summary
    metric = spec.primary
    quality_ok: bool | None = None
    reasons = []
    if labelled >= policy.min_labelled_rows and spec.primary_metric in live and registered:
        registered_value = registered.get(spec.primary_metric)
        if registered_value is not None:
            allowed = (
                registered_value - policy.quality_tolerance
                if metric.higher_is_better
                else registered_value + policy.quality_tolerance
            )
            quality_ok = metric.meets(live[spec.primary_metric], allowed)
            if not quality_ok:
                reasons.append(
                    f"live {spec.primary_metric} {live[spec.primary_metric]:.4f} on {labelled} "
                    f"labelled rows is worse than the registered {registered_value:.4f} by more "
                    f"than {policy.quality_tolerance:g}"
                )
    if found.drift_detected:
        reasons.append(found.reason)
    retrain = bool(reasons)
    if not retrain:
        quality = (
            "live quality within tolerance"
            if quality_ok
            else f"live quality not judged ({labelled} labelled rows, "
            f"{policy.min_labelled_rows} needed)"
        )
        reasons = [found.reason, quality]
    return quality_ok, retrain, "; ".join(reasons)


def check(
    spec: ProjectSpec,
    window: Window,
    policy: MonitoringPolicy = MonitoringPolicy(),
    alias: str = "champion",
) -> tuple[MonitoringSummary, str]:
    """The window against the champion (MLflow tracking URI set by the caller): the summary and
    an HTML report."""
    import mlflow

    from components.core import reference

    validate_window(spec, window.frame)
    inputs = window.frame[[c for c in spec.input_columns if c in window.frame.columns]]
    version: str | None = None
    registered: dict[str, float] = {}
    live: dict[str, float] = {}
    labelled = 0
    try:
        version, record, rows = reference.load_alias(spec.name, alias)
    except reference.NoReference as missing:
        drift_result = no_reference(spec, len(inputs), str(missing))
    else:
        label = reference_label(spec, version)
        drift_result = detect(spec, rows, inputs, record.importance, policy.drift, label)
        registered = record.test_metrics
        model = mlflow.sklearn.load_model(f"models:/{spec.name}/{version}")
        live, labelled = live_quality(spec, model, window.frame, record.threshold)
    quality_ok, retrain, why = verdict(spec, policy, drift_result, live, labelled, registered)
    retrain = retrain and version is not None
    retrain_now, plan = retraining_plan(policy, retrain, labelled)
    found = drift_result.summary
    summary = MonitoringSummary(
        project=spec.name,
        time=inference_log.utc_now().isoformat(timespec="seconds"),
        champion_version=version,
        window=window.description,
        rows=len(window.frame),
        labelled_rows=labelled,
        enough_data=found.enough_data,
        drift_detected=found.drift_detected,
        drifted_columns=found.drifted_columns,
        drifted_important_columns=found.drifted_important_columns,
        drift_share=found.drift_share,
        weighted_drift_share=found.weighted_drift_share,
        drift_reason=found.reason,
        reference=found.reference,
        live_metrics=live,
        registered_metrics={k: registered[k] for k in live if k in registered},
        quality_ok=quality_ok,
        retrain=retrain,
        reason=why,
        retrain_now=retrain_now,
        retraining=plan,
    )
    return summary, html_report(spec, summary, drift_result)


def html_report(spec: ProjectSpec, summary: MonitoringSummary, drift_result: DriftResult) -> str:
    provenance = Provenance(
        project=spec.name,
        synthetic=None,
        data=f"{summary.window}: {summary.rows:,} rows, {summary.labelled_rows:,} labelled",
        model=f"{spec.name} champion",
        model_version=summary.champion_version or "none (no champion)",
        run="monitoring check",
        created=summary.time,
    )
    verdict = report.paragraph(
        ("RETRAIN: " if summary.retrain else "")
        + summary.reason
        + (f" Retraining: {summary.retraining}" if summary.retraining else ""),
        "reading",
    )
    sections = []
    if summary.live_metrics:
        quality = pd.DataFrame(
            [
                {
                    "metric": k,
                    "live": v,
                    "registered (test split)": summary.registered_metrics.get(k),
                }
                for k, v in summary.live_metrics.items()
            ]
        )
        sections.append(("Live quality", report.table_html(quality)))
    drift = drift_report_html(spec, drift_result, provenance, "the served window")
    sections.append(
        (
            f"Drift against {summary.reference}",
            f'<iframe title="drift" srcdoc="{html.escape(drift, quote=True)}" '
            'style="width:100%;height:1100px;border:0"></iframe>',
        )
    )
    return report.page(f"{spec.title} ({spec.name}): monitoring", provenance, sections, verdict)


PUSH_JOB = "mlops-monitoring"


def publish(summary: MonitoringSummary, gateway: str, timeout: float = 10.0) -> None:
    """Hands the run's figures to a Prometheus Pushgateway (the standard for batch jobs), grouped
    by project, so that the dashboard and the alerts see every monitoring run."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"mlops_monitoring_{name}", doc, ("project", *labels), registry=registry)

    p = summary.project
    gauge("rows", "Rows in the monitored window").labels(p).set(summary.rows)
    gauge("labelled_rows", "Rows of the window with ground truth").labels(p).set(
        summary.labelled_rows
    )
    gauge("enough_data", "1 when the window was large enough to judge drift").labels(p).set(
        summary.enough_data
    )
    gauge("drift_detected", "1 when the window drifted from the champion's reference").labels(
        p
    ).set(summary.drift_detected)
    gauge("drift_share", "Share of input columns that drifted").labels(p).set(summary.drift_share)
    gauge("weighted_drift_share", "Share of importance carried by drifted columns").labels(p).set(
        summary.weighted_drift_share
    )
    gauge("drifted_important_columns", "Drifted columns among the most important").labels(p).set(
        len(summary.drifted_important_columns)
    )
    drifted = gauge("column_drifted", "1 for each input column that drifted", ("column",))
    for column in summary.drifted_columns:
        drifted.labels(p, column).set(1)
    live = gauge("live_metric", "Champion's figure on the labelled rows", ("metric",))
    registered = gauge("registered_metric", "Champion's registered test figure", ("metric",))
    for name, value in summary.live_metrics.items():
        live.labels(p, name).set(value)
        if name in summary.registered_metrics:
            registered.labels(p, name).set(summary.registered_metrics[name])
    gauge("retrain_recommended", "1 when the policy calls for retraining").labels(p).set(
        summary.retrain
    )
    gauge("last_run_timestamp_seconds", "When monitoring last ran").labels(p).set(
        dt.datetime.fromisoformat(summary.time).timestamp()
    )
    push_to_gateway(
        gateway, job=PUSH_JOB, grouping_key={"project": p}, registry=registry, timeout=timeout
    )
