"""The parts a cluster's MLflow has, on free local ports: PostgreSQL (Debian `postgresql`) and an
`mlflow server` on it that proxies its artifacts into an S3 API (tests/support/object_store.py).
PostgreSQL trusts connections here: it listens on 127.0.0.1 only, for one test's life."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.object_store import ObjectStore
from tests.support.servers import ServerProcess, free_port, start

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(command: Sequence[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the package's `postgres` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return list(command)


@dataclass
class Postgres:
    process: ServerProcess
    folder: Path

    @property
    def port(self) -> int:
        return self.process.port

    def uri(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        subprocess.run(
            [
                str(PG_BIN / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                name,
            ],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def run_postgres(log_root: Path) -> Postgres:
    """A fresh PostgreSQL cluster in a folder of its own under /tmp (the `postgres` user must
    reach it), listening on 127.0.0.1, ready."""
    if not (PG_BIN / "postgres").is_file():
        pytest.skip(
            "PostgreSQL is not installed (Debian package `postgresql`; .ci/run installs it)"
        )
    folder = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    subprocess.run(
        _as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    command = _as_postgres(
        [
            str(PG_BIN / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(folder),
        ]
    )
    process = start("postgres", command, log_root / "postgres.log", port, group=True)
    deadline = time.monotonic() + 60
    while True:
        ready = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        )
        if ready.returncode == 0:
            return Postgres(process, folder)
        if process.process.poll() is not None or time.monotonic() > deadline:
            process.stop()
            raise RuntimeError(f"PostgreSQL did not start:\n{process.log_tail()}")
        time.sleep(0.2)


def run_mlflow_server(
    log_root: Path, backend_uri: str, store: ObjectStore, bucket: str, port: int | None = None
) -> ServerProcess:
    """`mlflow server` on `backend_uri`, serving its artifacts from `s3://bucket` through its
    own proxy (clients see `mlflow-artifacts:` URIs and need no S3 keys), ready. `port`: a
    restart takes the port the clients know."""
    port = port or free_port()
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", backend_uri,
        "--artifacts-destination", f"s3://{bucket}",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = store.env | {"MLFLOW_S3_ENDPOINT_URL": store.url}
    log = log_root / f"mlflow-server-{time.monotonic_ns()}.log"
    return start("mlflow", command, log, port, env).ready_or_stopped(timeout=120.0, path="/health")
