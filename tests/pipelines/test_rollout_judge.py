"""The rollout judge on real traffic through a real server: three planted challengers staged as
canaries against the telecom champion are rolled back (one failing 5% of its requests, one 20 ms
slower, one trained on labels flipped for the subscribers in the upper half of mb_used), an equal one goes shadow -> canary and
retires without a rollback, and a better one is promoted.

The champion is trained on the real users_behavior.csv when it is there (else on the synthetic
generator's rows, and the test says so); requests are one row each, drawn from its test split,
their labels written to a file the judge joins, as `make traffic` and `make judge` do. The judge
(components.core.judge.review) looks after every batch of requests, from the log the server
writes, and acts in a real SQLite registry the server follows every second.
"""

from __future__ import annotations

import csv
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from components.core import ingest, judge, rollout
from components.core.contracts import CHAMPION
from components.core.judge import Action, JudgePolicy
from components.core.projects import get_spec
from components.core.rollout import Stage
from components.core.tasks import Binary
from tests.serving.support import (
    CANDIDATES,
    JSON,
    FailsShare,
    SlowBy,
    instances,
    metric,
    quick_model,
    v2_body,
    wait_until,
)
from tests.support import data
from tests.support.models import register_dirs, save
from tests.support.servers import ServerProcess, launch

SPEC = get_spec("telecom")
POLICY = JudgePolicy(
    shadow_requests=200, canary_share=0.5, min_canary_requests=60, max_canary_requests=250
)
BATCH = 50
TASK = SPEC.task
assert isinstance(TASK, Binary)
DECISION, ULTRA = TASK.decision, TASK.labels[1]
MAX_REQUESTS = 6_000


@dataclass
class World:
    uri: str
    name: str
    versions: dict[str, str]
    pool: pd.DataFrame
    champion_model: Any
    real: bool
    labels: Path
    log_root: str = ""
    exposure: dict[str, dict[str, int]] = field(default_factory=dict)

    def __enter__(self) -> World:
        import mlflow

        self._previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        return self

    def __exit__(self, *_: object) -> None:
        import mlflow

        mlflow.set_tracking_uri(self._previous)


@pytest.fixture(scope="module")
def world(mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory) -> World:
    import mlflow

    root = tmp_path_factory.mktemp("rollout-judge")
    path = data.real_file(SPEC)
    frame, _ = ingest.load(SPEC, str(path) if path else "synthetic:3200")
    split = ingest.split(SPEC, frame, test_size=0.25, seed=42)
    candidate = CANDIDATES["telecom"]
    champion = quick_model(SPEC, candidate, split.train)
    flipped = split.train.copy()
    group = flipped["mb_used"] >= flipped["mb_used"].median()
    flipped.loc[group, SPEC.target] = 1 - flipped.loc[group, SPEC.target]
    models = {
        "champion": champion,
        "failing": FailsShare(champion, 0.05),
        "slower": SlowBy(champion, 0.02),
        "worse": quick_model(SPEC, candidate, flipped),
        "equal": quick_model(SPEC, candidate, split.train, seed=7),
        "weak": quick_model(SPEC, candidate, split.train.head(40)),
    }
    name = f"judge-{uuid.uuid4().hex[:8]}"
    dirs = [
        (kind, save(SPEC, model, split.train, root / kind, reference_frame=split.test))
        for kind, model in models.items()
    ]
    versions = {
        kind: v for kind, (v, _) in register_dirs(mlflow_uri, name, dirs, root / "runs").items()
    }
    mlflow.MlflowClient(mlflow_uri).set_registered_model_alias(name, CHAMPION, versions["champion"])
    labels = root / "labels.csv"
    labels.write_text(f"request_id,row,{SPEC.target}\n")
    pool = split.test.reset_index(drop=True)
    return World(mlflow_uri, name, versions, pool, champion, path is not None, labels)


