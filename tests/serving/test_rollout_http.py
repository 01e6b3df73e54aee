"""A server following `models:/NAME@champion` serves a staged version beside it, as the
registry says (components.core.rollout): a canary answering its share of the request ids, a
shadow scoring a copy of every request off the request path, and a failing canary whose
failures stay its own. A real SQLite registry and a real server process polling it every second."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from components.core import rollout
from components.core.contracts import CHAMPION
from components.core.inference_log import read_window
from components.core.rollout import Stage, routes_to_canary
from tests.serving.support import (
    JSON,
    PLANTED_FAULT,
    Served,
    instances,
    metric,
    post,
    v2_body,
    wait_until,
)
from tests.support.models import register_dirs
from tests.support.servers import ServerProcess, launch

STAGE_WAIT_SECONDS = 60.0


@dataclass
class Registry:
    uri: str
    name: str
    versions: dict[str, str]
    """kind -> version"""

    def stage(self, kind: str, to: Stage, share: float | None = None) -> None:
        import mlflow

        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        try:
            rollout.stage(self.name, self.versions[kind], to, share=share, reason=f"test: {to}")
        finally:
            mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def registry(
    mlflow_uri: str,
    tmp_path_factory: pytest.TempPathFactory,
    served: dict[str, Served],
    broken_model_dirs: dict[str, Path],
) -> Registry:
    import mlflow

    name = f"rollout-{uuid.uuid4().hex[:8]}"
    telecom = served["telecom"].model_dir
    registered = register_dirs(
        mlflow_uri,
        name,
        [("champion", telecom), ("equal", telecom), ("failing", broken_model_dirs["failing"])],
        tmp_path_factory.mktemp("rollout-runs"),
    )
    versions = {kind: version for kind, (version, _) in registered.items()}
    mlflow.MlflowClient(mlflow_uri).set_registered_model_alias(name, CHAMPION, versions["champion"])
    return Registry(mlflow_uri, name, versions)


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[ServerProcess, str]
]:  # fmt: skip
    root = tmp_path_factory.mktemp("rollout")
    log_root = str(root / "inference")
    process = launch(
        "telecom",
        f"models:/{registry.name}@{CHAMPION}",
        root / "server.log",
        inference_log=log_root,
        extra_args=["--refresh_interval", "1"],
        env={"MLFLOW_TRACKING_URI": registry.uri},
    )
    try:
        process.wait_ready(timeout=300.0)
        yield process, log_root
    finally:
        process.stop()


def staged_share(server: ServerProcess, stage: str, version: str) -> float | None:
    """The server's mlops_staged_share for this stage and version; None when it has none."""
    text = httpx.get(server.url + "/metrics", timeout=10.0).text
    found = re.search(
        rf'^mlops_staged_share\{{project="telecom",stage="{stage}",version="{version}"\}} (\S+)$',
        text,
        re.MULTILINE,
    )
    return None if found is None else float(found.group(1))


def staged_as(server: ServerProcess, stage: str, version: str, share: float) -> None:
    wait_until(
        lambda: staged_share(server, stage, version) == share,
        STAGE_WAIT_SECONDS,
        f"version {version} staged in {stage}",
        server,
    )


def infer(server: ServerProcess, rows: list[dict], request_id: str) -> httpx.Response:
    body = v2_body(rows, list(rows[0]))
    return post(server, "/v2/models/telecom/infer", body, {**JSON, "X-Request-ID": request_id})


def logged(log_root: str, ids: set[str], rows: int) -> pd.DataFrame:
    """The log's rows of these requests once `rows` of them are written."""

    def found() -> pd.DataFrame | None:
        log = read_window(log_root, "telecom")
        mine = log[log["request_id"].isin(ids)] if len(log) else log
        return mine if len(mine) >= rows else None

    return wait_until(found, 30.0, f"{rows} logged rows")


