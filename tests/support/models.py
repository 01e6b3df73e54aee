"""A fitted model saved as the register step saves it, for the tests and the serving benchmark."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

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


def model_file(path: Path) -> Path:
    """The file of an MLflow sklearn model directory that loading it unpickles."""
    description = yaml.safe_load((path / "MLmodel").read_text())
    return path / description["flavors"]["sklearn"]["pickled_model"]


def model_file_sha256(path: Path) -> str:
    """What a deploy passes as --model_sha256 for the model directory at `path`."""
    return hashlib.sha256(model_file(path).read_bytes()).hexdigest()
