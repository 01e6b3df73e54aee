"""The training pipeline: the same graph for every project, parameterised by its spec.

No `from __future__ import annotations` here: KFP reads the parameter annotations as types.
"""

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl import PipelineTask

from components.core.contracts import PROMOTIONS
from components.core.deploy import MLFLOW_SECRET, MODES, Target
from components.core.ingest import SYNTHETIC_PREFIX
from components.core.spec import ProjectSpec
from components.core.train import TIME_BUDGET_S
from components.steps import (
    deploy,
    drift,
    evaluate,
    explain,
    features,
    ingest,
    market,
    register,
    validate,
)
from components.steps import train as train_step
from pipelines.bindings import use_mlflow_credentials
from pipelines.kinds import TRAINING, PipelinesByProject
from pipelines.notice import notified, returning
from pipelines.resources import sized

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
MARKET_STEP = "market"
"""The market analysis, in the training pipelines of projects whose spec asks for it."""


def steps_of(spec: ProjectSpec) -> tuple[str, ...]:
    """The tasks of the project's training pipeline."""
    return (*STEPS, MARKET_STEP) if spec.market_analysis else STEPS


class TrainingTasks(NamedTuple):
    fitted: PipelineTask
    scored: PipelineTask
    explained: PipelineTask
    drifted: PipelineTask
    registered: PipelineTask
    deployed: PipelineTask


@dataclass(frozen=True)
class TrainingInputs:
    """What the steps from validate to deploy read: the splits and their record (from ingest, or
    from prepare-retraining), and the pipeline parameters the steps take. Both pipelines build
    one; fields are KFP channels or constants."""

    train: Any
    test: Any
    current: Any
    source_info: Any
    seed: Any
    test_size: Any
    gate_overrides: Any
    trials_per_candidate: Any
    time_budget_s: Any
    explained_rows: Any
    mlflow_tracking_uri: Any
    deploy_mode: Any
    deploy_namespace: Any
    serving_image: Any
    promotion: Any = PROMOTIONS[0]
    holdout: Any = None
    """The new labelled rows a retraining is also judged on (monitoring pipeline)."""
    monitoring: Any = None
    """The monitoring summary that called for the retraining (monitoring pipeline)."""
    source: Any = None
    """The data ingest read, for the market analysis of a project that asks for it."""


