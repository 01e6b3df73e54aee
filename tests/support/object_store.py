"""An S3 API on a free local port: moto's server mode (PyPI `moto[server]`, in the dev lock),
standing in for S3 or MinIO, for the tests of what the product writes to and reads from
`s3://`. Its keys are moto's placeholders: no real credential exists here."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.servers import ServerProcess, free_port, start

REGION = "us-east-1"


@dataclass
class ObjectStore:
    process: ServerProcess

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def env(self) -> dict[str, str]:
        """What an S3 client (botocore, so s3fs too) reads to reach this store."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "moto-placeholder",
            "AWS_SECRET_ACCESS_KEY": "moto-placeholder",
            "AWS_DEFAULT_REGION": REGION,
        }

    def _client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    def use(self, monkeypatch: Any) -> None:
        """Points this process's S3 clients at this store: its env, and no s3fs instance kept
        from a store an earlier test ran (fsspec keeps one per set of arguments, not per env)."""
        import s3fs

        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()

    def create_bucket(self, name: str) -> None:
        self._client().create_bucket(Bucket=name)

    def keys(self, bucket: str) -> list[str]:
        """Every object's key in `bucket`."""
        pages = self._client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def stop(self) -> None:
        self.process.stop()


def run_object_store(root: Path) -> ObjectStore:
    """A moto S3 server on 127.0.0.1, ready."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = start("s3", command, root / "moto.log", port)
    return ObjectStore(process.ready_or_stopped(timeout=60.0, path="/"))
