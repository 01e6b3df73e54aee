"""The stack `make stack` runs (benchmarks/stack.py), for the tests: in a folder of the test's
own, every service on a free local port, skipped with the Debian package's name where one is
missing (.ci/run installs them all)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from benchmarks.stack import PG_BIN, Ports, Receiver, Stack
from tests.support.servers import free_port

PACKAGES = {
    "postgres": ("postgresql", lambda: (PG_BIN / "postgres").is_file()),
    "pushgateway": ("prometheus-pushgateway", lambda: bool(shutil.which("prometheus-pushgateway"))),
    "alertmanager": (
        "prometheus-alertmanager",
        lambda: bool(shutil.which("prometheus-alertmanager")),
    ),
    "prometheus": ("prometheus", lambda: bool(shutil.which("prometheus"))),
}


def free_ports() -> Ports:
    return Ports(**{f.name: free_port() for f in fields(Ports)})


def stack_on(root: Path, only: Sequence[str], **options: Any) -> Stack:
    """A stack under `root` running `only`, ready; `options` go to Stack (rules, interval,
    receiver). The caller stops it (`down()`); PostgreSQL's data, in a folder of its own under
    /tmp, goes with the machine's temporary files."""
    for name in only:
        if name in PACKAGES and not PACKAGES[name][1]():
            pytest.skip(f"{name} is not installed (Debian package `{PACKAGES[name][0]}`; "
                        ".ci/run installs it)")  # fmt: skip
    # pytest's folders are root's alone; PostgreSQL runs as its own user
    postgres = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    # one MLflow worker: a test is its only client, and each worker costs an import of MLflow
    stack = Stack(root, free_ports(), postgres_root=postgres, mlflow_workers=1, **options)
    try:
        stack.up(only=only)
    except BaseException:
        stack.down()
        shutil.rmtree(postgres, ignore_errors=True)
        raise
    return stack


__all__ = ["Receiver", "Stack", "free_ports", "stack_on"]
