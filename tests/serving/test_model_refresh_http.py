"""A server on `models:/NAME@champion` follows the alias: a real SQLite registry with four
versions (two good, one whose pickle is corrupt, one whose stored file is not the one its
model_file_sha256 tag names) and a server process polling it every second."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from components.core.inference_log import read_window
from tests.serving.support import JSON, Served, instances, metric, post, predict, wait_until
from tests.support.models import register_dirs, replace_stored_model
from tests.support.servers import ServerProcess, launch

ALIAS = "champion"
SWAP_WAIT_SECONDS = 60.0


@dataclass
class Registry:
    uri: str
    name: str
    versions: dict[str, tuple[str, str]]
    """kind -> (version, run id)"""

    def move(self, kind: str) -> None:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=self.uri)
        client.set_registered_model_alias(self.name, ALIAS, self.versions[kind][0])


@pytest.fixture(scope="module")
def registry(
    mlflow_uri: str,
    tmp_path_factory: pytest.TempPathFactory,
    served: dict[str, Served],
    broken_model_dirs: dict[str, Path],
) -> Registry:

    runs = tmp_path_factory.mktemp("refresh-runs")
    name = f"refresh-{uuid.uuid4().hex[:8]}"
    telecom = served["telecom"].model_dir
    versions = register_dirs(
        mlflow_uri,
        name,
        [("first", telecom), ("second", telecom), ("corrupt", broken_model_dirs["corrupt"]),
         ("tampered", telecom)],
        runs,
    )  # fmt: skip
    replace_stored_model(mlflow_uri, name, versions["tampered"][0], broken_model_dirs["failing"])
    found = Registry(mlflow_uri, name, versions)
    found.move("first")
    return found


@pytest.fixture(scope="module")
def following(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    root = tmp_path_factory.mktemp("refresh")
    log_root = str(root / "inference")
    server = launch(
        "telecom",
        f"models:/{registry.name}@{ALIAS}",
        root / "server.log",
        inference_log=log_root,
        extra_args=["--refresh_interval", "1"],
        env={"MLFLOW_TRACKING_URI": registry.uri},
    )
    try:
        server.wait_ready(timeout=300.0)
        yield server, log_root
    finally:
        server.stop()


def served_models(server: ServerProcess) -> set[tuple[str, str]]:
    text = httpx.get(server.url + "/metrics", timeout=10.0).text
    pattern = r'mlops_model_info\{(?=[^}]*project="telecom")[^}]*\} 1\.0'
    found = set()
    for line in re.findall(pattern, text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        found.add((labels["version"], labels["run_id"]))
    return found


def test_the_server_follows_its_alias_and_no_prediction_fails_meanwhile(
    following: tuple[ServerProcess, str], registry: Registry, served: dict[str, Served]
) -> None:
    server, log_root = following
    s = served["telecom"]
    rows = instances(s.spec, s.test_frame.head(3))
    assert served_models(server) == {registry.versions["first"]}

    statuses: list[int] = []
    stop = threading.Event()

    def keep_predicting() -> None:
        while not stop.is_set():
            statuses.append(predict(server, rows).status_code)

    worker = threading.Thread(target=keep_predicting)
    worker.start()
    try:
        # versions that cannot load, or are not the file registered: counted and logged, the
        # first one keeps serving
        for count, kind in enumerate(("corrupt", "tampered"), start=1):
            registry.move(kind)
            wait_until(
                lambda count=count: (
                    metric(server, "mlops_model_refresh_failures_total", project="telecom") >= count
                ),
                SWAP_WAIT_SECONDS,
                f"the failed refresh to the {kind} version",
                server,
            )
            assert served_models(server) == {registry.versions["first"]}
        registry.move("second")
        wait_until(
            lambda: served_models(server) == {registry.versions["second"]},
            SWAP_WAIT_SECONDS,
            "the second version served",
            server,
        )
        answered = len(statuses)
        wait_until(lambda: len(statuses) >= answered + 5, 30.0, "predictions after the swap")
    finally:
        stop.set()
        worker.join()
    assert len(statuses) > 5
    assert set(statuses) == {200}
    log = server.log_tail(200_000)
    assert "UnpicklingError" in log
    tampered = registry.versions["tampered"][0]
    assert re.search(
        rf"cannot serve version {tampered} of models:/{registry.name}@{ALIAS}, still serving "
        rf"version {registry.versions['first'][0]}: ModelVerificationError: .* has sha256 "
        rf"[0-9a-f]{{64}}, expected [0-9a-f]{{64}} \(the model_file_sha256 tag of version "
        rf"{tampered}\)",
        log,
    )

    after = post(
        server, "/v1/models/telecom:predict", {"instances": rows}, {**JSON, "X-Request-ID": "after"}
    )
    assert after.status_code == 200

    def logged_version() -> set[str] | None:
        log = read_window(log_root, "telecom")
        mine = log[log["request_id"] == "after"] if not log.empty else log
        return set(mine["model_version"]) if len(mine) else None

    assert wait_until(logged_version, 20.0, "the log of the last request", server) == {
        registry.versions["second"][0]
    }