def test_a_canary_answers_its_share_of_request_ids_and_the_log_names_it(
    server: tuple[ServerProcess, str], registry: Registry, served: dict[str, Served]
) -> None:
    process, log_root = server
    rows = instances(served["telecom"].spec, served["telecom"].test_frame.head(2))
    registry.stage("equal", Stage.CANARY, share=0.5)
    staged_as(process, "canary", registry.versions["equal"], 0.5)

    ids = [f"canary-{i}" for i in range(40)]
    answered = {}
    for request_id in ids:
        response = infer(process, rows, request_id)
        assert response.status_code == 200, response.text
        answered[request_id] = response.json()["model_version"]
    expected = {
        i: registry.versions["equal"] if routes_to_canary(i, 0.5) else registry.versions["champion"]
        for i in ids
    }
    assert answered == expected
    assert 8 < sum(v == registry.versions["equal"] for v in answered.values()) < 32
    # sticky: the same id, the same version
    again = infer(process, rows, ids[0]).json()["model_version"]
    assert again == answered[ids[0]]

    log = logged(log_root, set(ids), 2 * len(ids))
    by_request = log.groupby("request_id").agg(stage=("stage", "unique"),
                                               version=("model_version", "unique"))  # fmt: skip
    for request_id in ids:
        canary = answered[request_id] == registry.versions["equal"]
        assert list(by_request.loc[request_id, "stage"]) == ["canary" if canary else "champion"]
        assert list(by_request.loc[request_id, "version"]) == [answered[request_id]]
    canary_rows = 2 * sum(v == registry.versions["equal"] for v in answered.values())
    assert metric(process, "mlops_arm_rows_total", stage="canary",
                  version=registry.versions["equal"]) >= canary_rows  # fmt: skip


def test_a_shadow_scores_every_request_and_answers_none(
    server: tuple[ServerProcess, str], registry: Registry, served: dict[str, Served]
) -> None:
    process, log_root = server
    rows = instances(served["telecom"].spec, served["telecom"].test_frame.head(3))
    registry.stage("equal", Stage.SHADOW)
    staged_as(process, "shadow", registry.versions["equal"], 0.0)

    ids = {f"shadow-{i}" for i in range(20)}
    for request_id in sorted(ids):
        response = infer(process, rows, request_id)
        assert response.status_code == 200
        assert response.json()["model_version"] == registry.versions["champion"]
    log = logged(log_root, ids, 2 * 3 * len(ids))
    champion = log[log["stage"] == "champion"].set_index(["request_id", "row"]).sort_index()
    shadow = log[log["stage"] == "shadow"].set_index(["request_id", "row"]).sort_index()
    assert len(champion) == len(shadow) == 3 * len(ids)
    assert set(shadow["model_version"]) == {registry.versions["equal"]}
    # the same model: every shadow answer agrees with the champion's, row by row
    assert champion.index.equals(shadow.index)
    assert (champion["output.recommended_plan"] == shadow["output.recommended_plan"]).all()
    assert metric(process, "mlops_arm_rows_total", stage="shadow",
                  version=registry.versions["equal"]) >= 3 * len(ids)  # fmt: skip


def test_a_failing_canary_fails_only_its_own_requests_until_it_is_rolled_back(
    server: tuple[ServerProcess, str], registry: Registry, served: dict[str, Served]
) -> None:
    process, _ = server
    column, value = PLANTED_FAULT
    rows = instances(served["telecom"].spec, served["telecom"].test_frame.head(1))
    rows[0][column] = value
    registry.stage("failing", Stage.CANARY, share=0.5)
    staged_as(process, "canary", registry.versions["failing"], 0.5)

    ids = [f"failing-{i}" for i in range(30)]
    statuses = {i: infer(process, rows, i).status_code for i in ids}
    assert statuses == {i: 500 if routes_to_canary(i, 0.5) else 200 for i in ids}
    failed = sum(status == 500 for status in statuses.values())
    assert metric(process, "mlops_arm_errors_total", stage="canary",
                  version=registry.versions["failing"]) == failed  # fmt: skip

    registry.stage("failing", Stage.ROLLED_BACK)
    wait_until(
        lambda: "mlops_staged_share{" not in httpx.get(process.url + "/metrics").text,
        STAGE_WAIT_SECONDS,
        "the canary's end",
        process,
    )
    assert {infer(process, rows, i).status_code for i in ids} == {200}
