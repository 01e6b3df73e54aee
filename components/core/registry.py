"""MLflow registration: one run per pipeline run with its trials as child runs, the model, and
promotion by the challenger/champion aliases.

Promotion is decided by `decide`, a pure function of the two scores and where each model's data
came from, so that its rules have fast tests; the rest talks to MLflow.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.base import BaseEstimator

from components.core import model_card, reference
from components.core.contracts import CHALLENGER, CHAMPION, Registration, RunRecord
from components.core.evaluate import evaluate
from components.core.metrics import finite
from components.core.spec import ProjectSpec
from components.core.train import split_xy

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

BACKGROUND_ROWS = 50
MODEL_DIGEST_TAG = "model_sha256"
SYNTHETIC_TAG = "synthetic_data"


class RegistryError(RuntimeError):
    pass


def tracking_uri(explicit: str = "") -> str:
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise RegistryError(
            "no MLflow tracking URI: pass one or set MLFLOW_TRACKING_URI (e.g. sqlite:///.state/mlflow/mlflow.db)"
        )
    return uri


def experiment_id(name: str, uri: str) -> str:
    """Gets or creates the project's experiment; with a SQLite store the artifacts sit beside the database."""
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = os.environ.get("MLFLOW_ARTIFACT_LOCATION")
    if not location and uri.startswith("sqlite:///"):
        location = (
            Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts" / name
        ).as_uri()
    return str(mlflow.create_experiment(name, artifact_location=location or None))


MODEL_REQUIREMENTS = (
    "scikit-learn",
    "imbalanced-learn",
    "catboost",
    "pandas",
    "numpy",
    "cloudpickle",
)


def reference_class_share(
    spec: ProjectSpec, model: BaseEstimator, reference_frame: pd.DataFrame
) -> dict[str, float]:
    """Share of each class the model predicts on held-out rows: what the served share should
    stay near while the inputs look like the data the model was evaluated on."""
    X_ref, _ = split_xy(spec, reference_frame)
    positive = float(np.mean(np.asarray(model.predict(X_ref)) == 1))
    negative_label, positive_label = spec.label_names
    return {negative_label: round(1.0 - positive, 6), positive_label: round(positive, 6)}