def add_training(spec: ProjectSpec, inputs: TrainingInputs) -> TrainingTasks:
    """The steps from validate to deploy, on splits made by ingest (training pipeline) or by
    prepare-retraining (monitoring pipeline, which also hands register the new labelled holdout
    and the monitoring summary that called for the retraining). Given the `source` ingest read,
    a project whose spec asks for it also gets the market analysis, which register logs with
    the other reports."""
    name = spec.name
    checked = sized(
        validate(project=name, train=inputs.train, test=inputs.test, current=inputs.current),
        "validate",
    )
    reports = {}
    if spec.market_analysis and inputs.source is not None:
        analysed = sized(
            market(
                project=name,
                source=inputs.source,
                seed=inputs.seed,
                source_info=inputs.source_info,
                run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            ).after(checked),
            MARKET_STEP,
        )
        reports["market_report"] = analysed.outputs["report"]
    sized(features(project=name, train=inputs.train, test=inputs.test).after(checked), "features")
    fitted = sized(
        train_step(
            project=name,
            train=inputs.train,
            seed=inputs.seed,
            trials_per_candidate=inputs.trials_per_candidate,
            time_budget_s=inputs.time_budget_s,
        ).after(checked),
        "train",
    )
    model = fitted.outputs["model"]
    run_name = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
    scored = sized(
        evaluate(
            project=name,
            model=model,
            test=inputs.test,
            source_info=inputs.source_info,
            gate_overrides=inputs.gate_overrides,
            run_name=run_name,
        ),
        "evaluate",
    )
    explained = sized(
        explain(
            project=name,
            model=model,
            train=inputs.train,
            test=inputs.test,
            source_info=inputs.source_info,
            run_name=run_name,
            rows=inputs.explained_rows,
        ),
        "explain",
    )
    # The new training data against what the champion learnt from.
    drifted = sized(
        drift(
            project=name,
            current=inputs.train,
            source_info=inputs.source_info,
            run_name=run_name,
            mlflow_tracking_uri=inputs.mlflow_tracking_uri,
        ).after(checked),
        "drift",
    )
    # The champion it compares with changes between runs: never served from the cache.
    drifted.set_caching_options(False)
    retraining = (
        {}
        if inputs.holdout is None
        else {"holdout": inputs.holdout, "monitoring": inputs.monitoring}
    )
    registered = sized(
        register(
            project=name,
            model=model,
            train=inputs.train,
            test=inputs.test,
            source_info=inputs.source_info,
            selection=fitted.outputs["selection"],
            trials=fitted.outputs["trials"],
            evaluation=scored.outputs["evaluation"],
            explanation=explained.outputs["explanation"],
            drift_summary=drifted.outputs["summary"],
            evaluation_report=scored.outputs["report"],
            explanation_report=explained.outputs["report"],
            drift_report=drifted.outputs["report"],
            run_name=run_name,
            # Unique per run, where the name need not be: the run's notice finds the version by it.
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            seed=inputs.seed,
            test_size=inputs.test_size,
            mlflow_tracking_uri=inputs.mlflow_tracking_uri,
            promotion=inputs.promotion,
            **retraining,
            **reports,
        ),
        "register",
    )
    # Drift and register talk to MLflow and its artifact store: on a cluster, with these
    # credentials.
    for task in (drifted, registered):
        use_mlflow_credentials(task)
    # In mode `apply` the step needs the account `mlops-deployer` (manifests/deployer), the only
    # one the serving namespace lets change InferenceServices. KFP 2.17 sets no service account
    # per task (kfp-kubernetes has no such binding), so a run with deploy_mode=apply runs as that
    # account as a whole (docs/operations.md, "Security on the cluster"); every other run keeps
    # the shared account, which cannot deploy.
    deployed = sized(
        deploy(
            project=name,
            registration=registered.outputs["registration"],
            mode=inputs.deploy_mode,
            namespace=inputs.deploy_namespace,
            serving_image=inputs.serving_image,
        ),
        "deploy",
    )
    return TrainingTasks(fitted, scored, explained, drifted, registered, deployed)


def shared_parameter_docs(spec: ProjectSpec) -> dict[str, str]:
    """What the training and the monitoring pipeline's common parameters mean, for the KFP UI."""
    gates = ", ".join(f"{g.metric} {g.measure.comparison} {g.threshold:g}" for g in spec.gates)
    first = spec.gates[0]
    stricter = first.threshold + (0.05 if first.measure.higher_is_better else -0.05)
    return {
        "gate_overrides": "JSON object of gate thresholds to change, e.g. "
        f'{{"{first.metric}": {stricter:g}}}; "{{}}" keeps the project\'s gates: {gates}. A '
        "model under a gate stops the run in evaluate and nothing is registered.",
        "trials_per_candidate": "hyperparameter trials per candidate model in the cross-validated "
        f"search; {spec.search_trials} is this project's default (0 also means that default).",
        "explained_rows": "test rows the explain step explains with the server's explainer "
        f"(this project's default {spec.explained_rows}; SHAP costs about 40 to 300 ms per row "
        "here): more rows draw a denser beeswarm and take longer.",
        "time_budget_s": "cap on the search in seconds: once reached, the remaining trials are "
        "skipped (the train step says so) and the best one so far is fitted; the first trial "
        "always runs.",
        "deploy_mode": f"one of {', '.join(MODES)}: `manifest` writes the champion's KServe InferenceService as an artifact; "
        "`apply` also creates or patches it through the Kubernetes API.",
        "promotion": f"one of {', '.join(PROMOTIONS)}: how a model that beats the champion "
        "takes over. `direct` makes it the champion (servers follow within their refresh "
        "interval); `staged` puts it in shadow beside the champion, for the monitoring runs' "
        "rollout judge to take through canary to champion or back. A first champion is direct.",
        "deploy_namespace": "namespace of the InferenceService the deploy step writes (or applies).",
        "serving_image": "image of the model server in the InferenceService: the project image "
        "(`make image`), which carries this package.",
    }


