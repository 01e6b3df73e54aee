from kfp import dsl

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def notify(
    project: str,
    pipeline_name: str,
    status: dsl.PipelineTaskFinalStatus,
    run_id: str,
    run_name: str,
    pipeline_root: str,
    mlflow_tracking_uri: str,
    with_registry: bool,
):
    """The exit task: posts the run's outcome as JSON to the webhook in NOTIFY_URL (a Secret on a
    cluster, never a parameter: a Slack URL carries a token), or logs that none is configured.
    It cannot read the body's outputs (KFP), so the failed step comes from the record it left
    in the run's folder (on this machine) and, `with_registry`, the registry decision from
    MLflow by `run_id`. A notice that cannot be delivered fails this task."""
    import os
    from pathlib import Path

    from components.core import notice

    url = os.environ.get(notice.URL_ENV, "")
    if not url:
        print(notice.NOT_CONFIGURED)
        return
    outcome = notice.Outcome(
        pipeline=pipeline_name,
        project=project,
        run_id=run_id,
        run_name=run_name,
        state=status.state,
        message=status.error_message or "",
    )
    print(
        notice.send(
            url,
            outcome,
            run_folder=Path(pipeline_root) / run_name,
            tracking_uri=mlflow_tracking_uri if with_registry else None,
        )
    )
