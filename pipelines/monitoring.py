"""The monitoring pipeline: one per project, `<project>-monitoring`, compiled and checked like the
training pipelines. Collect a window of what the champion answered, check it against the
champion's reference (drift, and live quality where ground truth has arrived), publish the
figures for Prometheus, look at the version being rolled out beside the champion (the rollout
judge), and when the policy calls for it (and enough rows are labelled) retrain:
the champion's own data plus the window's labelled rows, through the training pipeline's steps,
promoted only if the challenger beats the champion on the old test split and on new rows.

No `from __future__ import annotations` here: KFP reads the parameter annotations as types.
"""

from collections.abc import Callable
from typing import Any

from kfp import dsl

from components.core import retraining
from components.core.contracts import PROMOTIONS
from components.core.deploy import MLFLOW_SECRET
from components.core.drift import IMPORTANT_COLUMNS, MIN_ROWS
from components.core.inference_log import RETENTION_DAYS
from components.core.judge import APPROVALS
from components.core.monitoring import LOG_SOURCE, QUALITY_TOLERANCE
from components.core.spec import ProjectSpec
from components.core.train import TIME_BUDGET_S
from components.core.window import SAMPLE_ROWS
from components.steps import check, collect, compact_log, prepare_retraining, publish, rollout
from pipelines.bindings import use_mlflow_credentials
from pipelines.kinds import MONITORING, PipelinesByProject
from pipelines.notice import notified, returning
from pipelines.resources import sized
from pipelines.training import (
    DEFAULT_TARGET,
    TrainingInputs,
    add_training,
    described,
    shared_parameter_docs,
)

STEPS = ("compact-log", "collect", "check", "publish", "rollout")
RETRAINING_STEPS = (
    "prepare-retraining",
    "validate",
    "features",
    "train",
    "evaluate",
    "explain",
    "drift",
    "register",
    "deploy",
)
"""The steps a run adds when it retrains."""


def _monitoring_parameter_docs(spec: ProjectSpec) -> dict[str, str]:
    training = shared_parameter_docs(spec)
    for name in ("gate_overrides", "trials_per_candidate", "time_budget_s", "explained_rows",
                 "promotion"):  # fmt: skip
        training[name] = f"when retraining: {training[name]}"
    return {
        "mlflow_tracking_uri": "MLflow tracking server holding the champion and its reference, as "
        "the pipeline's pods reach it, e.g. http://mlflow.mlflow.svc:5000 (credentials, if it "
        f"needs any, come from the optional Secret {MLFLOW_SECRET}). Required: the check has "
        "nothing to compare with without it.",
        "source": f"`{LOG_SOURCE}` for the inference log under log_root, else a path or http(s):// "
        "URL of a CSV of served inputs (its target column, if present, is the ground truth).",
        "log_root": f"the inference log's root as the pods see it (a folder, or an object-store "
        f'URL such as s3://bucket/inference); required when source is `{LOG_SOURCE}`, "" '
        "otherwise.",
        "window_hours": "how many hours back from now the window reaches in the inference log.",
        "retention_days": "the inference log keeps this many days: older hours are deleted "
        "before the window is read (0 keeps everything); a window reaching further back starts "
        "where the log does, and the summary says so.",
        "drift_sample_rows": "the drift check compares a random sample of at most this many of "
        "the window's rows with the reference (a smaller window whole); counts, output figures "
        "and live quality cover every row.",
        "labels": "CSV of ground truth (request_id, row and the target) joined onto the logged "
        'rows; "" for none (without ground truth only drift is checked).',
        "min_rows": 'below this many rows in the window the drift verdict is "not enough data".',
        "important_columns": "drift in one of this many columns most important to the champion "
        "counts as drift.",
        "quality_tolerance": f"how much worse the champion's live {spec.primary_metric} on "
        "the labelled rows may be than its registered test figure before retraining is called "
        "for.",
        "pushgateway": "Prometheus Pushgateway (host:port) the publish step pushes the figures "
        'to; "" skips publishing.',
        "rollout_approval": f"the rollout judge's promotions: {' or '.join(APPROVALS)} (a "
        "promotion waits for `make approve`); the judge looks at the version staged beside the "
        "champion, if any, on the inference log since it entered its stage.",
        "rollout_policy": "JSON of the rollout judge's policy fields to change (JudgePolicy: "
        'e.g. {"canary_share": 0.2, "max_canary_requests": 5000}); "{}" for its defaults.',
        "retrain": "retrain when the policy calls for it; false only reports the recommendation.",
        "retrain_min_labelled_rows": "labelled rows the window needs before a retraining runs.",
        "holdout_share": "share of the window's labelled rows held out to judge challenger "
        "against champion; the rest joins the training data.",
        "retrain_source": "where the champion's training data is now, if it moved since it was "
        'registered ("" = where its run recorded it); its hash must match the recorded one.',
        **training,
    }


