"""Chores every step wrapper shares, said once and free of KFP: it takes any artifact with a
`path` and `metadata` (KFP's `Metrics`, `ClassificationMetrics`, ...)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from components.core.contracts import SourceInfo
from components.core.lineage import Provenance, file_sha256
from components.core.projects import get_spec

if TYPE_CHECKING:
    from components.core.evaluate import Assessment


class MetricsArtifact(Protocol):
    path: str
    metadata: dict[str, Any]

    def log_metric(self, metric: str, value: float) -> None: ...


class MetadataArtifact(Protocol):
    path: str
    metadata: dict[str, Any]


class FileArtifact(Protocol):
    uri: str
    path: str


def write_metadata(artifact: MetadataArtifact) -> None:
    """KFP's metrics artifacts write no file of their own, so a task that outputs one is never
    served from the cache; writing the metadata as its file makes it cacheable."""
    Path(artifact.path).write_text(json.dumps(artifact.metadata))


def write_metrics(
    artifact: MetricsArtifact, values: Mapping[str, float], prefix: str = "", digits: int = 6
) -> None:
    for name, value in values.items():
        artifact.log_metric(f"{prefix}{name}", round(float(value), digits))
    write_metadata(artifact)


def write_document(artifact: FileArtifact, document: str, suffix: str = ".html") -> None:
    """Writes a report or card as `<uri><suffix>`: browsers and the MLflow UI's previewer pick a
    renderer by extension, and `make run` prints these paths. KFP records the changed URI,
    locally and on a cluster (the launcher uploads from the URI the step hands back)."""
    if not artifact.uri.endswith(suffix):
        artifact.uri = artifact.uri + suffix
    Path(artifact.path).write_text(document)


def training_provenance(
    project: str, source_info_path: str, run_name: str, model_path: str = ""
) -> Provenance:
    """The header of a training run's reports: its data, its run and the fitted model file."""
    model = f"fitted pipeline, sha256 {file_sha256(model_path)[:12]}" if model_path else "none"
    return Provenance.of_training(project, SourceInfo.read(source_info_path), run_name, model)


def evaluate_step(
    project: str,
    model: FileArtifact,
    test: FileArtifact,
    source_info: FileArtifact,
    gate_overrides: str,
    run_name: str,
    metrics: MetricsArtifact,
    report: FileArtifact,
    evaluation: FileArtifact,
) -> Assessment:
    """What both evaluate steps do before the gate: score, write the figures, the report and
    the record. The caller then adds its task's own outputs and enforces the gate."""
    import joblib
    import pandas as pd

    from components.core import evaluate

    spec = get_spec(project)
    provenance = training_provenance(project, source_info.path, run_name, model.path)
    done = evaluate.assess(
        spec, joblib.load(model.path), pd.read_csv(test.path), provenance, gate_overrides
    )
    write_metrics(metrics, done.summary.metrics)
    write_document(report, done.html)
    done.summary.write(evaluation.path)
    print("\n".join(done.summary.gates))
    return done
