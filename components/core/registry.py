"""MLflow registration: one run per pipeline run, trials as child runs, challenger/champion aliases."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.base import BaseEstimator

from components.core.evaluate import evaluate
from components.core.spec import ProjectSpec
from components.core.train import split_xy

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

CHAMPION = "champion"
CHALLENGER = "challenger"
BACKGROUND_ROWS = 50
MODEL_DIGEST_TAG = "model_sha256"
HIGHER_IS_BETTER = {"rmse": False, "mae": False, "mape": False}


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


@dataclass
class Registration:
    run_id: str
    version: str
    aliases: list[str]
    champion_before: str | None
    decision: str
    metrics: dict[str, float] = field(default_factory=dict)


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


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)
    }


def champion_score(
    spec: ProjectSpec, test_frame: pd.DataFrame
) -> tuple[str | None, float | None, str]:
    """The current champion's version and its primary metric on THIS test split (same rows as the
    challenger), so champions trained on other data are compared fairly."""
    client = mlflow.MlflowClient()
    try:
        current = client.get_model_version_by_alias(spec.name, CHAMPION)
    except MlflowException:
        return None, None, "no champion yet"
    try:
        model = mlflow.sklearn.load_model(f"models:/{spec.name}@{CHAMPION}")
        evaluation, _ = evaluate(spec, model, test_frame)
    except Exception as exc:  # an unloadable champion must not block a good challenger
        return (
            str(current.version),
            None,
            f"champion v{current.version} could not be scored on this test split ({type(exc).__name__}: {exc})",
        )
    return (
        str(current.version),
        evaluation.metrics[spec.primary_metric],
        f"champion v{current.version}",
    )


def beats(spec: ProjectSpec, challenger: float, champion: float | None) -> bool:
    if champion is None or math.isnan(champion):
        return True
    if HIGHER_IS_BETTER.get(spec.primary_metric, True):
        return challenger > champion
    return challenger < champion


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
                run.info.run_id,
                str(version.version),
                aliases,
                None,
                f"already registered as version {version.version}; nothing new logged",
                dict(run.data.metrics),
            )
    return None


def register(
    spec: ProjectSpec,
    model: BaseEstimator,
    *,
    train_frame: pd.DataFrame,
    test_frame: pd.DataFrame,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    trials: pd.DataFrame,
    artifacts: dict[str, str],
    tags: dict[str, str],
    uri: str = "",
    card: Any = None,
) -> Registration:
    """Logs the run and the model, sets `challenger`, and `champion` when the model beats the
    current champion on the primary metric. `card(registration) -> str` renders the model card."""
    uri = tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    exp = experiment_id(spec.name, uri)
    previous = already_registered(spec, exp, tags.get(MODEL_DIGEST_TAG, ""))
    if previous is not None:
        return previous
    champion_version, champion_value, champion_note = champion_score(spec, test_frame)
    with mlflow.start_run(
        experiment_id=exp, run_name=run_name, tags={"project": spec.name, **tags}
    ) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(_finite(metrics))
        for record in (
            dict(zip(trials.columns.astype(str), row, strict=True))
            for row in trials.itertuples(index=False)
        ):
            with mlflow.start_run(
                experiment_id=exp,
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
                    _finite(
                        {k.replace(".", "_"): v for k, v in record.items() if k.startswith("cv_")}
                    )
                )
        for name, path in artifacts.items():
            if Path(path).is_file():
                mlflow.log_artifact(path, artifact_path=name)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=spec.name,
            **model_files(spec, model, train_frame, reference_frame=test_frame),
        )
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(spec.name, CHALLENGER, version)
        aliases = [CHALLENGER]
        ours = metrics[f"test_{spec.primary_metric}"]
        if beats(spec, ours, champion_value):
            client.set_registered_model_alias(spec.name, CHAMPION, version)
            aliases.append(CHAMPION)
            against = (
                champion_note if champion_value is None else f"{champion_note} {champion_value:.4f}"
            )
            decision = f"promoted to champion: {spec.primary_metric} {ours:.4f} vs {against}"
        else:
            decision = f"kept {champion_note}: {spec.primary_metric} {champion_value:.4f} vs challenger {ours:.4f} on this test split"
        client.set_model_version_tag(spec.name, version, "decision", decision)
        registration = Registration(
            run.info.run_id, version, aliases, champion_version, decision, metrics
        )
        if card is not None:
            mlflow.log_text(card(registration), "model_card/model_card.md")
    return registration
