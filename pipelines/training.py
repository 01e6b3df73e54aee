"""The training pipeline: the same graph for every project, parameterised by its spec.

No `from __future__ import annotations` here: KFP reads the parameter annotations as types.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import HTML, Artifact, Markdown, PipelineTask

from components.core.deploy import MLFLOW_SECRET, MLFLOW_SECRET_KEYS, Target
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from components.core.train import TIME_BUDGET_S
from components.steps import (
    deploy,
    drift,
    evaluate,
    explain,
    features,
    ingest,
    register,
    validate,
)
from components.steps import train as train_step

DEFAULT_TARGET = Target()

STEPS = (
    "ingest",
    "validate",
    "features",
    "train",
    "evaluate",
    "explain",
    "drift",
    "register",
    "deploy",
)
"""The display name of every task, in the order a run reaches them."""


class TrainingOutputs(NamedTuple):
    """What a run hands back: the reports a user opens and the registration it made."""

    model_card: Markdown
    registration: Artifact
    inference_service: Artifact
    source_info: Artifact
    evaluation: Artifact
    drift_summary: Artifact
    evaluation_report: HTML
    explanation_report: HTML
    drift_report: HTML


class TrainingTasks(NamedTuple):
    fitted: PipelineTask
    scored: PipelineTask
    explained: PipelineTask
    drifted: PipelineTask
    registered: PipelineTask
    deployed: PipelineTask


def add_training(
    spec: ProjectSpec,
    *,
    train: Any,
    test: Any,
    current: Any,
    source_info: Any,
    seed: Any,
    test_size: Any,
    gate_overrides: Any,
    trials_per_candidate: Any,
    time_budget_s: Any,
    mlflow_tracking_uri: Any,
    deploy_mode: Any,
    deploy_namespace: Any,
    serving_image: Any,
    holdout: Any = None,
    monitoring: Any = None,
) -> TrainingTasks:
    """The steps from validate to deploy, on splits made by ingest (training pipeline) or by
    prepare-retraining (monitoring pipeline, which also hands register the new labelled holdout
    and the monitoring summary that called for the retraining)."""
    name = spec.name
    checked = validate(project=name, train=train, test=test, current=current).set_display_name(
        "validate"
    )
    features(project=name, train=train, test=test).after(checked).set_display_name("features")
    fitted = (
        train_step(
            project=name,
            train=train,
            seed=seed,
            trials_per_candidate=trials_per_candidate,
            time_budget_s=time_budget_s,
        )
        .after(checked)
        .set_display_name("train")
    )
    model = fitted.outputs["model"]
    scored = evaluate(
        project=name,
        model=model,
        test=test,
        source_info=source_info,
        gate_overrides=gate_overrides,
    ).set_display_name("evaluate")
    explained = explain(
        project=name, model=model, train=train, test=test, source_info=source_info
    ).set_display_name("explain")
    # The new training data against what the champion learnt from.
    drifted = (
        drift(project=name, current=train, mlflow_tracking_uri=mlflow_tracking_uri)
        .after(checked)
        .set_display_name("drift")
        # The champion it compares with changes between runs: never served from the cache.
        .set_caching_options(False)
    )
    retraining = {} if holdout is None else {"holdout": holdout, "monitoring": monitoring}
    registered = register(
        project=name,
        model=model,
        train=train,
        test=test,
        source_info=source_info,
        selection=fitted.outputs["selection"],
        trials=fitted.outputs["trials"],
        evaluation=scored.outputs["evaluation"],
        explanation=explained.outputs["explanation"],
        drift_summary=drifted.outputs["summary"],
        evaluation_report=scored.outputs["report"],
        explanation_report=explained.outputs["report"],
        drift_report=drifted.outputs["report"],
        run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        seed=seed,
        test_size=test_size,
        mlflow_tracking_uri=mlflow_tracking_uri,
        **retraining,
    ).set_display_name("register")
    # Drift and register talk to MLflow and its artifact store: on a cluster, with these
    # credentials.
    for task in (drifted, registered):
        use_mlflow_credentials(task)
    deployed = deploy(
        project=name,
        registration=registered.outputs["registration"],
        mode=deploy_mode,
        namespace=deploy_namespace,
        serving_image=serving_image,
    ).set_display_name("deploy")
    return TrainingTasks(fitted, scored, explained, drifted, registered, deployed)


def use_mlflow_credentials(task: PipelineTask) -> None:
    """On a cluster, the MLflow credentials Secret as environment variables (optional: a store
    without credentials needs none)."""
    kubernetes.use_secret_as_env(
        task,
        secret_name=MLFLOW_SECRET,
        secret_key_to_env={key: key for key in MLFLOW_SECRET_KEYS},
        optional=True,
    )


def build(spec: ProjectSpec) -> Callable[..., Any]:
    @dsl.pipeline(
        name=f"{spec.name}-training",
        description=f"{spec.title}: ingest, validate, features, train, evaluate (gate), explain, drift against the champion, register, deploy.",
    )
    def pipeline(
        source: str = "synthetic",
        seed: int = 42,
        test_size: float = 0.2,
        gate_overrides: str = "{}",
        trials_per_candidate: int = 0,
        time_budget_s: float = TIME_BUDGET_S,
        mlflow_tracking_uri: str = "",
        deploy_mode: str = "manifest",
        deploy_namespace: str = DEFAULT_TARGET.namespace,
        serving_image: str = DEFAULT_TARGET.image,
    ) -> TrainingOutputs:
        data = ingest(
            project=spec.name, source=source, seed=seed, test_size=test_size
        ).set_display_name("ingest")
        tasks = add_training(
            spec,
            train=data.outputs["train"],
            test=data.outputs["test"],
            current=data.outputs["current"],
            source_info=data.outputs["source_info"],
            seed=seed,
            test_size=test_size,
            gate_overrides=gate_overrides,
            trials_per_candidate=trials_per_candidate,
            time_budget_s=time_budget_s,
            mlflow_tracking_uri=mlflow_tracking_uri,
            deploy_mode=deploy_mode,
            deploy_namespace=deploy_namespace,
            serving_image=serving_image,
        )
        return TrainingOutputs(
            model_card=tasks.registered.outputs["model_card"],
            registration=tasks.registered.outputs["registration"],
            inference_service=tasks.deployed.outputs["manifest"],
            source_info=data.outputs["source_info"],
            evaluation=tasks.scored.outputs["evaluation"],
            drift_summary=tasks.drifted.outputs["summary"],
            evaluation_report=tasks.scored.outputs["report"],
            explanation_report=tasks.explained.outputs["report"],
            drift_report=tasks.drifted.outputs["report"],
        )

    return pipeline


PIPELINES = {name: build(spec) for name, spec in PROJECTS.items()}