@pytest.fixture(scope="module")
def server(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("rollout-judge-server")
    world.log_root = str(root / "inference")
    process = launch(
        "telecom",
        f"models:/{world.name}@{CHAMPION}",
        root / "server.log",
        inference_log=world.log_root,
        extra_args=["--refresh_interval", "1"],
        env={"MLFLOW_TRACKING_URI": world.uri},
    )
    try:
        process.wait_ready(timeout=300.0)
        yield process
    finally:
        process.stop()


def _staged_share(server: ServerProcess) -> tuple[str, str] | None:
    import httpx

    for line in httpx.get(server.url + "/metrics", timeout=10.0).text.splitlines():
        if line.startswith("mlops_staged_share{"):
            inside = line[line.index("{") + 1 : line.index("}")]
            labels = dict(part.split("=", 1) for part in inside.split(","))
            return labels["stage"].strip('"'), labels["version"].strip('"')
    return None


def roll_out(
    world: World, server: ServerProcess, kind: str, stage: Stage, policy: JudgePolicy = POLICY
) -> dict[str, Any]:
    """Stages `kind` in `stage` and sends labelled one-row requests, the judge looking after
    every batch, until it ends the rollout; what happened, as the clients saw it."""
    version = world.versions[kind]
    with world:
        rollout.stage(world.name, version, stage, share=policy.canary_share
                      if stage is Stage.CANARY else None, reason="test")  # fmt: skip
    wait_until(lambda: _staged_share(server) == (str(stage), version), 60.0,
               f"{kind} staged", server)  # fmt: skip
    rng = np.random.default_rng(int(version))
    rows = instances(SPEC, world.pool)
    truth = world.pool[SPEC.target].to_numpy()
    champion_right = (
        SPEC.task.model_output(world.champion_model, world.pool[SPEC.input_columns]) >= 0.5
    ) == (truth == 1)
    seen = {"requests": 0, "failed": 0, "by_challenger": 0, "worse_than_champion": 0}
    verdicts = []
    batch, stage_now, written = BATCH, stage, _written(server)
    # one client (building one costs milliseconds), a connection per request as `post` has
    client = httpx.Client(base_url=server.url, timeout=60.0, headers={"Connection": "close"})
    with world.labels.open("a", newline="") as handle, client:
        writer = csv.writer(handle, lineterminator="\n")
        while seen["requests"] < MAX_REQUESTS:
            for _ in range(batch):
                pick = int(rng.integers(len(rows)))
                request_id = f"{kind}-{uuid.uuid4().hex[:12]}"
                answer = client.post(
                    "/v2/models/telecom/infer",
                    content=json.dumps(v2_body([rows[pick]], list(rows[pick]))),
                    headers={**JSON, "X-Request-ID": request_id},
                )
                seen["requests"] += 1
                writer.writerow([request_id, 0, truth[pick]])
                if answer.status_code != 200:
                    seen["failed"] += 1
                    continue
                body = answer.json()
                if body["model_version"] == version:
                    seen["by_challenger"] += 1
                    [plan] = next(o["data"] for o in body["outputs"] if o["name"] == DECISION)
                    wrong = (plan == ULTRA) != (truth[pick] == 1)
                    seen["worse_than_champion"] += int(wrong and champion_right[pick])
            handle.flush()
            waited = time.perf_counter()
            # every request's row (and in shadow, the shadow's too) written
            expected = written + seen["requests"] * (2 if stage_now is Stage.SHADOW else 1)
            wait_until(lambda n=expected: _written(server) >= n, 30.0, "the batch logged", server)
            batch = min(int(batch * 1.5), 400)
            seen["wait_ms"] = seen.get("wait_ms", 0) + int((time.perf_counter() - waited) * 1000)
            looked = time.perf_counter()
            with world:
                verdict = judge.review(
                    SPEC, world.log_root, str(world.labels), policy, registered_name=world.name
                )
            assert verdict is not None
            seen["judge_ms"] = seen.get("judge_ms", 0) + int((time.perf_counter() - looked) * 1000)
            verdicts.append(verdict)
            if verdict.action in (Action.ROLLBACK, Action.PROMOTE, Action.RETIRE):
                break
            if verdict.action is Action.ADVANCE:
                stage_now = Stage.CANARY
                wait_until(lambda: _staged_share(server) == ("canary", version), 60.0,
                           f"{kind} in canary", server)  # fmt: skip
    world.exposure[kind] = seen
    return {"verdicts": verdicts, "seen": seen}


def _written(server: ServerProcess) -> float:
    return metric(server, "mlops_inference_log_records_total", project="telecom")


@pytest.mark.parametrize(
    ("kind", "check"),
    [("failing", "errors"), ("slower", "latency"), ("worse", "quality")],
)
def test_a_planted_challenger_in_canary_is_rolled_back(
    world: World, server: ServerProcess, kind: str, check: str
) -> None:
    done = roll_out(world, server, kind, Stage.CANARY)
    last = done["verdicts"][-1]
    assert last.action is Action.ROLLBACK, last.reason
    assert last.reason.startswith(f"rolled back: {check}"), last.reason
    with world:
        tags = rollout.registry_client().get_model_version(world.name, world.versions[kind]).tags
    assert tags[rollout.STAGE_TAG] == "rolled_back"
    assert tags[rollout.REASON_TAG] == last.reason
    wait_until(lambda: _staged_share(server) is None, 60.0, "the canary's end", server)
    seen = done["seen"]
    print(f"{kind} ({'real' if world.real else 'synthetic'} data): {seen}")
    if kind == "failing":
        assert 0 < seen["failed"] < 60
    else:
        assert seen["failed"] == 0


def test_an_equal_challenger_goes_through_shadow_and_canary_and_retires_unharmed(
    world: World, server: ServerProcess
) -> None:
    done = roll_out(world, server, "equal", Stage.SHADOW)
    actions = [v.action for v in done["verdicts"]]
    assert Action.ADVANCE in actions and Action.ROLLBACK not in actions, [
        v.reason for v in done["verdicts"]
    ]
    assert actions[-1] is Action.RETIRE, done["verdicts"][-1].reason
    assert done["seen"]["failed"] == 0
    print("equal", done["seen"])


def test_a_better_challenger_is_promoted_and_served(world: World, server: ServerProcess) -> None:
    with world:
        rollout.registry_client().set_registered_model_alias(
            world.name, CHAMPION, world.versions["weak"]
        )
    wait_until(
        lambda: metric(server, "mlops_model_info", version=world.versions["weak"]) == 1.0,
        60.0,
        "the weak champion served",
        server,
    )
    # the full model (the world's "champion" version) staged against the weak one, with the
    # budget to show it: its Brier score is about 0.05 lower, which a few hundred requests
    # per arm show only sometimes
    budget = replace(POLICY, max_canary_requests=2_000)
    done = roll_out(world, server, "champion", Stage.CANARY, budget)
    assert done["verdicts"][-1].action is Action.PROMOTE, done["verdicts"][-1].reason
    wait_until(
        lambda: metric(server, "mlops_model_info", version=world.versions["champion"]) == 1.0,
        60.0,
        "the promoted version served",
        server,
    )
