"""The batch scoring pipeline: one per project, `<project>-batch-scoring`, compiled and checked
like the training and monitoring pipelines. Pin the model version, validate the file row by row,
check drift against the version's reference, split the valid rows into shards scored in
parallel, merge them in input order.

No `from __future__ import annotations` here: KFP reads the parameter annotations as types.
"""

from collections.abc import Callable
from typing import Any

from kfp import dsl

from components.core.contracts import CHAMPION
from components.core.deploy import MLFLOW_SECRET
from components.core.drift import MIN_ROWS
from components.core.outputs import REASONS
from components.core.scoring import (
    DRIFT_GATES,
    FORMATS,
    MAX_REJECTED_SHARE,
    ROW_NUMBER_MEANS,
    SHARD_ROWS,
)
from components.core.spec import ProjectSpec
from components.steps import drift_check, merge, resolve, score, split, validate_rows
from pipelines.bindings import use_mlflow_credentials
from pipelines.kinds import BATCH_SCORING, PipelinesByProject
from pipelines.notice import notified, returning
from pipelines.resources import sized
from pipelines.training import described

KIND = BATCH_SCORING
STEPS = ("resolve", "validate-rows", "drift-check", "split", "score", "merge")
"""The display name of every task, in the order a run reaches them (`score` once per shard)."""


def _batch_parameter_docs(spec: ProjectSpec) -> dict[str, str]:
    reasons = "on" if spec.task.with_reasons else "off"
    return {
        "mlflow_tracking_uri": "MLflow tracking server holding the model and its reference, as "
        "the pipeline's pods reach it, e.g. http://mlflow.mlflow.svc:5000 (credentials, if it "
        f"needs any, come from the optional Secret {MLFLOW_SECRET}). Required.",
        "source": "the rows to score: a path or http(s):// URL of a .csv or .parquet file the "
        "validate-rows step's pod can read (the format follows the extension). Columns the model "
        "does not read are ignored; a missing input column stops the run.",
        "model_version": f'the registered version to score with, e.g. "3"; "" for the '
        f"project's {CHAMPION}. Resolved once: every shard loads that version.",
        "output_format": f"format of the predictions and the rejected rows: one of "
        f"{', '.join(FORMATS)}.",
        "max_rejected_share": "largest share of rows that may fail validation (0 to 1); above "
        "it the run stops, naming the share. Rejected rows are written with their row number "
        f"({ROW_NUMBER_MEANS}), identifiers, field, rule, value and reason.",
        "shard_rows": "valid rows per shard; each shard is scored by its own task (a pod on a "
        "cluster).",
        "with_reasons": f"add each row's top {REASONS} reasons (largest contributions to the "
        f"output, in words); this project's default is {reasons}.",
        "drift_gate": f"one of {', '.join(DRIFT_GATES)}: `warn` scores a drifted batch and "
        "says so in the summary, `stop` stops the run naming the drifted columns, `off` does "
        "not check.",
        "drift_min_rows": 'below this many valid rows the drift verdict is "not enough data" '
        "(and the gate lets the batch through).",
        "allow_unverified_model": "score with a version that has no registered model file "
        "digest (model_file_sha256 tag): its file's digest is then pinned at resolve time, so "
        "every shard loads the same file. False refuses such a version.",
    }


def build(spec: ProjectSpec) -> Callable[..., Any]:
    outputs: dict[str, Any] = {}

    @dsl.pipeline(
        name=f"{spec.name}-{KIND}",
        description=f"{spec.title}: pin the model version, validate the rows (rejected rows "
        "kept with their reasons), check drift against the version's reference, score the "
        "valid rows in parallel shards, merge them in input order.",
    )
    @described(f"{spec.title}: the batch scoring pipeline.", _batch_parameter_docs(spec))
    def pipeline(
        mlflow_tracking_uri: str,
        source: str,
        model_version: str = "",
        output_format: str = "csv",
        max_rejected_share: float = MAX_REJECTED_SHARE,
        shard_rows: int = SHARD_ROWS,
        with_reasons: bool = spec.task.with_reasons,
        drift_gate: str = "warn",
        drift_min_rows: int = MIN_ROWS,
        allow_unverified_model: bool = False,
    ) -> None:
        # Batch scoring registers nothing: its notice carries no registry decision.
        with notified(spec, KIND, "", with_registry=False):
            name = spec.name
            run_name = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
            # The registry and the source change between runs: these are never served from the cache.
            pinned = sized(
                resolve(
                    project=name,
                    mlflow_tracking_uri=mlflow_tracking_uri,
                    model_version=model_version,
                    allow_unverified_model=allow_unverified_model,
                ),
                "resolve",
            )
            checked = sized(
                validate_rows(
                    project=name,
                    source=source,
                    max_rejected_share=max_rejected_share,
                    output_format=output_format,
                ),
                "validate-rows",
            )
            drifted = sized(
                drift_check(
                    project=name,
                    pinned=pinned.outputs["pinned"],
                    valid=checked.outputs["valid"],
                    screening=checked.outputs["screening"],
                    mlflow_tracking_uri=mlflow_tracking_uri,
                    gate=drift_gate,
                    min_rows=drift_min_rows,
                    run_name=run_name,
                ),
                "drift-check",
            )
            for task in (pinned, checked, drifted):
                task.set_caching_options(False)
            sharded = sized(
                split(valid=checked.outputs["valid"], shard_rows=shard_rows).after(drifted), "split"
            )
            with dsl.ParallelFor(sharded.outputs["Output"], name="shards") as index:
                scored = sized(
                    score(
                        project=name,
                        pinned=pinned.outputs["pinned"],
                        valid=checked.outputs["valid"],
                        shard_rows=shard_rows,
                        index=index,
                        with_reasons=with_reasons,
                        mlflow_tracking_uri=mlflow_tracking_uri,
                    ),
                    "score",
                )
            merged = sized(
                merge(
                    project=name,
                    parts=dsl.Collected(scored.outputs["scored"]),
                    pinned=pinned.outputs["pinned"],
                    screening=checked.outputs["screening"],
                    drift_summary=drifted.outputs["summary"],
                    mlflow_tracking_uri=mlflow_tracking_uri,
                    output_format=output_format,
                    with_reasons=with_reasons,
                    gate=drift_gate,
                    run_name=run_name,
                ),
                "merge",
            )
            for task in (pinned, drifted, scored, merged):
                use_mlflow_credentials(task)
        outputs.update(
            predictions=merged.outputs["predictions"],
            rejected=checked.outputs["rejected"],
            summary=merged.outputs["summary"],
            report=merged.outputs["report"],
            drift_report=drifted.outputs["report"],
        )

    return returning(pipeline, outputs)


PIPELINES = PipelinesByProject(build)
