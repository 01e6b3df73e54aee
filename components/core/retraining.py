"""Retraining a champion that monitoring flagged.

The challenger learns from the champion's own training data, re-read from the source its version
records and checked against the recorded hash, plus the newly labelled rows of the window. Part
of those new rows is held out: the challenger must beat the champion there as well as on the old
test split before it is promoted (see `registry.decide`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from components.core.contracts import (
    CHAMPION,
    MonitoringSummary,
    SourceInfo,
    trained_on_synthetic,
)
from components.core.ingest import (
    SYNTHETIC_NOTICE,
    SYNTHETIC_PREFIX,
    clean,
    ingest,
    parse_csv,
    split,
)
from components.core.spec import ProjectSpec
from components.core.validate import DataValidationError, frame_violations

HOLDOUT_SHARE = 0.5
"""Share of the newly labelled rows kept out of training to judge challenger and champion."""
MIN_LABELLED_ROWS = 200
"""Fewer newly labelled rows than this and a retrained model could not be judged on new data."""

RECORDED_PARAMS = ("source", "source_sha256", "seed", "test_size")
TRAINING_DATA = "training_data"
"""Artifact folder (and run tag) of a retrained model's exact training and test data: its source
is not one file, so the next retraining re-reads these, checked against the same hash."""
DATA_FILES = ("train.csv", "test.csv")


class RetrainingError(ValueError):
    """Retraining cannot start; the message names what is missing or changed."""


@dataclass(frozen=True)
class ChampionData:
    """Where the champion's training data came from, as its MLflow run records it."""

    version: str
    source: str
    sha256: str
    seed: int
    test_size: float
    run_id: str
    logged_data: bool
    """Its training and test data are artifacts of its run (it was itself retrained)."""
    synthetic: bool
    """It learnt from the synthetic generator's data (its version or run says so)."""


@dataclass
class RetrainingData:
    train: pd.DataFrame
    """The champion's training split plus the new labelled rows not held out."""
    test: pd.DataFrame
    """The champion's own test split, unchanged."""
    holdout: pd.DataFrame
    """New labelled rows neither model has seen."""
    info: SourceInfo


def replayable_source(recorded: str) -> str:
    """The source string ingest reads again: a synthetic source is recorded as
    `synthetic:ROWS (seed N)`, which regenerates from `synthetic:ROWS` and the run's seed."""
    if recorded.startswith(SYNTHETIC_PREFIX + ":"):
        return recorded.split(" ", 1)[0]
    return recorded


