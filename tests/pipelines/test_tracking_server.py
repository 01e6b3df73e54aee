"""The training pipeline, the registry and a model server against an MLflow tracking server over
HTTP, as on a cluster: `mlflow server` on PostgreSQL, its artifacts proxied into an S3 API (the
stack of benchmarks/stack.py). The clients hold no S3 key: the model's files reach the object
store through the server, and come back the same way. PostgreSQL restarts under the
registration, and the tracking server restarts under a model server following its alias: every
prediction meanwhile is answered, and the alias is followed again once the server is back."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pytest
from kfp import local

from benchmarks.stack import MLFLOW_BUCKET, Stack
from components.core.projects import PROJECTS
from pipelines.resources import for_local_run
from pipelines.training import PIPELINES
from tests.support.object_store import ObjectStore
from tests.support.servers import ServerProcess, launch
from tests.support.stack import stack_on

SPEC = PROJECTS["telecom"]
QUICK = {
    "trials_per_candidate": 1,
    "time_budget_s": 0.0,
    "gate_overrides": '{"accuracy": 0.6}',
    "explained_rows": 20,
}
pytestmark = pytest.mark.slow


@dataclass
class Tracking:
    stack: Stack
    store: ObjectStore

    @property
    def url(self) -> str:
        return self.stack.tracking_uri

    def restart(self, down_until: threading.Event) -> None:
        """Stops the tracking server, waits for `down_until`, starts it on the same port."""
        self.stack.stop("mlflow")
        down_until.wait(timeout=120)
        self.stack.up(only=["mlflow"])


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracking]:
    stack = stack_on(tmp_path_factory.mktemp("stack"), ["postgres", "s3", "mlflow"])
    try:
        yield Tracking(stack, ObjectStore(stack))
    finally:
        stack.down()


def served_version(server: ServerProcess) -> str | None:
    text = httpx.get(server.url + "/metrics", timeout=10.0).text
    found = re.search(r'mlops_model_info\{[^}]*version="(\d+)"[^}]*\} 1\.0', text)
    return found[1] if found else None


def wait_for(check: Callable[[], bool], what: str, server: ServerProcess) -> None:
    deadline = time.monotonic() + 90
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within 90 s\n{server.log_tail()}")
        time.sleep(0.3)


def restart_postgres_once_a_version_appears(
    tracking: Tracking, client: mlflow.MlflowClient, done: threading.Event, outage: dict[str, float]
) -> None:
    """Restarts the database behind the tracking server the moment a telecom version exists:
    the register step is then between creating its version and naming it."""
    while not done.is_set():
        if client.search_model_versions("name = 'telecom'"):
            started = time.monotonic()
            tracking.stack.stop("postgres")
            time.sleep(3.0)
            tracking.stack.up(only=["postgres"])
            outage["seconds"] = time.monotonic() - started
            return
        time.sleep(0.1)


def test_a_pipeline_registers_over_http_through_a_database_restart_and_a_server_loads_it(
    tracking: Tracking, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, store = tracking.url, tracking.store
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mlflow.set_tracking_uri(url)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "kfp"),
        enable_caching=False,
    )
    source = tmp_path / "users_behavior.csv"
    SPEC.make_synthetic(900, 11).to_csv(source, index=False)
    client = mlflow.MlflowClient(url)
    # PostgreSQL restarts under the registration: the clients' retries carry it through, and
    # the one version it adds is whole (digest, decision, aliases).
    done, outage = threading.Event(), {}
    watcher = threading.Thread(
        target=restart_postgres_once_a_version_appears, args=(tracking, client, done, outage)
    )
    watcher.start()
    try:
        task = for_local_run(PIPELINES["telecom"])(
            source=str(source), mlflow_tracking_uri=url, **QUICK
        )
    finally:
        done.set()
        watcher.join(timeout=120)
    assert outage, "the registration ended before PostgreSQL could be restarted under it"
    registration = json.loads(Path(task.outputs["registration"].path).read_text())
    assert registration["aliases"] == ["challenger", "champion"]
    assert [v.version for v in client.search_model_versions("name = 'telecom'")] == [
        registration["version"]
    ]
    version = client.get_model_version("telecom", registration["version"])
    assert version.tags["model_file_sha256"] == registration["model_file_sha256"]
    assert version.tags["decision"] == registration["decision"]

    champion = client.get_model_version_by_alias("telecom", "champion")
    assert champion.version == registration["version"]
    run = client.get_run(str(champion.run_id))
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    keys = store.keys(MLFLOW_BUCKET)
    assert any(key.endswith("/model.pkl") for key in keys), keys

    server = launch(
        "telecom",
        "models:/telecom@champion",
        tmp_path / "server.log",
        extra_args=["--refresh_interval", "1"],
        # MLflow's client retries a refused call for minutes by default; the poll asks again
        # next second anyway, and the test needs to see the outage within its time
        env={"MLFLOW_TRACKING_URI": url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
    )
    statuses: list[int] = []
    stop = threading.Event()
    rows = SPEC.make_synthetic(3, 5)[SPEC.input_columns].to_dict("records")

    def keep_predicting() -> None:
        while not stop.is_set():
            answer = httpx.post(
                f"{server.url}/v1/models/telecom:predict", json={"instances": rows}, timeout=30
            )
            statuses.append(answer.status_code)

    worker = threading.Thread(target=keep_predicting)
    try:
        server.wait_ready()
        assert served_version(server) == champion.version
        worker.start()
        # the tracking server goes away: the polls fail and say so, answers go on
        back = threading.Event()
        restarting = threading.Thread(target=tracking.restart, args=(back,))
        restarting.start()
        unreachable = "cannot read models:/telecom@champion from the registry"
        wait_for(lambda: unreachable in server.log_tail(200_000), "a failed alias poll", server)
        answered_while_down = len(statuses)
        back.set()
        restarting.join(timeout=180)
        # back on the same port: a new version under the alias is followed
        second = mlflow.register_model(str(champion.source), "telecom", tags=champion.tags)
        client.set_registered_model_alias("telecom", "champion", second.version)
        wait_for(lambda: served_version(server) == second.version, "the new champion", server)
    finally:
        stop.set()
        if worker.is_alive():
            worker.join(timeout=60)
        server.stop()
    assert answered_while_down > 0 and len(statuses) > answered_while_down
    assert set(statuses) == {200}, sorted(set(statuses))
