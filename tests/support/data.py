"""Where the real datasets are, for the tests and the benchmarks: one rule.

`DATA_DIR` from the environment when it is set, else `shared/data` next to the repository
(`<repository>/../shared/data`, found from this file, whatever the working directory).
"""

from __future__ import annotations

import os
from pathlib import Path

from components.core.spec import ProjectSpec

REPO_ROOT = Path(__file__).resolve().parents[2]


def real_data_dir() -> Path:
    """The folder with the three real files (which may be absent)."""
    configured = os.environ.get("DATA_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


def real_file(spec: ProjectSpec) -> Path | None:
    """The project's real file, or None when it is not there."""
    path = real_data_dir() / spec.data_file
    return path if path.is_file() else None


def missing(spec: ProjectSpec) -> str:
    """Why the project's real file cannot be used: the path looked at, and how to point elsewhere."""
    return (
        f"real data not available: {real_data_dir() / spec.data_file} is absent "
        f"(set DATA_DIR to the folder with {spec.data_file})"
    )