def champion_data(spec: ProjectSpec) -> ChampionData:
    """The champion's version and the source, hash, seed and split its run recorded (MLflow
    tracking URI set by the caller)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        version = client.get_model_version_by_alias(spec.name, CHAMPION)
    except MlflowException as exc:
        raise RetrainingError(f"{spec.name} has no champion: there is nothing to retrain") from exc
    if not version.run_id:
        raise RetrainingError(
            f"{spec.name} champion v{version.version} has no MLflow run: its training data is "
            "unknown; retrain it with `make run` instead"
        )
    run = client.get_run(version.run_id)
    params = run.data.params
    missing = [name for name in RECORDED_PARAMS if name not in params]
    if missing:
        raise RetrainingError(
            f"{spec.name} champion v{version.version}: its run does not record {missing}, so "
            "its training data cannot be re-read; retrain it with `make run` instead"
        )
    return ChampionData(
        version=str(version.version),
        source=params["source"],
        sha256=params["source_sha256"],
        seed=int(params["seed"]),
        test_size=float(params["test_size"]),
        run_id=str(version.run_id),
        logged_data=run.data.tags.get(TRAINING_DATA) == TRAINING_DATA,
        synthetic=trained_on_synthetic(version.tags or {}, lambda: run.data.tags),
    )


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """How retraining data is written, logged and hashed: the same bytes every time."""
    return frame.to_csv(index=False).encode()


def data_sha256(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def champion_splits(
    spec: ProjectSpec, champion: ChampionData, source: str
) -> tuple[pd.DataFrame, pd.DataFrame, SourceInfo]:
    """The champion's own train and test rows, and the record of how they were read, whose
    sha256 is the hash they have now (to compare with the one recorded)."""
    if champion.logged_data and not source:
        import mlflow

        folder = Path(
            mlflow.artifacts.download_artifacts(run_id=champion.run_id, artifact_path=TRAINING_DATA)
        )
        raw = [(folder / name).read_bytes() for name in DATA_FILES]
        train, test = (
            parse_csv(part, f"{champion.source} ({name})")
            for part, name in zip(raw, DATA_FILES, strict=True)
        )
        info = SourceInfo(
            source=f"training data of {spec.name} v{champion.version} (run {champion.run_id})",
            synthetic=champion.synthetic,
            rows=len(train) + len(test),
            columns=train.shape[1],
            sha256=data_sha256(*raw),
            removed_rows={},
            notice=SYNTHETIC_NOTICE if champion.synthetic else "",
            stratified=spec.task.stratified,
            train_rows=len(train),
            test_rows=len(test),
        )
        return train, test, info
    read_from = source or replayable_source(champion.source)
    old, info = ingest(spec, read_from, champion.seed, champion.test_size)
    return old.train, old.test, info


def labelled_rows(spec: ProjectSpec, window: pd.DataFrame) -> pd.DataFrame:
    """The window's rows whose ground truth has arrived, cleaned by the project's rules and
    checked against its schema."""
    if spec.target not in window.columns:
        return window.iloc[0:0]
    rows = window[window[spec.target].notna()][[*spec.input_columns, spec.target]]
    rows, _ = clean(spec, rows.reset_index(drop=True))
    violations = frame_violations(spec, rows, with_target=True)
    if violations:
        raise DataValidationError(f"{spec.name} newly labelled rows", violations)
    return rows


def like(rows: pd.DataFrame, template: pd.DataFrame) -> pd.DataFrame:
    """`rows` with `template`'s column types where the values allow it: labels that arrived
    beside missing ones read as floats, and 1.0 must not join a column of 1s."""
    rows = rows.copy()
    for column in rows.columns:
        with contextlib.suppress(TypeError, ValueError):
            rows[column] = rows[column].astype(template[column].dtype)
    return rows


def prepare(
    spec: ProjectSpec,
    window: pd.DataFrame,
    champion: ChampionData,
    *,
    source: str = "",
    window_label: str = "the monitoring window",
    holdout_share: float = HOLDOUT_SHARE,
    min_labelled_rows: int = MIN_LABELLED_ROWS,
) -> RetrainingData:
    """The champion's data re-read (from `source` when it moved; the hash must still match) with
    the window's labelled rows split into training and holdout."""
    new = labelled_rows(spec, window)
    if len(new) < min_labelled_rows:
        raise RetrainingError(
            f"{spec.name}: {len(new)} newly labelled rows in {window_label}; retraining needs at "
            f"least {min_labelled_rows} so that part of them can judge the challenger"
        )
    old_train, old_test, info = champion_splits(spec, champion, source)
    if info.sha256 != champion.sha256:
        raise RetrainingError(
            f"{spec.name} champion v{champion.version} was trained on {champion.source} with "
            f"sha256 {champion.sha256[:12]}; {info.source} now has sha256 {info.sha256[:12]}. "
            "Point `retrain_source` at the data the champion was trained on"
        )
    columns = [*spec.input_columns, spec.target]
    fresh = split(spec, like(new[columns], old_train[columns]), holdout_share, champion.seed)
    train = pd.concat([old_train[columns], fresh.train[columns]], ignore_index=True)
    test = old_test[columns].reset_index(drop=True)
    return RetrainingData(
        train=train,
        test=test,
        holdout=fresh.test[columns],
        info=SourceInfo(
            source=f"{info.source} + {len(fresh.train)} labelled rows from {window_label}",
            synthetic=champion.synthetic or info.synthetic,
            rows=len(train) + len(test),
            columns=len(columns),
            sha256=data_sha256(csv_bytes(train), csv_bytes(test)),
            removed_rows=info.removed_rows,
            notice=info.notice,
            stratified=spec.task.stratified,
            train_rows=len(train),
            test_rows=len(test),
        ),
    )


def version_tags(
    summary: MonitoringSummary,
    champion_version: str | None,
    before: dict[str, float],
    after: dict[str, float],
) -> dict[str, str]:
    """What a retrained version records about why it exists: the trigger, the window, and the
    primary metric of the champion (before) and the challenger (after) on each judging split."""
    return {
        "trigger": summary.reason[:5000],
        "trigger_window": summary.window,
        "monitoring_time": summary.time,
        "retrained_from": champion_version or "",
        "figures_before": json.dumps(before, sort_keys=True),
        "figures_after": json.dumps(after, sort_keys=True),
    }


@dataclass(frozen=True)
class Outcome:
    """What a monitoring run's retraining did, read back from the registry."""

    retrained: bool
    version: str | None
    """The version the retraining registered."""
    promoted: bool
    decision: str
    champion_after: str | None


def outcome(spec: ProjectSpec, monitoring_time: str) -> Outcome:
    """The version registered by the retraining of the monitoring run checked at
    `monitoring_time` (its version tag), and the champion now (MLflow tracking URI set by the
    caller)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        champion: str | None = str(client.get_model_version_by_alias(spec.name, CHAMPION).version)
    except MlflowException:
        champion = None
    try:
        versions = list(client.search_model_versions(f"name = '{spec.name}'"))
    except MlflowException:
        versions = []
    for version in versions:
        tags = version.tags or {}
        if tags.get("monitoring_time") == monitoring_time:
            number = str(version.version)
            return Outcome(True, number, champion == number, tags.get("decision", ""), champion)
    return Outcome(False, None, False, "", champion)
