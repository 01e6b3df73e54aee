"""MLflow registration: one run per pipeline run with its trials as child runs, the model, and
promotion by the challenger/champion aliases.

Promotion is decided by `decide`, a pure function of the two scores and where each model's data
came from, so that its rules have fast tests; the rest talks to MLflow.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.base import BaseEstimator

from components.core import compiled, model_card, reference
from components.core.contracts import (
    CHALLENGER,
    CHAMPION,
    KFP_RUN_ID_TAG,
    PROMOTIONS,
    SYNTHETIC_TAG,
    MonitoringSummary,
    Registration,
    RunRecord,
    trained_on_synthetic,
)
from components.core.evaluate import evaluate
from components.core.lineage import code_version
from components.core.metrics import finite
from components.core.report import stamp_version
from components.core.retraining import DATA_FILES, TRAINING_DATA, version_tags
from components.core.spec import ProjectSpec
from components.core.train import BACKGROUND_ROWS, background_sample, split_xy

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

MODEL_DIGEST_TAG = "model_sha256"
MODEL_FILE_DIGEST_TAG = "model_file_sha256"
COMPILED_TAG = "compiled_model"
"""How the version is served fast: the runtime and the agreement found, or `none: <reason>`."""
COMPILED_DIGEST_TAG = "compiled_model_sha256"
"""sha256 of the version's ONNX graph (components.core.loading.COMPILED_DIGEST_TAG)."""
"""Model version tag: sha256 of the logged model file, which the server checks before it
unpickles the file (components.core.loading.DIGEST_TAG)."""
EVALUATION_RECORD = "records/evaluation.json"
"""The run's evaluation record (intervals, per-group figures), for readers of the registry."""


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
) -> dict[str, float] | None:
    """Share of each class the model predicts on held-out rows (None for a regression): what the
    served share should stay near while the inputs look like the data the model was evaluated on."""
    X_ref, _ = split_xy(spec, reference_frame)
    return spec.task.class_shares(np.asarray(model.predict(X_ref)))


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

    background = background_sample(spec, train_frame, rows)
    metadata: dict[str, Any] = {"project": spec.name}
    shares = (
        None if reference_frame is None else reference_class_share(spec, model, reference_frame)
    )
    if reference_frame is not None and shares is not None:
        metadata["reference_class_share"] = shares
        metadata["reference_rows"] = len(reference_frame)
    return {
        "metadata": metadata,
        "serialization_format": "cloudpickle",
        "signature": infer_signature(background, np.asarray(model.predict(background))),
        "input_example": background,
        # Listed, not inferred: inference re-imports the model in a subprocess (~10 s).
        "pip_requirements": [f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS],
    }


TEST_SPLIT = "test split"
HOLDOUT_SPLIT = "new labelled holdout"


@dataclass(frozen=True)
class Incumbent:
    """The champion as this registration sees it."""

    version: str | None
    """None: the project has no champion yet."""
    scores: dict[str, float]
    """Its primary metric on each of THIS run's judging splits; empty when it could not be scored."""
    note: str
    synthetic: bool
    """Trained on data from the synthetic generator."""


NO_CHAMPION = Incumbent(None, {}, "no champion yet", False)


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
    spec: ProjectSpec,
    challenger: dict[str, float],
    challenger_synthetic: bool,
    incumbent: Incumbent,
) -> Decision:
    """Whether the challenger becomes champion, and why, in words that name every figure. The
    challenger must beat the champion on every split it is judged on (the test split, and after
    monitoring also the new labelled holdout)."""
    name = spec.primary_metric
    if challenger_synthetic and incumbent.version is not None and not incumbent.synthetic:
        return Decision(
            False,
            f"kept {incumbent.note}: the challenger was trained on synthetic data and the "
            "champion on real data; a synthetic model never displaces a real one",
        )
    if not incumbent.scores:
        figures = ", ".join(f"{split} {score:.4f}" for split, score in challenger.items())
        return Decision(True, f"promoted to champion: {name} {figures} vs {incumbent.note}")
    figures = "; ".join(
        f"{split} {score:.4f} vs {incumbent.scores[split]:.4f}"
        if split in incumbent.scores
        else f"{split} {score:.4f} (champion not scored)"
        for split, score in challenger.items()
    )
    lost = [
        split
        for split, score in challenger.items()
        if not beats(spec, score, incumbent.scores.get(split))
    ]
    if not lost:
        return Decision(True, f"promoted to champion over {incumbent.note}: {name} {figures}")
    return Decision(
        False,
        f"kept {incumbent.note}: the challenger does not beat it on the {' and the '.join(lost)} "
        f"({name} challenger vs champion: {figures})",
    )


