"""DuckDB, the engine for tables larger than memory, opened one way: a memory cap past which it
spills to disk, the cores this process may use, and no extension downloads (JSON, Parquet and CSV
are built in). Remote files it reads are copied to a local temporary file first, in blocks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

MEMORY_ENV = "MLOPS_ENGINE_MEMORY_MB"
DEFAULT_MEMORY_MB = 160
"""DuckDB's share of a step's memory; the rest is Python, pandas and the model. Past it DuckDB
spills to disk: `make bench-scale` measures the steps at 10 million rows within their limits."""
BLOCK = 1 << 20


def _memory_mb() -> int:
    given = os.environ.get(MEMORY_ENV, "")
    if not given:
        return DEFAULT_MEMORY_MB
    if not given.isdigit() or int(given) < 32:
        raise ValueError(f"{MEMORY_ENV} must be a whole number of MiB, at least 32; got {given!r}")
    return int(given)


def connect(spill_dir: str | Path, memory: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB capped at `memory` MiB (MEMORY_ENV, else DEFAULT_MEMORY_MB), using the
    cores this process may use, spilling to `spill_dir` (the caller's to remove)."""
    import duckdb

    threads = max(1, len(os.sched_getaffinity(0)))
    spill = str(spill_dir)
    con = duckdb.connect(
        config={
            "memory_limit": f"{memory or _memory_mb()}MB",
            "threads": threads,
            "temp_directory": spill,
            "preserve_insertion_order": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    return con


def is_local(source: str) -> bool:
    return "://" not in source or source.startswith("file://")


def local_path(source: str) -> Path:
    return Path(source.removeprefix("file://")).expanduser()


@contextlib.contextmanager
def local_copy(source: str, suffix: str = "") -> Iterator[Path]:
    """A local path holding the bytes of `source`: the file itself when it is local, else a
    temporary copy downloaded in blocks (http(s) or any fsspec URL) and removed afterwards."""
    if is_local(source):
        yield local_path(source)
        return
    import fsspec

    with tempfile.TemporaryDirectory(prefix="mlops-copy-") as folder:
        target = Path(folder) / f"copy{suffix}"
        remote = (
            urllib.request.urlopen(source, timeout=60)
            if source.startswith(("http://", "https://"))
            else fsspec.open(source, "rb").open()
        )
        with remote, target.open("wb") as local:
            shutil.copyfileobj(remote, local, BLOCK)
        yield target


def deliver(local: str | Path, destination: str) -> None:
    """Copies a finished file to `destination`, the way back of `local_copy`: a path (its folder
    created) or any fsspec URL, e.g. `s3://bucket/key` on a cluster's object store."""
    if is_local(destination):
        path = local_path(destination)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, path)
        return
    import fsspec

    fs, where = fsspec.core.url_to_fs(destination)
    fs.put_file(str(local), where)
