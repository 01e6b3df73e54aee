"""Monitoring a served champion: a window of what it answered, checked against the champion's own
reference, with live quality when ground truth has arrived, and a verdict on retraining.

The window is either a slice of the inference log (the server's answers, partitioned by hour)
or a file of served inputs, whose target column, if present, is the ground truth. Labels that
arrive later join the log on request id and row. Whatever its size, the window is read in
bounded memory (`components.core.window`): counts, output figures and live quality cover every
row, the drift check compares a random sample of a stated size.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.core import engine, loading, report, retraining
from components.core import window as window_module
from components.core.compiled import serving_threads
from components.core.contracts import MonitoringSummary, WindowStats
from components.core.drift import DriftPolicy, DriftResult, detect, no_reference, reference_label
from components.core.drift import report_html as drift_report_html
from components.core.lineage import Provenance, utc_now
from components.core.loading import LoadedModel
from components.core.spec import ProjectSpec
from components.core.validate import DataValidationError, frame_violations
from components.core.window import SAMPLE_ROWS

LOG_SOURCE = "log"
"""`source` value that reads the inference log (any other value is a path or URL of a CSV)."""
QUALITY_TOLERANCE = 0.05
MIN_LABELLED_ROWS = 100
INTERVAL_ROWS = 5_000
"""Labelled rows the bootstrap of the live figures' intervals draws from."""


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
    """The window's sample (every row when the window is small): the spec's input columns, and
    the target where ground truth is known."""
    description: str
    stats: WindowStats | None = None
    """Counts over every row of the window (None for a frame given as it is)."""
    labelled_path: str = ""
    """Parquet file of every labelled row of the window; "" when they are those of `frame`."""

    @property
    def rows(self) -> int:
        return self.stats.rows if self.stats is not None else len(self.frame)