def _champion_scores(spec: ProjectSpec, splits: dict[str, pd.DataFrame]) -> Incumbent:
    """The current champion and its primary metric on THIS run's judging splits (the same rows
    as the challenger), so champions trained on other data are compared fairly."""
    client = mlflow.MlflowClient()
    try:
        current = client.get_model_version_by_alias(spec.name, CHAMPION)
    except MlflowException:
        return NO_CHAMPION
    version = str(current.version)
    is_synthetic = trained_on_synthetic(
        current.tags or {},
        lambda: client.get_run(current.run_id).data.tags if current.run_id else {},
    )
    try:
        model = mlflow.sklearn.load_model(f"models:/{spec.name}@{CHAMPION}")
        scores = {
            split: evaluate(spec, model, frame)[0].metrics[spec.primary_metric]
            for split, frame in splits.items()
        }
    except Exception as exc:  # an unloadable champion must not block a good challenger
        return Incumbent(
            version,
            {},
            f"champion v{version} could not be scored on this run's splits "
            f"({type(exc).__name__}: {exc})",
            is_synthetic,
        )
    return Incumbent(version, scores, f"champion v{version}", is_synthetic)


def _already_registered(spec: ProjectSpec, experiment: str, digest: str) -> Registration | None:
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
            found = client.get_model_version(spec.name, version.version)
            tags = found.tags or {}
            return Registration(
                run_id=run.info.run_id,
                version=str(version.version),
                aliases=list(found.aliases),
                champion_before=None,
                decision=f"already registered as version {version.version}; nothing new logged",
                metrics=finite(run.data.metrics),
                model_file_sha256=tags.get(MODEL_FILE_DIGEST_TAG, ""),
                compiled_model=tags.get(COMPILED_TAG, ""),
                compiled_model_sha256=tags.get(COMPILED_DIGEST_TAG, ""),
            )
    return None


WITHDRAW_PATIENCE_S = 120.0
"""How long a failed registration keeps trying to withdraw its version: the tracking server or
its database may be what failed, and be back within seconds."""


def _withdraw(spec: ProjectSpec, version: str, patience_s: float = WITHDRAW_PATIENCE_S) -> None:
    """Deletes `version`, whose registration failed before any alias named it."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            mlflow.MlflowClient().delete_model_version(spec.name, version)
        except Exception as exc:
            if time.monotonic() < deadline:
                time.sleep(2.0)
                continue
            print(
                f"register: {spec.name} version {version} is incomplete and could not be "
                f"withdrawn ({type(exc).__name__}: {exc}); delete it in the registry",
                file=sys.stderr,
            )
            return
        print(
            f"register: {spec.name} version {version} withdrawn: its registration did not complete",
            file=sys.stderr,
        )
        return


def _logged_model_file_sha256(info: Any) -> str:
    """sha256 of the model file as a server downloads it: read back from the artifact store
    after the upload, the file named by the logged MLmodel's sklearn flavor."""
    pickled = str(info.flavors["sklearn"]["pickled_model"])
    location = str(mlflow.get_logged_model(info.model_id).artifact_location).rstrip("/")
    with tempfile.TemporaryDirectory() as folder:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{location}/{pickled}", dst_path=folder
        )
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def log_compiled(
    spec: ProjectSpec, model: BaseEstimator, model_id: str, version: str, test_frame: pd.DataFrame
) -> compiled.Compilation:
    """The compiled serving path: the ONNX graph, kept only if it reproduces the model on every
    row of the test split, logged into the model's directory (`compiled/`) with its sha256 as a
    version tag; otherwise the reason is the tag `compiled_model` and the sklearn pipeline serves."""
    client = mlflow.MlflowClient()
    checked = test_frame[spec.input_columns]
    found = compiled.compile_model(spec, model, checked, f"test split ({len(checked):,} rows)")
    if found.graph is None or found.record is None:
        client.set_model_version_tag(spec.name, version, COMPILED_TAG, found.tag)
        return found
    with tempfile.TemporaryDirectory() as folder:
        client.log_model_artifacts(
            model_id, str(compiled.write(found, Path(folder))), compiled.FOLDER
        )
    client.set_model_version_tag(spec.name, version, COMPILED_TAG, found.tag)
    client.set_model_version_tag(spec.name, version, COMPILED_DIGEST_TAG, found.graph_sha256)
    return found


