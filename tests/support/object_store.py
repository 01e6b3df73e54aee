"""The stack's S3 API alone (benchmarks/stack.py: moto's server mode, standing in for S3 or
MinIO) on a free local port, for the tests of what the product writes to and reads from
`s3://`. Its keys are placeholders: no real credential exists here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.stack import Stack
from tests.support.stack import stack_on


@dataclass
class ObjectStore:
    stack: Stack

    @property
    def url(self) -> str:
        return self.stack.s3_url

    @property
    def env(self) -> dict[str, str]:
        """What an S3 client (botocore, so s3fs too) reads to reach this store."""
        return self.stack.s3_env()

    def use(self, monkeypatch: Any) -> None:
        """Points this process's S3 clients at this store: its env, and no s3fs instance kept
        from a store an earlier test ran (fsspec keeps one per set of arguments, not per env)."""
        use_store(self.stack, monkeypatch)

    def create_bucket(self, name: str) -> None:
        self.stack.s3_client().create_bucket(Bucket=name)

    def keys(self, bucket: str) -> list[str]:
        """Every object's key in `bucket`."""
        pages = self.stack.s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def stop(self) -> None:
        self.stack.down()


def use_store(stack: Stack, monkeypatch: Any) -> None:
    import s3fs

    for name, value in stack.s3_env().items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()


def run_object_store(root: Path) -> ObjectStore:
    """The S3 API on 127.0.0.1, ready."""
    return ObjectStore(stack_on(root / "stack", ["s3"]))