def _window_span(hours: float, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    if hours <= 0:
        raise MonitoringError(f"the window must reach back more than 0 hours; got {hours}")
    end = now or utc_now()
    return end - dt.timedelta(hours=hours), end


def collect(
    spec: ProjectSpec,
    source: str,
    log_root: str = "",
    hours: float = 24.0,
    labels: str = "",
    now: dt.datetime | None = None,
    sample_rows: int = SAMPLE_ROWS,
    labelled_path: str = "",
) -> Window:
    """The window to check, read in bounded memory: the last `hours` of the inference log under
    `log_root` (source `log`), with `labels` joined on request id and row, or a CSV of served
    inputs at a path or URL. Its labelled rows go to `labelled_path` (when given); its sample of
    at most `sample_rows` rows is the frame the drift check compares."""
    with contextlib.ExitStack() as stack:
        target = labelled_path or str(
            Path(stack.enter_context(tempfile.TemporaryDirectory())) / "labelled.parquet"
        )
        try:
            if source == LOG_SOURCE:
                if not log_root:
                    raise MonitoringError("source 'log' needs the inference log's root (log_root)")
                start, end = _window_span(hours, now)
                found = window_module.collect_log(
                    spec, log_root, start, end, labels, target, sample_rows
                )
            else:
                if labels:
                    raise MonitoringError(
                        "labels join logged rows by request id: use them with source 'log'"
                    )
                found = window_module.collect_file(spec, source, target, sample_rows)
        except window_module.WindowError as exc:
            raise MonitoringError(str(exc)) from None
        columns = [c for c in [*spec.input_columns, spec.target] if c in found.sample.columns]
        frame = (
            found.sample[columns].reset_index(drop=True)
            if len(found.sample)
            else pd.DataFrame(columns=spec.input_columns)
        )
        return Window(frame, found.stats.window, found.stats, labelled_path)


def validate_window(spec: ProjectSpec, frame: pd.DataFrame) -> None:
    """The inputs must follow the schema the model was trained on (the target need not be there)."""
    if frame.empty:
        return
    violations = frame_violations(spec, frame, with_target=False)
    if violations:
        raise DataValidationError(f"{spec.name} monitoring window", violations)


@dataclass
class LiveQuality:
    figures: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    rows: int = 0


def live_quality(
    spec: ProjectSpec, loaded: LoadedModel, window: Window, seed: int = 42
) -> LiveQuality:
    """The champion's figures on every labelled row of the window, scored a batch at a time and
    counted out of core, each with a 95% interval: the percentile bootstrap of the evaluation on
    a random sample of at most INTERVAL_ROWS of the rows, its width scaled to all of them (the
    interval narrows as one over the square root of the rows)."""
    threshold = loaded.threshold if loaded.threshold is not None else 0.5
    with tempfile.TemporaryDirectory() as folder:
        scored = Path(folder) / "scored.parquet"
        rows = _score_labelled(spec, loaded, window, scored)
        if not rows:
            return LiveQuality()
        con = engine.connect(Path(folder) / "spill")
        con.execute(f"CREATE VIEW scored AS SELECT * FROM read_parquet('{scored}')")
        figures = spec.task.metrics_sql(con, "scored", threshold)
        drawn = con.execute(
            f"SELECT y, score FROM scored ORDER BY {window_module.KEY} DESC LIMIT {INTERVAL_ROWS}"
        ).fetchnumpy()
        con.close()
    score = np.asarray(drawn["score"], dtype=float)
    y = spec.task.target(pd.Series(drawn["y"], dtype=float)).to_numpy()
    finite = {k: float(v) for k, v in figures.items() if np.isfinite(v)}
    from components.core.evaluate import bootstrap_intervals

    names = [m for m in finite if m != "threshold"]
    drawn_figures = spec.task.metrics(y, score, threshold)
    widen = math.sqrt(len(y) / rows)
    intervals = {}
    for name, (low, high) in bootstrap_intervals(
        spec, y, score, threshold, names, seed=seed
    ).items():
        if np.isfinite(low) and np.isfinite(high):
            centre = drawn_figures[name]
            intervals[name] = (
                finite[name] - (centre - low) * widen,
                finite[name] + (high - centre) * widen,
            )
    return LiveQuality(finite, intervals, rows)


def _score_labelled(spec: ProjectSpec, loaded: LoadedModel, window: Window, out: Path) -> int:
    """Every labelled row of the window scored by the model, written to `out` as y, score,
    ordinal and the row's random key; returns how many."""
    if window.labelled_path:
        source = pq.ParquetFile(window.labelled_path)
        batches: Iterator[pd.DataFrame] = (
            b.to_pandas() for b in source.iter_batches(batch_size=window_module.BATCH_ROWS)
        )
    else:
        labelled = (
            window.frame[window.frame[spec.target].notna()]
            if spec.target in window.frame
            else window.frame.iloc[:0]
        )
        keys = window_module.uniform_keys(pd.DataFrame({"row": np.arange(len(labelled))}), 42)
        batches = iter([labelled.assign(**{window_module.KEY: keys})] if len(labelled) else [])
    schema = pa.schema(
        [
            ("y", pa.float64()),
            ("score", pa.float64()),
            ("ordinal", pa.int64()),
            (window_module.KEY, pa.float64()),
        ]
    )
    rows = 0
    with pq.ParquetWriter(out, schema) as writer:
        for batch in batches:
            if not len(batch):
                continue
            score = loaded.output(spec, batch[spec.input_columns])
            table = pa.table(
                {
                    "y": batch[spec.target].to_numpy(dtype=float),
                    "score": np.asarray(score, dtype=float),
                    "ordinal": batch[window_module.ORDER].to_numpy(dtype=np.int64)
                    if window_module.ORDER in batch
                    else np.arange(rows, rows + len(batch), dtype=np.int64),
                    window_module.KEY: batch[window_module.KEY].to_numpy(dtype=float),
                },
                schema=schema,
            )
            writer.write_table(table)
            rows += len(batch)
    return rows


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
    from components.core import reference

    validate_window(spec, window.frame)
    inputs = window.frame[[c for c in spec.input_columns if c in window.frame.columns]]
    version: str | None = None
    registered: dict[str, float] = {}
    live = LiveQuality()
    try:
        version, record, rows = reference.load_alias(spec.name, alias)
    except reference.NoReference as missing:
        drift_result = no_reference(spec, len(inputs), str(missing))
    else:
        label = reference_label(spec, version)
        drift_result = detect(spec, rows, inputs, record.importance, policy.drift, label)
        registered = record.test_metrics
        if labelled_rows(spec, window):
            loaded = loading.load(spec, f"models:/{spec.name}/{version}", threads=serving_threads())
            live = live_quality(spec, loaded, window)
    labelled = labelled_rows(spec, window)
    quality_ok, retrain, why = verdict(
        spec, policy, drift_result, live.figures, labelled, registered
    )
    retrain = retrain and version is not None
    retrain_now, plan = retraining_plan(policy, retrain, labelled)
    summary = MonitoringSummary(
        project=spec.name,
        time=utc_now().isoformat(timespec="seconds"),
        champion_version=version,
        window=window.description,
        rows=window.rows,
        labelled_rows=labelled,
        drift=drift_result.summary,
        live_metrics=live.figures,
        registered_metrics={k: registered[k] for k in live.figures if k in registered},
        quality_ok=quality_ok,
        retrain=retrain,
        reason=why,
        retrain_now=retrain_now,
        retraining=plan,
        rows_sampled=len(inputs),
        live_intervals=live.intervals,
        collected=window.stats,
    )
    return summary, html_report(spec, summary, drift_result)


def labelled_rows(spec: ProjectSpec, window: Window) -> int:
    if window.stats is not None:
        return window.stats.labelled_rows
    return int(window.frame[spec.target].notna().sum()) if spec.target in window.frame else 0


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
    if summary.collected is not None:
        sections.append(("Window", _window_html(summary.collected, summary.rows_sampled)))
    if summary.live_metrics:
        quality = pd.DataFrame(
            [
                {
                    "metric": k,
                    "live": v,
                    "95% interval": _interval(summary.live_intervals.get(k)),
                    "registered (test split)": summary.registered_metrics.get(k),
                }
                for k, v in summary.live_metrics.items()
            ]
        )
        sections.append(
            (
                "Live quality",
                report.table_html(quality)
                + report.paragraph(
                    f"The champion's figures on all {summary.labelled_rows:,} labelled rows of "
                    "the window. Intervals: the evaluation's percentile bootstrap on a random "
                    f"sample of at most {INTERVAL_ROWS:,} of them, its width scaled to all."
                ),
            )
        )
    drift = drift_report_html(spec, drift_result, provenance, "the served window")
    sections.append(
        (
            f"Drift against {summary.drift.reference}",
            f'<iframe title="drift" srcdoc="{html.escape(drift, quote=True)}" '
            'style="width:100%;height:1100px;border:0"></iframe>',
        )
    )
    return report.page(f"{spec.title} ({spec.name}): monitoring", provenance, sections, verdict)


def _interval(found: tuple[float, float] | None) -> str:
    return f"{found[0]:,.4f} to {found[1]:,.4f}" if found else ""


def _window_html(stats: WindowStats, compared: int) -> str:
    """What the window held: counts over every row, the sample the drift check compared, the
    outputs with their intervals, what could not be read."""
    rates = ", ".join(f"{r:g}" for r in stats.sample_rates) or "1 (a file)"
    lines = [
        ("rows logged", f"{stats.rows:,}"),
        ("rows served (each logged row weighs 1/sample rate)", f"{stats.rows_estimated:,.0f}"),
        ("sample rates", rates),
        ("rows the drift check compared (a random sample)", f"{compared:,} of {stats.rows:,}"),
        ("labelled rows", f"{stats.labelled_rows:,}"),
        (
            "rows by model version",
            ", ".join(f"v{v}: {n:,}" for v, n in sorted(stats.rows_by_version.items())),
        ),
        ("log parts read", f"{stats.parts_read:,}"),
        ("log parts skipped (unreadable)", f"{stats.parts_skipped:,}"),
    ]
    output = stats.output
    if output is not None:
        lines.append(
            (
                f"mean {output.field} ({output.unit})",
                f"{output.mean:,.4f} ({_interval(output.mean_interval)})",
            )
        )
        if output.positive_share is not None:
            lines.append(
                (
                    f"share answered {output.positive_label}",
                    f"{output.positive_share:.4f} ({_interval(output.positive_share_interval)})",
                )
            )
        lines += [
            (f"{output.field} {k} (sample)", f"{v:,.4f}") for k, v in output.quantiles.items()
        ]
    if stats.maintenance is not None:
        lines.append(("the log before it was read", stats.maintenance.summary))
    table = report.table_html(pd.DataFrame(lines, columns=["", "value"]))
    notes = [stats.note] if stats.note else []
    if stats.skipped:
        notes.append("Skipped: " + "; ".join(stats.skipped))
    return table + "".join(report.paragraph(n, "warning") for n in notes)


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
    gauge("rows_sampled", "Rows of the window the drift check compared").labels(p).set(
        summary.rows_sampled
    )
    collected = summary.collected
    if collected is not None:
        gauge("rows_served", "Rows served in the window (logged rows / sample rate)").labels(p).set(
            collected.rows_estimated
        )
        gauge("log_parts_skipped", "Parts of the inference log that could not be read").labels(
            p
        ).set(collected.parts_skipped)
        if collected.output is not None and collected.output.positive_share is not None:
            gauge("positive_share", "Share of the window's rows answered positive").labels(p).set(
                collected.output.positive_share
            )
    gauge("labelled_rows", "Rows of the window with ground truth").labels(p).set(
        summary.labelled_rows
    )
    gauge("enough_data", "1 when the window was large enough to judge drift").labels(p).set(
        summary.drift.enough_data
    )
    gauge("drift_detected", "1 when the window drifted from the champion's reference").labels(
        p
    ).set(summary.drift.drift_detected)
    gauge("drift_share", "Share of input columns that drifted").labels(p).set(
        summary.drift.drift_share
    )
    gauge("weighted_drift_share", "Share of importance carried by drifted columns").labels(p).set(
        summary.drift.weighted_drift_share
    )
    gauge("drifted_important_columns", "Drifted columns among the most important").labels(p).set(
        len(summary.drift.drifted_important_columns)
    )
    drifted = gauge("column_drifted", "1 for each input column that drifted", ("column",))
    for column in summary.drift.drifted_columns:
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