def build(spec: ProjectSpec) -> Callable[..., Any]:
    outputs: dict[str, Any] = {}

    @dsl.pipeline(
        name=f"{spec.name}-{MONITORING}",
        description=f"{spec.title}: collect a window of served inputs, check drift against the "
        "champion's reference and live quality against its registered figures, publish; retrain "
        "and promote only a better model when the policy calls for it.",
    )
    @described(f"{spec.title}: the monitoring pipeline.", _monitoring_parameter_docs(spec))
    def pipeline(
        mlflow_tracking_uri: str,
        source: str = LOG_SOURCE,
        log_root: str = "",
        window_hours: float = 24.0,
        retention_days: float = RETENTION_DAYS,
        labels: str = "",
        drift_sample_rows: int = SAMPLE_ROWS,
        min_rows: int = MIN_ROWS,
        important_columns: int = IMPORTANT_COLUMNS,
        quality_tolerance: float = QUALITY_TOLERANCE,
        pushgateway: str = "",
        rollout_approval: str = APPROVALS[0],
        rollout_policy: str = "{}",
        retrain: bool = True,
        retrain_min_labelled_rows: int = retraining.MIN_LABELLED_ROWS,
        holdout_share: float = retraining.HOLDOUT_SHARE,
        retrain_source: str = "",
        gate_overrides: str = "{}",
        trials_per_candidate: int = spec.search_trials,
        time_budget_s: float = TIME_BUDGET_S,
        explained_rows: int = spec.explained_rows,
        promotion: str = PROMOTIONS[0],
        deploy_mode: str = "manifest",
        deploy_namespace: str = DEFAULT_TARGET.namespace,
        serving_image: str = DEFAULT_TARGET.image,
    ) -> None:
        with notified(spec, MONITORING, mlflow_tracking_uri):
            # The log, the window and the champion change between runs: never served from the cache.
            compacted = sized(
                compact_log(
                    project=spec.name,
                    source=source,
                    log_root=log_root,
                    retention_days=retention_days,
                ),
                "compact-log",
            ).set_caching_options(False)
            window = sized(
                collect(
                    project=spec.name,
                    source=source,
                    log_root=log_root,
                    window_hours=window_hours,
                    labels=labels,
                    drift_sample_rows=drift_sample_rows,
                    maintenance=compacted.outputs["maintenance"],
                ),
                "collect",
            ).set_caching_options(False)
            checked = sized(
                check(
                    project=spec.name,
                    window=window.outputs["window"],
                    labelled=window.outputs["labelled"],
                    stats=window.outputs["stats"],
                    mlflow_tracking_uri=mlflow_tracking_uri,
                    min_rows=min_rows,
                    important_columns=important_columns,
                    quality_tolerance=quality_tolerance,
                    retrain=retrain,
                    retrain_min_labelled_rows=retrain_min_labelled_rows,
                ),
                "check",
            ).set_caching_options(False)
            use_mlflow_credentials(checked)
            sized(
                publish(
                    project=spec.name, summary=checked.outputs["summary"], pushgateway=pushgateway
                ),
                "publish",
            ).set_caching_options(False)
            # The staged version's own window (since its stage began), beside the check's.
            judged = sized(
                rollout(
                    project=spec.name,
                    source=source,
                    log_root=log_root,
                    labels=labels,
                    mlflow_tracking_uri=mlflow_tracking_uri,
                    approval=rollout_approval,
                    policy=rollout_policy,
                ),
                "rollout",
            ).set_caching_options(False)
            judged.after(compacted)
            use_mlflow_credentials(judged)
            with dsl.If(checked.outputs["Output"] == True, name="retrain"):  # noqa: E712
                prepared = sized(
                    prepare_retraining(
                        project=spec.name,
                        labelled=window.outputs["labelled"],
                        mlflow_tracking_uri=mlflow_tracking_uri,
                        retrain_source=retrain_source,
                        holdout_share=holdout_share,
                        min_labelled_rows=retrain_min_labelled_rows,
                    ),
                    "prepare-retraining",
                ).set_caching_options(False)
                use_mlflow_credentials(prepared)
                add_training(
                    spec,
                    TrainingInputs(
                        train=prepared.outputs["train"],
                        test=prepared.outputs["test"],
                        current=prepared.outputs["holdout"],
                        source_info=prepared.outputs["source_info"],
                        seed=prepared.outputs["seed"],
                        test_size=prepared.outputs["test_size"],
                        gate_overrides=gate_overrides,
                        trials_per_candidate=trials_per_candidate,
                        time_budget_s=time_budget_s,
                        explained_rows=explained_rows,
                        mlflow_tracking_uri=mlflow_tracking_uri,
                        deploy_mode=deploy_mode,
                        deploy_namespace=deploy_namespace,
                        serving_image=serving_image,
                        promotion=promotion,
                        holdout=prepared.outputs["holdout"],
                        monitoring=checked.outputs["summary"],
                    ),
                )
        outputs.update(
            window=window.outputs["window"],
            labelled=window.outputs["labelled"],
            summary=checked.outputs["summary"],
            report=checked.outputs["report"],
            rollout=judged.outputs["verdict"],
        )

    return returning(pipeline, outputs)


PIPELINES = PipelinesByProject(build)