def _log_trials(experiment: str, trials: pd.DataFrame) -> None:
    """Each trial of the search as a child run of the active run: its parameters with their own
    types, its CV figures with the threshold they were taken at, and a `chosen` tag on the one
    the search picked."""
    for row in trials.to_dict("records"):
        record = {str(k): v for k, v in row.items()}
        params = json.loads(record["params"]) | {"candidate": record["candidate"]}
        threshold = record.get("cv_threshold")
        if isinstance(threshold, float) and math.isfinite(threshold):
            params["cv_threshold"] = threshold
        with mlflow.start_run(
            experiment_id=experiment,
            run_name=f"trial-{record['trial']}-{record['candidate']}",
            nested=True,
            tags={"chosen": str(bool(record.get("chosen", False))).lower()},
        ):
            mlflow.log_params(params)
            mlflow.log_metrics(
                finite(
                    {
                        k.replace(".", "_"): v
                        for k, v in record.items()
                        if k.startswith(("cv_mean.", "cv_std."))
                    }
                )
            )


def _lineage_tags(record: RunRecord) -> dict[str, str]:
    """Where a model comes from, as tags of its run and of its model version alike."""
    tags = record.tags() | {
        "source_sha256": record.source.sha256,
        "code_version": code_version(),
        "kfp_run": record.run_name,
    }
    if record.run_id:
        tags[KFP_RUN_ID_TAG] = record.run_id
    return tags


def _log_datasets(spec: ProjectSpec, record: RunRecord, frames: dict[str, pd.DataFrame]) -> None:
    """The training and test splits as MLflow dataset inputs (digest, schema, source)."""
    from mlflow.data.pandas_dataset import from_pandas

    source = record.source.source if not record.source.synthetic else "synthetic-generator"
    for context, frame in frames.items():
        dataset = from_pandas(
            frame, source=source, name=f"{spec.name}-{context}", targets=spec.target
        )
        mlflow.log_input(dataset, context=context, tags={"source_sha256": record.source.sha256})


def _log_reports(reports: dict[str, str], version: str) -> None:
    """Each HTML report under `reports/<name>.html`, with the model version it now belongs to."""
    for name, path in reports.items():
        if Path(path).is_file():
            document = stamp_version(Path(path).read_text(), version)
            mlflow.log_text(document, f"reports/{name}.html")


def check_promotion(promotion: str) -> str:
    if promotion not in PROMOTIONS:
        raise ValueError(f"promotion is one of {', '.join(PROMOTIONS)}, not {promotion!r}")
    return promotion


def _stages(decision: Decision, promotion: str, champion_before: str | None) -> bool:
    return decision.promote and check_promotion(promotion) == "staged" and bool(champion_before)


def staged_decision(decision: Decision, promotion: str, champion_before: str | None) -> str:
    """The decision as the registration reports it: a staged promotion says where it went."""
    if _stages(decision, promotion, champion_before):
        return (
            f"staged in shadow beside champion v{champion_before} for the rollout judge "
            f"(promotion: staged): {decision.reason}"
        )
    return decision.reason


def promote(
    spec: ProjectSpec,
    version: str,
    decision: Decision,
    synthetic: bool,
    tags: dict[str, str] | None = None,
    promotion: str = PROMOTIONS[0],
    champion_before: str | None = None,
) -> list[str]:
    """Sets `challenger` (and, when the decision says so, `champion`, or with `promotion`
    "staged" and a champion to compare with, `staged` in shadow) on the version, with the
    decision, the data kind and `tags` as version tags; returns the aliases set."""
    from components.core import rollout

    staged = _stages(decision, promotion, champion_before)
    client = mlflow.MlflowClient()
    reason = staged_decision(decision, promotion, champion_before)
    recorded = {"decision": reason, SYNTHETIC_TAG: str(synthetic).lower()}
    for key, value in (recorded | (tags or {})).items():
        client.set_model_version_tag(spec.name, version, key, value)
    # `champion` last: once it is set the registration is whole, and servers may follow it.
    client.set_registered_model_alias(spec.name, CHALLENGER, version)
    aliases = [CHALLENGER]
    if staged:
        rollout.stage(spec.name, version, rollout.Stage.SHADOW, reason=decision.reason,
                      client=client)  # fmt: skip
        aliases.append(rollout.STAGED)
    elif decision.promote:
        client.set_registered_model_alias(spec.name, CHAMPION, version)
        aliases.append(CHAMPION)
    return aliases


class Located(Protocol):
    """A file handed over by a step (a KFP artifact, or anything else with a path)."""

    path: str


