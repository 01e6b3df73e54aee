"""Chores every step wrapper shares, said once and free of KFP: it takes any artifact with a
`path` and `metadata` (KFP's `Metrics`, `ClassificationMetrics`, ...)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from components.core.contracts import SourceInfo


class MetricsArtifact(Protocol):
    path: str
    metadata: dict[str, Any]

    def log_metric(self, metric: str, value: float) -> None: ...


class MetadataArtifact(Protocol):
    path: str
    metadata: dict[str, Any]


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


def synthetic_notice(source_info_path: str) -> str:
    """The SYNTHETIC label of the run's data ("" for real data), for every report's banner."""
    return SourceInfo.read(source_info_path).notice


def file_sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
