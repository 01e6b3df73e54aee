"""The monitoring pipeline's steps: compact the log, collect a window, check it against the
champion, publish."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def compact_log(
    project: str, source: str, log_root: str, retention_days: float, maintenance: Output[Artifact]
):
    """The inference log kept readable at volume: each hour that is over, from the server's
    JSON parts into one Parquet file (unreadable parts set aside in `_corrupt/` and counted),
    and with `retention_days` > 0 the hours older than that deleted. Nothing to do unless
    `source` is the log."""
    from components.core import inference_log
    from components.core.contracts import LogMaintenance
    from components.core.monitoring import LOG_SOURCE
    from components.core.projects import get_spec

    if source != LOG_SOURCE or not log_root:
        done = LogMaintenance(
            root=log_root,
            project=project,
            hours_compacted=0,
            parts_compacted=0,
            rows_compacted=0,
            parts_quarantined=0,
            quarantined=[],
            hours_pruned=0,
            kept_from="",
            summary="not the inference log: nothing to compact",
        )
    else:
        schema = inference_log.LogSchema.of(get_spec(project))
        done = inference_log.compact(log_root, project, schema, retention_days=retention_days)
    done.write(maintenance.path)
    maintenance.metadata.update(
        {"rows_compacted": done.rows_compacted, "parts_quarantined": done.parts_quarantined}
    )
    print(f"{project}: {done.summary}")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def collect(
    project: str,
    source: str,
    log_root: str,
    window_hours: float,
    labels: str,
    drift_sample_rows: int,
    maintenance: Input[Artifact],
    window: Output[Dataset],
    labelled: Output[Dataset],
    stats: Output[Artifact],
):
    """The window, read in bounded memory: the last `window_hours` of the inference log under
    `log_root` (source `log`), or a CSV at a path or URL (its target column, if any, is the
    ground truth); `labels` (request_id, row, target) joins ground truth onto logged rows.
    `window`: the sample of at most `drift_sample_rows` rows the drift check compares (every
    row of a smaller window); `labelled`: every labelled row; `stats`: counts and output figures
    over every row, and what `maintenance` (the compact step) did to the log."""
    from components.core import monitoring
    from components.core.contracts import LogMaintenance
    from components.core.projects import get_spec
    from components.core.scoring import table_path

    spec = get_spec(project)
    found = monitoring.collect(
        spec,
        source,
        log_root,
        window_hours,
        labels,
        sample_rows=drift_sample_rows,
        labelled_path=table_path(labelled, "parquet"),
    )
    assert found.stats is not None
    found.frame.to_parquet(table_path(window, "parquet"), index=False)
    done = LogMaintenance.read(maintenance.path)
    found.stats.model_copy(update={"maintenance": done}).write(stats.path)
    counts = {"rows": found.stats.rows, "rows_sampled": len(found.frame)}
    window.metadata.update(counts | {"window": found.description})
    labelled.metadata.update({"rows": found.stats.labelled_rows, "window": found.description})
    print(
        f"{found.description}: {found.stats.rows:,} rows ({found.stats.rows_estimated:,.0f} "
        f"served), {found.stats.labelled_rows:,} labelled, {len(found.frame):,} sampled for drift"
        + (
            f"; {found.stats.parts_skipped} unreadable part(s) skipped"
            if found.stats.parts_skipped
            else ""
        )
    )
    if found.stats.note:
        print(found.stats.note)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def check(
    project: str,
    window: Input[Dataset],
    labelled: Input[Dataset],
    stats: Input[Artifact],
    mlflow_tracking_uri: str,
    min_rows: int,
    important_columns: int,
    quality_tolerance: float,
    retrain: bool,
    retrain_min_labelled_rows: int,
    summary: Output[Artifact],
    report: Output[HTML],
    figures: Output[Metrics],
) -> bool:
    """Drift of the window's sample against the champion's reference (importance-weighted, with
    a minimum window), the champion's live quality on every labelled row, and whether to retrain
    now (called for, `retrain` on, and enough labelled rows to judge a challenger): the one
    output, because kfp.local resolves a condition on a task's single output but not on a named
    one. `figures` shows the run's figures in the KFP UI; no later step reads it (publish
    pushes the same figures from `summary`)."""

    import mlflow
    import pandas as pd

    from components.core import monitoring
    from components.core.contracts import WindowStats
    from components.core.drift import DriftPolicy
    from components.core.projects import get_spec
    from components.core.registry import tracking_uri
    from components.core.step_io import write_document, write_metrics

    spec = get_spec(project)
    mlflow.set_tracking_uri(tracking_uri(mlflow_tracking_uri))
    policy = monitoring.MonitoringPolicy(
        DriftPolicy(min_rows=min_rows, important_columns=important_columns),
        quality_tolerance,
        retrain=retrain,
        retrain_min_labelled_rows=retrain_min_labelled_rows,
    )
    counted = WindowStats.read(stats.path)
    checked = monitoring.Window(
        pd.read_parquet(window.path), counted.window, counted, labelled.path
    )
    result, html = monitoring.check(spec, checked, policy)
    result.write(summary.path)
    write_document(report, html)
    flags = {
        "rows": result.rows,
        "rows_sampled": result.rows_sampled,
        "drift_share": result.drift.drift_share,
    }
    live = {f"live_{k}": v for k, v in result.live_metrics.items()}
    write_metrics(
        figures,
        flags
        | {"retrain": result.retrain, "weighted_drift_share": result.drift.weighted_drift_share}
        | live,
    )
    print(("RETRAIN: " if result.retrain else "") + result.reason)
    if result.retraining:
        print(result.retraining)
    return result.retrain_now


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def publish(project: str, summary: Input[Artifact], pushgateway: str):
    """Pushes the run's figures to the Prometheus Pushgateway at `pushgateway` ("" skips)."""
    from components.core import monitoring

    if not pushgateway:
        print(f"{project}: no Pushgateway given; figures not published")
        return
    monitoring.publish(monitoring.MonitoringSummary.read(summary.path), pushgateway)
    print(f"{project}: figures pushed to {pushgateway}")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def rollout(
    project: str,
    source: str,
    log_root: str,
    labels: str,
    mlflow_tracking_uri: str,
    approval: str,
    policy: str,
    verdict: Output[Artifact],
):
    """One look of the rollout judge at the version staged beside the champion, on the
    inference log under `log_root` since it entered its stage, with `labels` joined: errors,
    latency (in canary) and quality against the champion's, each a sequential test. It holds,
    advances shadow -> canary, promotes, rolls back or retires the version in the registry and
    records why on it; with `approval` "required" a promotion waits for `make approve`.
    `policy`: JSON of the judge's policy fields to change. Nothing to judge unless `source` is
    the log."""
    import mlflow

    from components.core import judge
    from components.core.contracts import RolloutVerdict
    from components.core.lineage import utc_now
    from components.core.monitoring import LOG_SOURCE
    from components.core.projects import get_spec
    from components.core.registry import tracking_uri

    spec = get_spec(project)
    rules = judge.JudgePolicy.from_json(policy)
    judge.check_approval(approval)
    if source != LOG_SOURCE or not log_root:
        done = RolloutVerdict(
            project=project, registered_name=project, time=utc_now().isoformat(timespec="seconds"),
            version="", stage="",
            action="skipped", moved_to="", reason="not the inference log: nothing to judge",
        )  # fmt: skip
    else:
        mlflow.set_tracking_uri(tracking_uri(mlflow_tracking_uri))
        done = judge.look(spec, log_root, labels, rules, approval)
    done.write(verdict.path)
    verdict.metadata.update({"action": done.action, "version": done.version})
    moved = f" -> {done.moved_to}" if done.moved_to else ""
    staged = f" v{done.version} ({done.stage})" if done.version else ""
    print(f"{project} rollout{staged}: {done.action}{moved}: {done.reason}")