@dataclass(frozen=True)
class Retraining:
    """What a registration made by the monitoring pipeline adds: the new labelled rows held out
    from training, and the monitoring run that called for it."""

    holdout: pd.DataFrame
    monitoring: MonitoringSummary
    data_files: dict[str, str]
    """The train and test CSV files as the step received them, logged byte for byte so that the
    next retraining can re-read them and check their hash."""

    @staticmethod
    def read(
        holdout: Located | None, monitoring: Located | None, train: str, test: str
    ) -> Retraining | None:
        """From the register step's optional inputs: None for a training-pipeline run."""
        if holdout is None or monitoring is None:
            return None
        return Retraining(
            pd.read_csv(holdout.path),
            MonitoringSummary.read(monitoring.path),
            dict(zip(DATA_FILES, (train, test), strict=True)),
        )


def _log_training_data(files: dict[str, str]) -> None:
    """The files under TRAINING_DATA in the active run, renamed to what the next retraining reads."""
    with tempfile.TemporaryDirectory() as folder:
        for name, path in files.items():
            shutil.copyfile(path, Path(folder) / name)
        mlflow.log_artifacts(folder, artifact_path=TRAINING_DATA)
    mlflow.set_tag(TRAINING_DATA, TRAINING_DATA)


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
    retraining: Retraining | None = None,
    on_card: Callable[[str], None] | None = None,
    promotion: str = PROMOTIONS[0],
) -> Registration:
    """Logs the run, its trials, its reports, the model card and the model; sets `challenger`,
    and `champion` when `decide` says the model beats the current champion on the test split
    (and, when retraining, on the new labelled holdout too), or with `promotion` "staged"
    stages it in shadow instead (PROMOTIONS). The card is rendered once: logged
    with the version and handed to `on_card` (the register step writes it as its artifact)."""
    check_promotion(promotion)
    uri = tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    exp = experiment_id(spec.name, uri)
    previous = _already_registered(spec, exp, record.model_sha256)
    if previous is not None:
        if on_card is not None:
            on_card(model_card.render(spec, record, previous))
        return previous
    splits = {TEST_SPLIT: test_frame}
    challenger = {TEST_SPLIT: record.evaluation.metrics[spec.primary_metric]}
    metrics = record.metrics()
    if retraining is not None:
        splits[HOLDOUT_SPLIT] = retraining.holdout
        on_holdout, _ = evaluate(spec, model, retraining.holdout)
        challenger[HOLDOUT_SPLIT] = on_holdout.metrics[spec.primary_metric]
        metrics |= {f"holdout_{k}": v for k, v in on_holdout.metrics.items()}
    incumbent = _champion_scores(spec, splits)
    lineage = _lineage_tags(record)
    with mlflow.start_run(
        experiment_id=exp, run_name=record.run_name, tags={"project": spec.name, **lineage}
    ) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in record.params().items() if v is not None})
        mlflow.log_metrics(finite(metrics))
        mlflow.log_text(record.evaluation.to_json(), EVALUATION_RECORD)
        _log_trials(exp, trials)
        _log_datasets(spec, record, {"training": train_frame, "testing": test_frame})
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=spec.name,
            **model_files(spec, model, train_frame, reference_frame=test_frame),
        )
        version = str(info.registered_model_version)
        # Until an alias names it, the version is withdrawn if anything fails: the registry
        # never keeps half a registration (no digest, no decision).
        try:
            digest = _logged_model_file_sha256(info)
            # tagged before any alias names the version: a server following the alias checks it
            mlflow.MlflowClient().set_model_version_tag(
                spec.name, version, MODEL_FILE_DIGEST_TAG, digest
            )
            compilation = log_compiled(spec, model, info.model_id, version, test_frame)
            reference.log(spec, record, train_frame)
            if retraining is not None:
                _log_training_data(retraining.data_files)
            synthetic = record.source.synthetic
            decision = decide(spec, challenger, synthetic, incumbent)
            tags = dict(lineage)
            if retraining is not None:
                tags |= version_tags(
                    retraining.monitoring, incumbent.version, incumbent.scores, challenger
                )
            registration = Registration(
                run_id=run.info.run_id,
                version=version,
                aliases=promote(
                    spec, version, decision, synthetic, tags, promotion, incumbent.version
                ),
                decision=staged_decision(decision, promotion, incumbent.version),
                champion_before=incumbent.version,
                metrics=finite(metrics),
                model_file_sha256=digest,
                compiled_model=compilation.tag,
                compiled_model_sha256=compilation.graph_sha256,
            )
        except BaseException:
            _withdraw(spec, version)
            raise
        card = model_card.render(spec, record, registration)
        mlflow.log_text(card, "model_card/model_card.md")
        if on_card is not None:
            on_card(card)
        mlflow.MlflowClient().update_model_version(
            spec.name, version, description=model_card.summary(spec, record, registration)
        )
        _log_reports(reports, f"{spec.name} v{version}")
    return registration
