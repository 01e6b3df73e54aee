"""The monitoring pipeline: one per project, `<project>-monitoring`, compiled and checked like the
training pipelines. Collect a window of what the champion answered, check it against the
champion's reference (drift, and live quality where ground truth has arrived), publish the
figures for Prometheus.

No `from __future__ import annotations` here: KFP reads the parameter annotations as types.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import HTML, Artifact, Dataset

from components.core.deploy import MLFLOW_SECRET, MLFLOW_SECRET_KEYS
from components.core.drift import IMPORTANT_COLUMNS, MIN_ROWS
from components.core.monitoring import LOG_SOURCE, QUALITY_TOLERANCE
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from components.steps import check, collect, publish

STEPS = ("collect", "check", "publish")


class MonitoringOutputs(NamedTuple):
    window: Dataset
    summary: Artifact
    report: HTML


def build(spec: ProjectSpec) -> Callable[..., Any]:
    @dsl.pipeline(
        name=f"{spec.name}-monitoring",
        description=f"{spec.title}: collect a window of served inputs, check drift against the "
        "champion's reference and live quality against its registered figures, publish.",
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
            )
            .set_display_name("check")
            .set_caching_options(False)
        )
        kubernetes.use_secret_as_env(
            checked,
            secret_name=MLFLOW_SECRET,
            secret_key_to_env={key: key for key in MLFLOW_SECRET_KEYS},
            optional=True,
        )
        publish(
            project=spec.name, summary=checked.outputs["summary"], pushgateway=pushgateway
        ).set_display_name("publish").set_caching_options(False)
        return MonitoringOutputs(
            window=window.outputs["window"],
            summary=checked.outputs["summary"],
            report=checked.outputs["report"],
        )

    return pipeline


PIPELINES = {name: build(spec) for name, spec in PROJECTS.items()}
