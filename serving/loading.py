"""Finding, loading and checking the served model: an MLflow sklearn model directory.

The directory is what the pipelines' register step writes and what a KServe storage URI downloads
into /mnt/models: the fitted pipeline (cloudpickle) and, as the input example, 50 raw training
rows that serve as the SHAP background. `models:/NAME@ALIAS` and `models:/NAME/VERSION` are read
from the registry at MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from components.core import model_uri
from components.core.spec import ProjectSpec
from components.core.train import single_threaded

UNKNOWN = "unknown"


class ModelLoadError(RuntimeError):
    """The model at the URI cannot be served; the message names the URI and the cause."""


@dataclass(frozen=True)
class Provenance:
    uri: str
    version: str
    run_id: str


@dataclass
class LoadedModel:
    model: Any
    background: pd.DataFrame
    provenance: Provenance
    threshold: float | None
    """Decision threshold of a binary model (P(positive) >= threshold predicts the positive class)."""
    single_threaded: int
    """How many estimators had `n_jobs` set to 1."""
    reference_class_share: dict[str, float] | None = None
    """Class shares the model predicted on its held-out test split, when the register step
    stored them (models registered before that have none)."""


def _mlflow() -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    import mlflow.sklearn

    return mlflow


def registry_provenance(uri: str) -> tuple[str, str]:
    """(version, run id) of `models:/NAME@ALIAS` or `models:/NAME/VERSION`."""
    parts = model_uri.parse(uri)
    if parts is None:
        raise ModelLoadError(f"cannot load model from {uri}: {model_uri.EXPECTED}")
    client = _mlflow().MlflowClient()
    found = (
        client.get_model_version_by_alias(parts.name, parts.alias)
        if parts.alias
        else client.get_model_version(parts.name, parts.version)
    )
    return str(found.version), str(found.run_id or UNKNOWN)


def resolve(uri: str, version: str | None) -> tuple[Path, Provenance]:
    """A local model directory for the URI (downloaded for registry URIs) and where it came from."""
    mlflow = _mlflow()
    if uri.startswith(model_uri.MODELS_SCHEME):
        registry_version, run_id = registry_provenance(uri)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
        return local, Provenance(uri, registry_version, run_id)
    path = Path(uri.removeprefix("file://")).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"cannot load model from {uri}: no such directory")
    if not (path / "MLmodel").is_file():
        raise ModelLoadError(
            f"cannot load model from {uri}: no MLmodel file there (expected an MLflow model directory)"
        )
    run_id = mlflow.models.Model.load(str(path)).run_id
    return path, Provenance(uri, version or UNKNOWN, run_id or UNKNOWN)


def decision_threshold(spec: ProjectSpec, model: Any, uri: str) -> float | None:
    if spec.task != "binary":
        return None
    if not hasattr(model, "predict_proba"):
        raise ModelLoadError(
            f"cannot serve model from {uri}: {spec.name} is a binary task but "
            f"{type(model).__name__} has no predict_proba"
        )
    classes = [int(c) for c in getattr(model, "classes_", [])]
    if classes != [0, 1]:
        raise ModelLoadError(
            f"cannot serve model from {uri}: expected classes [0, 1], got {classes}"
        )
    threshold = getattr(model, "threshold", 0.5)
    # FixedThresholdClassifier stores the tuned threshold; a bare classifier predicts at 0.5.
    return 0.5 if threshold == "auto" else float(threshold)


def load(spec: ProjectSpec, uri: str, version: str | None = None) -> LoadedModel:
    """Loads and checks the model; any problem is a ModelLoadError naming the URI and cause."""
    mlflow = _mlflow()
    try:
        path, provenance = resolve(uri, version)
        model = mlflow.sklearn.load_model(str(path))
        description = mlflow.models.Model.load(str(path))
        background = description.load_input_example(str(path))
        reference = (description.metadata or {}).get("reference_class_share")
    except ModelLoadError:
        raise
    except Exception as exc:  # whatever broke while reading the model, the server cannot start
        raise ModelLoadError(
            f"cannot load model for {spec.name} from {uri}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(background, pd.DataFrame):
        raise ModelLoadError(
            f"cannot serve model from {uri}: the model has no input example; the register step "
            "stores 50 raw training rows there as the SHAP background"
        )
    missing = [c for c in spec.input_columns if c not in background.columns]
    if missing:
        raise ModelLoadError(
            f"cannot serve model from {uri} as {spec.name}: its input example lacks the "
            f"columns {missing} (is it another project's model?)"
        )
    threshold = decision_threshold(spec, model, uri)
    changed = single_threaded(model)
    return LoadedModel(
        model, background[spec.input_columns], provenance, threshold, changed, reference
    )
