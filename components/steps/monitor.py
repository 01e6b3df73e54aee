"""The monitoring pipeline's steps: collect a window, check it against the champion, publish."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def collect(
    project: str,
    source: str,
    log_root: str,
    window_hours: float,
    labels: str,
    window: Output[Dataset],
):
    """The rows to check: the last `window_hours` of the inference log under `log_root` (source
    `log`), or a CSV at a path or URL (its target column, if any, is the ground truth); `labels`
    (request_id, row, target) joins ground truth onto logged rows."""
    from components.core import monitoring
    from components.core.projects import get_spec

    spec = get_spec(project)
    found = monitoring.collect(spec, source, log_root, window_hours, labels)
    found.frame.to_csv(window.path, index=False)
    labelled = int(found.frame[spec.target].notna().sum()) if spec.target in found.frame else 0
    window.metadata.update(
        {"rows": len(found.frame), "labelled_rows": labelled, "window": found.description}
    )
    print(f"{found.description}: {len(found.frame)} rows, {labelled} labelled")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def check(
    project: str,
    window: Input[Dataset],
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
    """Drift of the window against the champion's reference (importance-weighted, with a minimum
    window), the champion's live quality on labelled rows, and whether to retrain now (called
    for, `retrain` on, and enough labelled rows to judge a challenger): the one output, because
    kfp.local resolves a condition on a task's single output but not on a named one. `figures`
    shows the run's figures in the KFP UI; no later step reads it (publish pushes the same
    figures from `summary`)."""

    import mlflow
    import pandas as pd

    from components.core import monitoring
    from components.core.drift import DriftPolicy
    from components.core.projects import get_spec
    from components.core.registry import tracking_uri
    from components.core.step_io import write_document, write_metrics

    spec = get_spec(project)
    mlflow.set_tracking_uri(tracking_uri(mlflow_tracking_uri))
    frame = pd.read_csv(window.path)
    policy = monitoring.MonitoringPolicy(
        DriftPolicy(min_rows=min_rows, important_columns=important_columns),
        quality_tolerance,
        retrain=retrain,
        retrain_min_labelled_rows=retrain_min_labelled_rows,
    )
    checked = monitoring.Window(frame, str(window.metadata.get("window", window.uri)))
    result, html = monitoring.check(spec, checked, policy)
    result.write(summary.path)
    write_document(report, html)
    flags = {"rows": result.rows, "drift_share": result.drift_share, "retrain": result.retrain}
    live = {f"live_{k}": v for k, v in result.live_metrics.items()}
    write_metrics(figures, flags | {"weighted_drift_share": result.weighted_drift_share} | live)
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
