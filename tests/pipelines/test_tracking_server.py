"""The training pipeline, the registry and a model server against an MLflow tracking server over
HTTP, as on a cluster: `mlflow server` on PostgreSQL, its artifacts proxied into an S3 API
(tests/support/stack.py). The clients hold no S3 key: the model's files reach the object store
through the server, and come back the same way."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
from kfp import local

from components.core.projects import PROJECTS
from pipelines.resources import for_local_run
from pipelines.training import PIPELINES
from tests.support.object_store import ObjectStore, run_object_store
from tests.support.servers import ServerProcess, launch
from tests.support.stack import Postgres, run_mlflow_server, run_postgres

SPEC = PROJECTS["telecom"]
ARTIFACTS = "mlflow-artifacts"
QUICK = {
    "trials_per_candidate": 1,
    "time_budget_s": 0.0,
    "gate_overrides": '{"accuracy": 0.6}',
    "explained_rows": 20,
}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ObjectStore]]:
    root = tmp_path_factory.mktemp("stack")
    store = run_object_store(root)
    stopping: list[ObjectStore | Postgres | ServerProcess] = [store]
    try:
        store.create_bucket(ARTIFACTS)
        postgres = run_postgres(root)
        stopping.append(postgres)
        postgres.create_database("mlflow")
        server = run_mlflow_server(root, postgres.uri("mlflow"), store, ARTIFACTS)
        stopping.append(server)
        yield server.url, store
    finally:
        for part in reversed(stopping):
            part.stop()


def test_a_pipeline_registers_over_http_and_a_server_loads_the_champion_from_it(
    tracking: tuple[str, ObjectStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, store = tracking
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
    task = for_local_run(PIPELINES["telecom"])(source=str(source), mlflow_tracking_uri=url, **QUICK)
    registration = json.loads(Path(task.outputs["registration"].path).read_text())
    assert registration["aliases"] == ["challenger", "champion"]

    client = mlflow.MlflowClient(url)
    champion = client.get_model_version_by_alias("telecom", "champion")
    assert champion.version == registration["version"]
    run = client.get_run(champion.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    keys = store.keys(ARTIFACTS)
    assert any(key.endswith("/model.pkl") for key in keys), keys

    server = launch(
        "telecom",
        "models:/telecom@champion",
        tmp_path / "server.log",
        env={"MLFLOW_TRACKING_URI": url},
    )
    try:
        server.wait_ready()
        rows = SPEC.make_synthetic(3, 5)[SPEC.input_columns].to_dict("records")
        answer = httpx.post(
            f"{server.url}/v1/models/telecom:predict", json={"instances": rows}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 3
    finally:
        server.stop()
