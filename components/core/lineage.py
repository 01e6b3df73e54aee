"""Where a report, a model card or a model version comes from: the facts every one of them
carries in the same words (project, data kind, source and hash, model, run, date, code)."""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from components.core.contracts import DataSource

CODE_VERSION_ENV = "MLOPS_CODE_VERSION"
"""Set in the image at build time (no git there); a checkout asks git."""

NOT_REGISTERED = "not registered yet: the register step assigns it"


@functools.cache
def code_version() -> str:
    """The code's commit (`-dirty` when a checkout has uncommitted changes), or "unknown"."""
    stamped = os.environ.get(CODE_VERSION_ENV, "").strip()
    if stamped:
        return stamped
    root = Path(__file__).resolve().parents[2]
    try:
        found = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return found.stdout.strip() or "unknown"


def utc_now() -> datetime:
    """The time, in UTC: every record, log row and page of the platform stamps it."""
    return datetime.now(UTC)


def utc_stamp() -> str:
    """The time as a page shows it, to the minute."""
    return utc_now().strftime("%Y-%m-%d %H:%M UTC")


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read a megabyte at a time (model files, batch inputs, graphs)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_kind(synthetic: bool | None) -> str:
    """The badge: REAL or SYNTHETIC data; None where a page is about served traffic."""
    if synthetic is None:
        return "SERVED DATA"
    return "SYNTHETIC DATA" if synthetic else "REAL DATA"


def _describe_source(source: DataSource) -> str:
    return f"{source.source} (sha256 {source.sha256[:12]}, {source.rows:,} rows after cleaning)"


@dataclass(frozen=True)
class Provenance:
    """The header of a report: what it is about and where every figure in it comes from."""

    project: str
    synthetic: bool | None
    """True for the synthetic generator's data; None for served traffic."""
    data: str
    model: str
    run: str
    notice: str = ""
    """The SYNTHETIC label's full sentence, shown under the header."""
    model_version: str = NOT_REGISTERED
    created: str = ""
    code: str = ""

    @property
    def kind(self) -> str:
        return data_kind(self.synthetic)

    def facts(self) -> list[tuple[str, str]]:
        return [
            ("project", self.project),
            ("data", self.data),
            ("model", self.model),
            ("model version", self.model_version),
            ("run", self.run or "not given"),
            ("created", self.created or utc_stamp()),
            ("code", self.code or code_version()),
        ]

    @staticmethod
    def of_training(
        project: str, source: DataSource, run: str, model: str, version: str = NOT_REGISTERED
    ) -> Provenance:
        return Provenance(
            project=project,
            synthetic=source.synthetic,
            data=_describe_source(source),
            model=model,
            run=run,
            notice=source.notice,
            model_version=version,
        )
