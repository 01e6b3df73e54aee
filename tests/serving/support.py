"""What the serving tests share: the quick models, the served-model record, HTTP helpers."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from components.core import train
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from tests.support.servers import ServerProcess

# One candidate per project keeps training to seconds: each registered project's first, except
# carvision's random forest (n_jobs=2), so that the server's single-threading of fitted
# estimators is exercised. A project registered in components.core.projects is served here
# without an edit.
CANDIDATE_OF = {"carvision": "random_forest"}
CANDIDATES = {
    name: CANDIDATE_OF.get(name, spec.candidates[0].name) for name, spec in PROJECTS.items()
}
LOGGED_VERSION = "7"
SAMPLED_RATE = 0.25
"""The share of requests the `sampled` server logs."""
"""The version the logging server reports (--model_version) and writes in its log."""
GUARDED_BODY_LIMIT = 64 * 1024
"""The guarded server's --max_request_bytes: small, so that the tests send small bodies."""
SLOW_LOAD_LIMIT_SECONDS = 300.0
SLOW_RELEASE = "slow-model.release"
"""Created under the models root by the test that watches the slow server finish loading."""

START_WAIT_SECONDS = 300.0
"""Generous: servers started along with the others of the session, on a busy machine."""


@dataclass(frozen=True)
class ApiToken:
    value: str
    path: Path

    @property
    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.value}"}


@dataclass
class Served:
    spec: ProjectSpec
    model_dir: Path
    model: Any
    test_frame: pd.DataFrame


def wait_for_file(path: str, limit: float) -> None:
    """Blocks until `path` exists (or `limit` seconds pass). Runs inside the server process."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)


class SlowToUnpickle:
    """Holds the server's model load until the test creates `release`: the load is slow for
    real, and stays slow for as long as the test needs, whatever ran before it."""

    def __init__(self, release: Path, limit: float = SLOW_LOAD_LIMIT_SECONDS) -> None:
        self.release, self.limit = release, limit

    def __reduce__(self) -> tuple[Any, tuple[str, float]]:
        return wait_for_file, (str(self.release), self.limit)


PLANTED_FAULT = ("minutes", 777.125)
"""A valid telecom field value on which the `failing` server's model raises. The synthetic
minutes have two decimals, so no training row has it."""


class _Wrapped:
    """A fitted classifier that predicts as `model`, with something planted around it."""

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def classes_(self) -> Any:
        return self.model.classes_

    @property
    def threshold(self) -> Any:
        return getattr(self.model, "threshold", 0.5)

    def _planted(self, frame: pd.DataFrame) -> None:
        raise NotImplementedError

    def predict_proba(self, frame: pd.DataFrame) -> Any:
        self._planted(frame)
        return self.model.predict_proba(frame)

    def predict(self, frame: pd.DataFrame) -> Any:
        self._planted(frame)
        return self.model.predict(frame)


class FailsOn(_Wrapped):
    """A fitted classifier that predicts as `model` except on rows where `column` equals
    `value`, where it raises: a fault inside the server that no client input could cause."""

    def __init__(self, model: Any, column: str, value: object) -> None:
        super().__init__(model)
        self.column, self.value = column, value

    def _planted(self, frame: pd.DataFrame) -> None:
        if (frame[self.column] == self.value).any():
            raise RuntimeError(f"planted fault: {self.column} = {self.value}")


class FailsShare(_Wrapped):
    """Raises on a one-row call whose row hashes into `share` of the hash space: that share of
    one-row requests fails, the same ones every time. Calls of several rows (saving the model,
    the server's warm-up) pass, so that the version registers and loads as a real one does."""

    def __init__(self, model: Any, share: float) -> None:
        super().__init__(model)
        self.share = share

    def _planted(self, frame: pd.DataFrame) -> None:
        if len(frame) != 1:
            return
        hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        if (hashed % 10_000 < self.share * 10_000).any():
            raise RuntimeError("planted fault: a share of the rows fail")


class SlowBy(_Wrapped):
    """Answers `seconds` later than `model` on every call."""

    def __init__(self, model: Any, seconds: float) -> None:
        super().__init__(model)
        self.seconds = seconds

    def _planted(self, frame: pd.DataFrame) -> None:
        time.sleep(self.seconds)


def quick_model(
    spec: ProjectSpec, candidate: str, train_frame: pd.DataFrame, seed: int = 42
) -> Any:
    narrowed = dataclasses.replace(spec, candidates=(spec.candidate(candidate),))
    return train.train(
        narrowed, train_frame, seed=seed, trials_per_candidate=1, time_budget_s=30
    ).model


def instances(spec: ProjectSpec, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON objects of the raw input fields; blanks as null, floats exactly."""
    rows = []
    for record in frame[spec.input_columns].to_dict("records"):
        rows.append(
            {
                str(k): None if isinstance(v, float) and math.isnan(v) else v
                for k, v in record.items()
            }
        )
    return rows


JSON = {"Content-Type": "application/json"}


def post(
    server: ServerProcess, path: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(server.url + path, content=content, headers=headers or JSON, timeout=60.0)


def predict(server: ServerProcess, rows: list[dict[str, Any]]) -> httpx.Response:
    return post(server, f"/v1/models/{server.project}:predict", {"instances": rows})


def v2_body(rows: list[dict[str, Any]], spec_columns: list[str]) -> dict[str, Any]:
    inputs = []
    for name in spec_columns:
        values = [row[name] for row in rows]
        text = any(isinstance(v, str) for v in values)
        inputs.append(
            {
                "name": name,
                "shape": [len(values)],
                "datatype": "BYTES" if text else "FP64",
                "data": values,
            }
        )
    return {"inputs": inputs}


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    """The value of the sample `name{labels...}` on the server's /metrics, 0 when absent."""
    text = httpx.get(server.url + "/metrics", timeout=10.0).text
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_until(check: Any, timeout: float, what: str, server: ServerProcess | None = None) -> Any:
    """Polls `check()` until it returns something other than None or False, which it returns;
    fails after `timeout` seconds naming `what` (and the server's log tail)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            tail = f"\n{server.log_tail()}" if server is not None else ""
            raise AssertionError(f"{what}: not within {timeout:g}s{tail}")
        time.sleep(0.2)
