"""Rollout stages: what the tags mean, how requests split, and the moves the registry allows
(on a real SQLite registry)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from components.core import rollout
from components.core.contracts import CHAMPION
from components.core.inference_log import keeps
from components.core.rollout import RolloutError, Stage, Staged
from serving.metrics import VALUE_BUCKETS, observe_all


def test_a_version_is_staged_only_in_shadow_or_canary() -> None:
    assert Staged.from_tags("3", {}) is None
    assert Staged.from_tags("3", {rollout.STAGE_TAG: "rolled_back"}) is None
    assert Staged.from_tags("3", {rollout.STAGE_TAG: "champion"}) is None
    shadow = Staged.from_tags("3", {rollout.STAGE_TAG: "shadow", rollout.REASON_TAG: "new"})
    assert shadow == Staged("3", Stage.SHADOW, 0.0, "new")
    canary = Staged.from_tags("3", {rollout.STAGE_TAG: "canary", rollout.SHARE_TAG: "0.25"})
    assert canary is not None and canary.share == 0.25
    with pytest.raises(RolloutError, match="rollout_stage='blue' is none of shadow, canary"):
        Staged.from_tags("3", {rollout.STAGE_TAG: "blue"})
    with pytest.raises(RolloutError, match="rollout_share='a lot' is not a number"):
        Staged.from_tags("3", {rollout.STAGE_TAG: "canary", rollout.SHARE_TAG: "a lot"})
    for share in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(RolloutError, match="between 0 and 1"):
            Staged("3", Stage.CANARY, share)


def test_a_canary_answers_its_share_of_request_ids_always_the_same_ones() -> None:
    ids = [uuid.uuid4().hex for _ in range(20_000)]
    canary = Staged("4", Stage.CANARY, 0.1)
    chosen = [i for i in ids if canary.answers(i)]
    # binomial(20000, 0.1): sd 42 rows
    assert abs(len(chosen) - 2_000) < 200
    assert chosen == [i for i in ids if canary.answers(i)]
    # independent of the inference log's sample (the same ids, another hash)
    logged = {i for i in ids if keeps(i, 0.1)}
    assert abs(len(logged & set(chosen)) - 200) < 80
    assert not any(Staged("4", Stage.SHADOW).answers(i) for i in ids[:100])


def test_observe_all_counts_as_observe_does() -> None:
    values = np.concatenate([np.random.default_rng(0).uniform(0, 1, 500), [0.5, 1.0, 1e7, 2e7]])
    found = {}
    for name, record in (
        ("one", lambda h: [h.observe(float(v)) for v in values]),
        ("all", lambda h: observe_all(h, values)),
    ):
        registry = CollectorRegistry()
        histogram = Histogram(name, "x", ["p"], buckets=(0.1, 0.5, *VALUE_BUCKETS[14:]),
                              registry=registry)  # fmt: skip
        record(histogram.labels("p"))
        found[name] = {
            (s.name.split("_")[-1], s.labels.get("le")): s.value
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        }
    assert found["one"] == pytest.approx(found["all"])


@pytest.fixture()
def registry(mlflow_uri: str, tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A registered model of four versions (1 champion), on the session's SQLite store."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_uri)
    name = f"rollout-{uuid.uuid4().hex[:8]}"
    client = mlflow.MlflowClient()
    client.create_registered_model(name)
    versions = []
    for _ in range(4):
        made = client.create_model_version(name, str(tmp_path), run_id=None)
        versions.append(str(made.version))
    client.set_registered_model_alias(name, CHAMPION, versions[0])
    try:
        yield name, versions
    finally:
        mlflow.set_tracking_uri(previous)


def _current(name: str) -> Staged | None:
    """The staged version, its `since` checked (a time of this test) and then left out."""
    found = rollout.current(name)
    if found is None:
        return None
    since = dt.datetime.fromisoformat(found.since)
    assert dt.timedelta(0) <= dt.datetime.now(dt.UTC) - since < dt.timedelta(minutes=5)
    return dataclasses.replace(found, since="")


def _alias(name: str, alias: str) -> str | None:
    import mlflow

    found = mlflow.MlflowClient().get_registered_model(name).aliases.get(alias)
    return None if found is None else str(found)


def test_stages_move_in_the_registry_and_say_why(registry: tuple[str, list[str]]) -> None:
    import mlflow

    name, (champion, second, third, _) = registry
    assert rollout.current(name) is None
    rollout.stage(name, second, Stage.SHADOW, reason="offline: better on the test split")
    assert _current(name) == Staged(second, Stage.SHADOW, 0.0, "offline: better on the test split")
    rollout.stage(name, second, Stage.CANARY, share=0.2, reason="shadow agreed")
    assert _current(name) == Staged(second, Stage.CANARY, 0.2, "shadow agreed")
    # staging another version ends the first one's rollout, on the record
    rollout.stage(name, third, Stage.SHADOW, reason="newer")
    tags = mlflow.MlflowClient().get_model_version(name, second).tags
    assert tags[rollout.STAGE_TAG] == "rolled_back"
    assert tags[rollout.REASON_TAG] == f"replaced by version {third}"
    assert _current(name) == Staged(third, Stage.SHADOW, 0.0, "newer")
    rollout.stage(name, third, Stage.CHAMPION, reason="canary won")
    assert _alias(name, CHAMPION) == third and _alias(name, rollout.STAGED) is None
    assert rollout.current(name) is None
    assert mlflow.MlflowClient().get_model_version(name, third).tags[rollout.STAGE_TAG] == (
        "champion"
    )
    assert champion != third


def test_moves_the_registry_refuses_name_the_version_and_its_stage(
    registry: tuple[str, list[str]],
) -> None:
    name, (champion, second, third, fourth) = registry
    with pytest.raises(RolloutError, match=f"version {champion} of {name} is the champion"):
        rollout.stage(name, champion, Stage.SHADOW, reason="x")
    with pytest.raises(RolloutError, match=f"version {second} of {name} is not being rolled out: "
                       "it cannot move to champion"):  # fmt: skip
        rollout.stage(name, second, Stage.CHAMPION, reason="x")
    with pytest.raises(RolloutError, match="between 0 and 1"):
        rollout.stage(name, second, Stage.CANARY, share=1.5, reason="x")
    with pytest.raises(RolloutError, match="a share is a canary's; shadow takes none"):
        rollout.stage(name, second, Stage.SHADOW, share=0.5, reason="x")
    assert rollout.current(name) is None  # nothing moved
    rollout.stage(name, second, Stage.CANARY, reason="straight to canary")
    assert _current(name) == Staged(second, Stage.CANARY, rollout.DEFAULT_CANARY_SHARE,
                                           "straight to canary")  # fmt: skip
    rollout.stage(name, second, Stage.ROLLED_BACK, reason="5% errors")
    assert rollout.current(name) is None and _alias(name, CHAMPION) == champion
    with pytest.raises(RolloutError, match="not being rolled out: it cannot move to rolled_back"):
        rollout.stage(name, third, Stage.ROLLED_BACK, reason="x")
    with pytest.raises(RolloutError, match=f"{name} has no version 99"):
        rollout.stage(name, "99", Stage.SHADOW, reason="x")
    assert fourth


def test_the_stage_command_moves_a_version_and_names_a_refused_move(
    registry: tuple[str, list[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipelines import stage

    name, (champion, second, _, _) = registry
    # the command names a project; the fixture's registered model stands in for it
    monkeypatch.setattr(stage, "PROJECTS", {name: None})
    assert (
        stage.main(["--project", name, "--version", second, "--to", "canary", "--share", "0.3"])
        == 0
    )
    out = capsys.readouterr().out
    assert (
        f"{name}: version {second} in canary, answering 30% of the requests (moved by hand by"
        in out
    )
    assert stage.main(["--project", name, "--version", champion, "--to", "shadow"]) == 1
    assert f"stage: version {champion} of {name} is the champion already" in capsys.readouterr().err
    assert stage.main(["--project", name]) == 0
    assert f"version {second} in canary" in capsys.readouterr().out


def _log(root: Path, when: dt.datetime, rows: list[tuple[str, str, str, float, float]]) -> None:
    """Log records of (request id, stage, version, P(Ultra), call time in ms)."""
    from components.core.inference_log import record, write_part

    write_part(str(root), "telecom", [
        record(request_id, 0, when, "telecom", version, {"calls": 1.0},
               {"ultra_probability": p, "recommended_plan": "Ultra" if p >= 0.5 else "Smart"},
               stage=stage, latency_ms=ms)
        for request_id, stage, version, p, ms in rows
    ])  # fmt: skip


def test_the_judge_rolls_a_slow_canary_back_and_records_its_verdict(
    registry: tuple[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import mlflow

    from pipelines import judge

    name, (_, second, _, _) = registry
    rollout.stage(name, second, Stage.CANARY, share=0.5, reason="test")
    rng = np.random.default_rng(0)
    rows = [(f"c{i}", "champion", "1", float(rng.random()), float(rng.normal(2, 0.2)))
            for i in range(60)]  # fmt: skip
    rows += [(f"k{i}", "canary", second, float(rng.random()), float(rng.normal(30, 0.2)))
             for i in range(60)]  # fmt: skip
    _log(tmp_path, dt.datetime.now(dt.UTC), rows)
    args = ["--project", "telecom", "--registered-name", name, "--log-root", str(tmp_path)]
    assert judge.main(args) == 0
    out = capsys.readouterr().out
    assert "telecom canary: rollback: rolled back: latency worse than the champion's" in out
    tags = mlflow.MlflowClient().get_model_version(name, second).tags
    assert tags[rollout.STAGE_TAG] == "rolled_back"
    verdict = json.loads(tags[rollout.VERDICT_TAG])
    assert verdict["action"] == "rollback" and verdict["challenger_requests"] == 60
    assert judge.main(args) == 0
    assert "no version is being rolled out" in capsys.readouterr().out


def test_a_promotion_that_needs_approval_waits_for_a_person(
    registry: tuple[str, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow

    from pipelines import judge, stage

    name, (champion, second, _, _) = registry
    rollout.stage(name, second, Stage.CANARY, share=0.5, reason="test")
    rng = np.random.default_rng(1)
    truth = rng.random(400) < 0.5
    # the champion guesses; the canary knows
    rows = [(f"c{i}", "champion", "1", float(rng.random()), 2.0) for i in range(200)]
    rows += [(f"k{i}", "canary", second, 0.9 if truth[200 + i] else 0.1, 2.0) for i in range(200)]
    _log(tmp_path, dt.datetime.now(dt.UTC), rows)
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,row,is_ultra\n" + "".join(
        f"{request_id},0,{int(truth[i])}\n" for i, (request_id, *_) in enumerate(rows)
    ))  # fmt: skip
    args = ["--project", "telecom", "--registered-name", name, "--log-root", str(tmp_path),
            "--labels", str(labels), "--approval", "required"]  # fmt: skip
    assert judge.main(args) == 0
    assert "canary: promote: promoted: quality (Brier score) better" in capsys.readouterr().out
    assert _alias(name, CHAMPION) == champion  # held
    waiting = rollout.awaiting(name, second)
    assert waiting.startswith("promoted: quality (Brier score) better")
    monkeypatch.setattr(stage, "PROJECTS", {name: None})
    assert stage.main(["--project", name, "--version", second, "--approve"]) == 0
    assert _alias(name, CHAMPION) == second
    tags = mlflow.MlflowClient().get_model_version(name, second).tags
    assert rollout.AWAITING_TAG not in tags
    assert tags[rollout.REASON_TAG].startswith("approved by ")
    assert f"(the judge: {waiting})" in tags[rollout.REASON_TAG]