def model_files(
    spec: ProjectSpec,
    model: BaseEstimator,
    train_frame: pd.DataFrame,
    rows: int = BACKGROUND_ROWS,
    reference_frame: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """How a project model is written to MLflow, by the register step and anyone else: cloudpickle
    (the pipelines hold the project's own transformers), a signature on the raw input columns,
    `rows` training rows as the input example, which the server uses as the SHAP background, and
    for a classifier the class shares it predicts on `reference_frame` (the held-out test split),
    which the server exports for the prediction-shift alert."""
    from importlib.metadata import version

    X_train, _ = split_xy(spec, train_frame)
    background = X_train.sample(min(rows, len(X_train)), random_state=0)
    metadata: dict[str, Any] = {"project": spec.name}
    if spec.task == "binary" and reference_frame is not None:
        metadata["reference_class_share"] = reference_class_share(spec, model, reference_frame)
        metadata["reference_rows"] = len(reference_frame)
    return {
        "metadata": metadata,
        "serialization_format": "cloudpickle",
        "signature": infer_signature(background, np.asarray(model.predict(background))),
        "input_example": background,
        # Listed, not inferred: inference re-imports the model in a subprocess (~10 s).
        "pip_requirements": [f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS],
    }


@dataclass(frozen=True)
class Incumbent:
    """The champion as this registration sees it."""

    version: str | None
    """None: the project has no champion yet."""
    score: float | None
    """Its primary metric on THIS run's test split; None when it could not be scored."""
    note: str
    synthetic: bool
    """Trained on data from the synthetic generator."""


NO_CHAMPION = Incumbent(None, None, "no champion yet", False)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def beats(spec: ProjectSpec, challenger: float, champion: float | None) -> bool:
    """Strictly better on the primary metric in its own direction; a tie keeps the champion."""
    if champion is None or math.isnan(champion):
        return True
    return spec.primary.better(challenger, champion)


def decide(
    spec: ProjectSpec, challenger: float, challenger_synthetic: bool, incumbent: Incumbent
) -> Decision:
    """Whether the challenger becomes champion, and why, in words that name both figures."""
    name = spec.primary_metric
    if challenger_synthetic and incumbent.version is not None and not incumbent.synthetic:
        return Decision(
            False,
            f"kept {incumbent.note}: the challenger was trained on synthetic data and the "
            "champion on real data; a synthetic model never displaces a real one",
        )
    if beats(spec, challenger, incumbent.score):
        against = (
            incumbent.note if incumbent.score is None else f"{incumbent.note} {incumbent.score:.4f}"
        )
        return Decision(True, f"promoted to champion: {name} {challenger:.4f} vs {against}")
    return Decision(
        False,
        f"kept {incumbent.note}: {name} {incumbent.score:.4f} vs challenger {challenger:.4f} "
        "on this test split",
    )


def champion_score(spec: ProjectSpec, test_frame: pd.DataFrame) -> Incumbent:
    """The current champion and its primary metric on THIS test split (same rows as the
    challenger), so champions trained on other data are compared fairly."""
    client = mlflow.MlflowClient()
    try:
        current = client.get_model_version_by_alias(spec.name, CHAMPION)
    except MlflowException:
        return NO_CHAMPION
    version = str(current.version)
    synthetic = (current.tags or {}).get(SYNTHETIC_TAG)
    if synthetic is None and current.run_id:  # versions registered before the version tag
        synthetic = client.get_run(current.run_id).data.tags.get(SYNTHETIC_TAG)
    is_synthetic = synthetic == "true"
    try:
        model = mlflow.sklearn.load_model(f"models:/{spec.name}@{CHAMPION}")
        evaluation, _ = evaluate(spec, model, test_frame)
    except Exception as exc:  # an unloadable champion must not block a good challenger
        return Incumbent(
            version,
            None,
            f"champion v{version} could not be scored on this test split "
            f"({type(exc).__name__}: {exc})",
            is_synthetic,
        )
    return Incumbent(
        version, evaluation.metrics[spec.primary_metric], f"champion v{version}", is_synthetic
    )


def already_registered(spec: ProjectSpec, experiment: str, digest: str) -> Registration | None:
    """The registration of a byte-identical model, so a re-run (e.g. served from the KFP cache up
    to this step) does not add a duplicate version."""
    if not digest:
        return None
    runs = mlflow.search_runs(
        [experiment], filter_string=f"tags.{MODEL_DIGEST_TAG} = '{digest}'", output_format="list"
    )
    client = mlflow.MlflowClient()
    for run in runs:
        for version in client.search_model_versions(
            f"name = '{spec.name}' and run_id = '{run.info.run_id}'"
        ):
            aliases = list(client.get_model_version(spec.name, version.version).aliases)
            return Registration(
                run_id=run.info.run_id,
                version=str(version.version),
                aliases=aliases,
                champion_before=None,
                decision=f"already registered as version {version.version}; nothing new logged",
                metrics=finite(run.data.metrics),
            )
    return None


def log_trials(experiment: str, trials: pd.DataFrame) -> None:
    """Each trial of the search as a child run of the active run."""
    for record in (
        dict(zip(trials.columns.astype(str), row, strict=True))
        for row in trials.itertuples(index=False)
    ):
        with mlflow.start_run(
            experiment_id=experiment,
            run_name=f"trial-{record['trial']}-{record['candidate']}",
            nested=True,
        ):
            mlflow.log_params(
                {
                    k.removeprefix("param."): str(v)
                    for k, v in record.items()
                    if k.startswith("param.") and not (isinstance(v, float) and math.isnan(v))
                }
                | {"candidate": record["candidate"]}
            )
            mlflow.log_metrics(
                finite({k.replace(".", "_"): v for k, v in record.items() if k.startswith("cv_")})
            )


def promote(spec: ProjectSpec, version: str, decision: Decision, synthetic: bool) -> list[str]:
    """Sets `challenger` (and `champion` when the decision says so) on the version, with the
    decision and the data kind as version tags; returns the aliases set."""
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(spec.name, CHALLENGER, version)
    aliases = [CHALLENGER]
    if decision.promote:
        client.set_registered_model_alias(spec.name, CHAMPION, version)
        aliases.append(CHAMPION)
    client.set_model_version_tag(spec.name, version, "decision", decision.reason)
    client.set_model_version_tag(spec.name, version, SYNTHETIC_TAG, str(synthetic).lower())
    return aliases


def register(
    spec: ProjectSpec,
    model: BaseEstimator,
    record: RunRecord,
    *,
    train_frame: pd.DataFrame,
    test_frame: pd.DataFrame,
    trials: pd.DataFrame,
    reports: dict[str, str],
    uri: str = "",
) -> Registration:
    """Logs the run, its trials, its reports, the model card and the model; sets `challenger`,
    and `champion` when `decide` says the model beats the current champion."""
    uri = tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    exp = experiment_id(spec.name, uri)
    previous = already_registered(spec, exp, record.model_sha256)
    if previous is not None:
        return previous
    incumbent = champion_score(spec, test_frame)
    metrics = record.metrics()
    with mlflow.start_run(
        experiment_id=exp, run_name=record.run_name, tags={"project": spec.name, **record.tags()}
    ) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in record.params().items()})
        mlflow.log_metrics(finite(metrics))
        log_trials(exp, trials)
        for name, path in reports.items():
            if Path(path).is_file():
                mlflow.log_artifact(path, artifact_path=name)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=spec.name,
            **model_files(spec, model, train_frame, reference_frame=test_frame),
        )
        version = str(info.registered_model_version)
        reference.log(spec, record, train_frame)
        synthetic = record.source.synthetic
        score = record.evaluation.metrics[spec.primary_metric]
        decision = decide(spec, score, synthetic, incumbent)
        registration = Registration(
            run_id=run.info.run_id,
            version=version,
            aliases=promote(spec, version, decision, synthetic),
            champion_before=incumbent.version,
            decision=decision.reason,
            metrics=finite(metrics),
        )
        mlflow.log_text(model_card.render(spec, record, registration), "model_card/model_card.md")
    return registration
