"""The reference a model version carries: what monitoring compares live inputs with.

At registration the model's run gets, under `reference/`, a sample of the rows the model was
trained on (stratified by the target for classifiers) and a record of the column roles, each
input column's importance, the test figures and where the training data came from. Drift is
always measured against the served version's own reference, never against another slice of
whatever file is at hand.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from components.core.contracts import Reference, RunRecord
from components.core.spec import ProjectSpec

ARTIFACT_PATH = "reference"
ROWS_FILE = "rows.parquet"
RECORD_FILE = "reference.json"
REFERENCE_ROWS = 5000


def sample(spec: ProjectSpec, train_frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """Up to `rows` training rows, stratified by the target for classifiers."""
    if len(train_frame) <= rows:
        return train_frame.reset_index(drop=True)
    stratify = train_frame[spec.target] if spec.task.stratified else None
    kept, _ = train_test_split(train_frame, train_size=rows, random_state=seed, stratify=stratify)
    return kept.reset_index(drop=True)


def build(
    spec: ProjectSpec, record: RunRecord, train_frame: pd.DataFrame, rows: int = REFERENCE_ROWS
) -> tuple[Reference, pd.DataFrame]:
    drawn = sample(spec, train_frame, rows, record.seed)
    columns = [c for c in spec.source_columns if c in drawn.columns]
    reference = Reference(
        project=spec.name,
        rows=len(drawn),
        training_rows=len(train_frame),
        target=spec.target,
        input_columns=spec.input_columns,
        ignored_columns=list(spec.ignored_columns),
        importance=record.explanation.input_importance,
        test_metrics=record.evaluation.metrics,
        threshold=record.selection.threshold,
        source=record.source.source,
        source_sha256=record.source.sha256,
        synthetic=record.source.synthetic,
        seed=record.seed,
        test_size=record.test_size,
    )
    return reference, drawn[columns]


def write(reference: Reference, rows: pd.DataFrame, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    reference.write(directory / RECORD_FILE)
    rows.to_parquet(directory / ROWS_FILE, index=False)
    return directory


def read(directory: Path) -> tuple[Reference, pd.DataFrame]:
    return Reference.read(directory / RECORD_FILE), pd.read_parquet(directory / ROWS_FILE)


def log(spec: ProjectSpec, record: RunRecord, train_frame: pd.DataFrame) -> Reference:
    """Writes the reference into the active MLflow run, under `reference/`."""
    import mlflow

    reference, rows = build(spec, record, train_frame)
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifacts(str(write(reference, rows, Path(tmp))), artifact_path=ARTIFACT_PATH)
    return reference


def load(run_id: str) -> tuple[Reference, pd.DataFrame]:
    """The reference of the model logged by run `run_id` (the tracking URI must be set)."""
    import mlflow

    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=ARTIFACT_PATH)
    return read(Path(local))


class NoReference(LookupError):
    """There is nothing to compare with; the message says why."""


def load_alias(project: str, alias: str = "champion") -> tuple[str, Reference, pd.DataFrame]:
    """(version, record, rows) of the reference of the version `alias` points at."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(project, alias)
    except MlflowException:
        raise NoReference(f"no {alias} yet: nothing to compare") from None
    try:
        record, rows = load(str(version.run_id))
    except (MlflowException, OSError) as exc:
        raise NoReference(
            f"{alias} v{version.version} has no reference ({type(exc).__name__}; versions "
            "registered before references were kept): nothing to compare"
        ) from None
    return str(version.version), record, rows
