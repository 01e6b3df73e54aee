"""The monitoring pipeline: one per project, `<project>-monitoring`, compiled and checked like the
training pipelines. Collect a window of what the champion answered, check it against the
champion's reference (drift, and live quality where ground truth has arrived), publish the
figures for Prometheus, and when the policy calls for it (and enough rows are labelled) retrain:
the champion's own data plus the window's labelled rows, through the training pipeline's steps,
promoted only if the challenger beats the champion on the old test split and on new rows.

No `from __future__ import annotations` here: KFP reads the parameter annotations as types.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset

from components.core import retraining
from components.core.drift import IMPORTANT_COLUMNS, MIN_ROWS
from components.core.monitoring import LOG_SOURCE, QUALITY_TOLERANCE
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from components.core.train import TIME_BUDGET_S
from components.steps import check, collect, prepare_retraining, publish
from pipelines.training import DEFAULT_TARGET, add_training, use_mlflow_credentials

STEPS = ("collect", "check", "publish")
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


class MonitoringOutputs(NamedTuple):
    window: Dataset
    summary: Artifact
    report: HTML


def build(spec: ProjectSpec) -> Callable[..., Any]:
    @dsl.pipeline(
        name=f"{spec.name}-monitoring",
        description=f"{spec.title}: collect a window of served inputs, check drift against the "
        "champion's reference and live quality against its registered figures, publish; retrain "
        "and promote only a better model when the policy calls for it.",
    )
    def pipeline(
        source: str = LOG_SOURCE,
        log_root: str = "",
        window_hours: float = 24.0,
        labels: str = "",
        mlflow_tracking_uri: str = "",
        min_rows: int = MIN_ROWS,
        important_columns: int = IMPORTANT_COLUMNS,
        quality_tolerance: float = QUALITY_TOLERANCE,
        pushgateway: str = "",
        retrain: bool = True,
        retrain_min_labelled_rows: int = retraining.MIN_LABELLED_ROWS,
        holdout_share: float = retraining.HOLDOUT_SHARE,
        retrain_source: str = "",
        gate_overrides: str = "{}",
        trials_per_candidate: int = 0,
        time_budget_s: float = TIME_BUDGET_S,
        deploy_mode: str = "manifest",
        deploy_namespace: str = DEFAULT_TARGET.namespace,
        serving_image: str = DEFAULT_TARGET.image,
    ) -> MonitoringOutputs:
        """Args:
        source: `log` for the inference log, else a path or http(s) URL of a CSV of served
            inputs (its target column, if present, is the ground truth).
        log_root: the inference log's root (a folder, or an object-store URL on a cluster).
        window_hours: how far back in the log the window reaches.
        labels: CSV of ground truth (request_id, row, target) joined onto logged rows.
        mlflow_tracking_uri: the registry that holds the champion and its reference.
        min_rows: below this many rows the drift verdict is "not enough data".
        important_columns: drift in one of this many most important columns is drift.
        quality_tolerance: how far the live primary metric may fall below the registered one.
        pushgateway: Prometheus Pushgateway address for the figures ("" skips publishing).
        retrain: retrain when the policy calls for it (False: report the recommendation only).
        retrain_min_labelled_rows: labelled rows in the window a retraining needs.
        holdout_share: share of the labelled rows held out to judge challenger and champion.
        retrain_source: where the champion's training data now is, if it moved ("" = as
            recorded); its hash must match the one recorded.
        gate_overrides, trials_per_candidate, time_budget_s, deploy_mode, deploy_namespace,
            serving_image: as in the training pipeline, for the retraining.
        """
        window = collect(
            project=spec.name,
            source=source,
            log_root=log_root,
            window_hours=window_hours,
            labels=labels,
        ).set_display_name("collect")
        # The window and the champion change between runs: never served from the cache.
        window.set_caching_options(False)
        checked = (
            check(
                project=spec.name,
                window=window.outputs["window"],
                mlflow_tracking_uri=mlflow_tracking_uri,
                min_rows=min_rows,
                important_columns=important_columns,
                quality_tolerance=quality_tolerance,
                retrain=retrain,
                retrain_min_labelled_rows=retrain_min_labelled_rows,
            )
            .set_display_name("check")
            .set_caching_options(False)
        )
        use_mlflow_credentials(checked)
        publish(
            project=spec.name, summary=checked.outputs["summary"], pushgateway=pushgateway
        ).set_display_name("publish").set_caching_options(False)
        with dsl.If(checked.outputs["Output"] == True, name="retrain"):  # noqa: E712
            prepared = (
                prepare_retraining(
                    project=spec.name,
                    window=window.outputs["window"],
                    mlflow_tracking_uri=mlflow_tracking_uri,
                    retrain_source=retrain_source,
                    holdout_share=holdout_share,
                    min_labelled_rows=retrain_min_labelled_rows,
                )
                .set_display_name("prepare-retraining")
                .set_caching_options(False)
            )
            use_mlflow_credentials(prepared)
            add_training(
                spec,
                train=prepared.outputs["train"],
                test=prepared.outputs["test"],
                current=prepared.outputs["holdout"],
                source_info=prepared.outputs["source_info"],
                seed=prepared.outputs["seed"],
                test_size=prepared.outputs["test_size"],
                gate_overrides=gate_overrides,
                trials_per_candidate=trials_per_candidate,
                time_budget_s=time_budget_s,
                mlflow_tracking_uri=mlflow_tracking_uri,
                deploy_mode=deploy_mode,
                deploy_namespace=deploy_namespace,
                serving_image=serving_image,
                holdout=prepared.outputs["holdout"],
                monitoring=checked.outputs["summary"],
            )
        return MonitoringOutputs(
            window=window.outputs["window"],
            summary=checked.outputs["summary"],
            report=checked.outputs["report"],
        )

    return pipeline


PIPELINES = {name: build(spec) for name, spec in PROJECTS.items()}