def _training_parameter_docs(spec: ProjectSpec) -> dict[str, str]:
    return {
        "mlflow_tracking_uri": "MLflow tracking server the drift and register steps use, as the "
        "pipeline's pods reach it, e.g. http://mlflow.mlflow.svc:5000 (credentials, if it needs "
        f"any, come from the optional Secret {MLFLOW_SECRET}). Required: without it the run "
        "cannot find the champion or register the model.",
        "source": "the data: a path or http(s):// URL of a CSV the ingest step's pod can read, or "
        f"`{SYNTHETIC_PREFIX}[:ROWS]` for the project's generator of its real schema "
        f"({spec.synthetic_rows} rows by default). A model trained on synthetic data is labelled "
        "SYNTHETIC (reports, model card, MLflow tag synthetic_data=true) and is never promoted "
        "over a champion trained on real data.",
        "seed": "random seed of the train/test split, the CV folds, the search and the models.",
        "test_size": "share of the rows held out as the test split, scored once by evaluate "
        "(stratified for binary tasks).",
        **shared_parameter_docs(spec),
    }


def described(summary: str, docs: Mapping[str, str]) -> Callable[[Callable[..., Any]], Any]:
    """Gives a pipeline function a Google-style `Args:` docstring built from `docs`, which the
    KFP compiler turns into each input's `description` (shown in the KFP UI). Every parameter
    must be described, and only those."""

    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        names = list(inspect.signature(func).parameters)
        if set(names) != set(docs):
            raise ValueError(
                f"{func.__qualname__}: undescribed {sorted(set(names) - set(docs))}, "
                f"described but absent {sorted(set(docs) - set(names))}"
            )
        func.__doc__ = "\n".join(
            [summary, "", "Args:", *(f"    {name}: {docs[name]}" for name in names)]
        )
        return func

    return apply


def build(spec: ProjectSpec) -> Callable[..., Any]:
    outputs: dict[str, Any] = {}

    @dsl.pipeline(
        name=f"{spec.name}-{TRAINING}",
        description=f"{spec.title}: ingest, validate, features, train, evaluate (gate), explain, drift against the champion, register, deploy.",
    )
    @described(f"{spec.title}: the training pipeline.", _training_parameter_docs(spec))
    def pipeline(
        mlflow_tracking_uri: str,
        source: str = SYNTHETIC_PREFIX,
        seed: int = 42,
        test_size: float = 0.2,
        gate_overrides: str = "{}",
        trials_per_candidate: int = spec.search_trials,
        time_budget_s: float = TIME_BUDGET_S,
        explained_rows: int = spec.explained_rows,
        promotion: str = PROMOTIONS[0],
        deploy_mode: str = "manifest",
        deploy_namespace: str = DEFAULT_TARGET.namespace,
        serving_image: str = DEFAULT_TARGET.image,
    ) -> None:
        with notified(spec, TRAINING, mlflow_tracking_uri):
            data = sized(
                ingest(project=spec.name, source=source, seed=seed, test_size=test_size), "ingest"
            )
            tasks = add_training(
                spec,
                TrainingInputs(
                    train=data.outputs["train"],
                    test=data.outputs["test"],
                    current=data.outputs["current"],
                    source_info=data.outputs["source_info"],
                    seed=seed,
                    test_size=test_size,
                    gate_overrides=gate_overrides,
                    trials_per_candidate=trials_per_candidate,
                    time_budget_s=time_budget_s,
                    explained_rows=explained_rows,
                    mlflow_tracking_uri=mlflow_tracking_uri,
                    deploy_mode=deploy_mode,
                    deploy_namespace=deploy_namespace,
                    serving_image=serving_image,
                    promotion=promotion,
                    source=source,
                ),
            )
        # What a run hands back: the reports a user opens and the registration it made.
        outputs.update(
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

    return returning(pipeline, outputs)


PIPELINES = PipelinesByProject(build)
