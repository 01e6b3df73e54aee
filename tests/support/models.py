"""A fitted model saved as the register step saves it, for the tests and the serving benchmark."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from components.core.lineage import file_sha256
from components.core.registry import model_files
from components.core.spec import ProjectSpec


def save(
    spec: ProjectSpec,
    model: Any,
    train_frame: pd.DataFrame,
    path: Path,
    rows: int = 50,
    reference_frame: pd.DataFrame | None = None,
) -> Path:
    """Writes `model` to `path` in the layout the register step writes: an MLflow sklearn model
    directory whose input example is `rows` raw training rows (the server's SHAP background)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow.sklearn

    files = model_files(spec, model, train_frame, rows, reference_frame=reference_frame)
    mlflow.sklearn.save_model(model, str(path), **files)
    return path


def register_as_champion(
    spec: ProjectSpec,
    trained: Any,
    parts: Any,
    info: Any,
    uri: str,
    run_name: str,
    seed: int,
    input_importance: dict[str, float],
    evaluation: Any = None,
    reports: dict[str, str] | None = None,
) -> str:
    """A trained model (`components.core.train.TrainResult`) registered as the register step
    registers one, with its reference, input example and model file digest tag, from a run
    record of what the test needs: its `evaluation` (default: the test figures, no groups, no
    gates) and the inputs' importance. Returns the version, which must be champion."""
    from components.core import drift, registry
    from components.core.contracts import EvaluationSummary, ExplanationSummary, RunRecord
    from components.core.evaluate import evaluate
    from components.core.train import selection_summary

    if evaluation is None:
        found, _ = evaluate(spec, trained.model, parts.test)
        evaluation = EvaluationSummary(
            rows=found.rows, metrics=found.metrics, groups=[], gates=[], passed=True
        )
    record = RunRecord(
        source=info,
        selection=selection_summary(trained),
        evaluation=evaluation,
        explanation=ExplanationSummary(
            method="-", base_value=0.0, importance={}, input_importance=input_importance
        ),
        drift=drift.no_reference(spec, len(parts.train), "no champion yet").summary,
        seed=seed,
        test_size=0.25,
        run_name=run_name,
        model_sha256=run_name,
    )
    done = registry.register(
        spec,
        trained.model,
        record,
        train_frame=parts.train,
        test_frame=parts.test,
        trials=trained.trials_frame(),
        reports=reports or {},
        uri=uri,
    )
    assert done.is_champion and done.model_file_sha256
    return done.version


def model_file(path: Path) -> Path:
    """The file of an MLflow sklearn model directory that loading it unpickles."""
    description = yaml.safe_load((path / "MLmodel").read_text())
    return path / description["flavors"]["sklearn"]["pickled_model"]


def model_file_sha256(path: Path) -> str:
    """What a deploy passes as --model_sha256 for the model directory at `path`."""
    return file_sha256(model_file(path))


def register_dirs(
    uri: str, name: str, dirs: Sequence[tuple[str, Path]], artifacts: Path
) -> dict[str, tuple[str, str]]:
    """Each model directory logged by a run of its own and registered as a version of `name`
    in the registry at `uri`, tagged with its model file's digest as the register step tags it;
    returns kind -> (version, run id). The tracking URI in effect is left as it was."""
    import mlflow

    from components.core.loading import DIGEST_TAG

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        client = mlflow.MlflowClient()
        experiment = client.create_experiment(name, artifact_location=str(artifacts))
        versions = {}
        for kind, path in dirs:
            with mlflow.start_run(experiment_id=experiment) as run:
                mlflow.log_artifacts(str(path), artifact_path="model")
            version = str(mlflow.register_model(f"runs:/{run.info.run_id}/model", name).version)
            client.set_model_version_tag(name, version, DIGEST_TAG, model_file_sha256(path))
            versions[kind] = (version, run.info.run_id)
        return versions
    finally:
        mlflow.set_tracking_uri(previous)


def replace_stored_model(uri: str, name: str, version: str, source: Path) -> None:
    """Puts the model file of the model directory `source` in place of the stored file of
    `version` of `name` in the registry at `uri`, behind its digest tag: a version whose file
    is not the one registered. The tracking URI in effect is left as it was."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        stored = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
    finally:
        mlflow.set_tracking_uri(previous)
    model_file(stored).write_bytes(model_file(source).read_bytes())


def registry_with_a_canary(root: Path, name: str, share: float) -> tuple[str, Any]:
    """A fresh SQLite registry under `root` where `name` has two versions: 1 the champion, 2 a
    canary answering `share` of the requests. Its URI and a client of it."""
    import mlflow

    from components.core import rollout
    from components.core.contracts import CHAMPION

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, str(root), run_id=None)
    client.set_registered_model_alias(name, CHAMPION, "1")
    rollout.stage(name, "2", rollout.Stage.CANARY, share=share, reason="test", client=client)
    return uri, client
