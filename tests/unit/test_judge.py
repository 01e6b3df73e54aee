"""The rollout judge on replayed traffic (benchmarks/rollout.py): planted faults are rolled
back, a better challenger is promoted, and an equal one is neither more often than the stated
rates. Synthetic arms and a small budget keep it fast; `make bench-rollout` replays the real
telecom models at the default policy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.rollout import Arm, replay, replays
from components.core import judge
from components.core.judge import Action, JudgePolicy, log_msprt
from components.core.projects import get_spec
from components.core.rollout import Stage

SPEC = get_spec("telecom")
POLICY = JudgePolicy(shadow_requests=400, canary_share=0.5, max_canary_requests=1_500)
POOL = 3_000


def _outputs(probability: np.ndarray) -> pd.DataFrame:
    task = SPEC.task
    return pd.DataFrame({f"output.{k}": v for k, v in task.columns(probability, 0.5).items()})


@pytest.fixture(scope="module")
def pool() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, a champion's P(Ultra), its call times): outcomes drawn from a known probability,
    the champion seeing it through noise."""
    rng = np.random.default_rng(1)
    truth_p = rng.beta(1.2, 2.5, POOL)
    target = (rng.random(POOL) < truth_p).astype(float)
    champion = np.clip(truth_p + rng.normal(0, 0.15, POOL), 0.001, 0.999)
    latency = rng.gamma(4.0, 0.4, 400)  # about 1.6 ms
    return target, champion, latency


def _arms(pool: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[Arm, np.ndarray]:
    target, champion, latency = pool
    return Arm("1", _outputs(champion), latency), target


def test_the_msprt_statistic_grows_with_evidence_and_vanishes_without_it() -> None:
    assert log_msprt(0.0, 1.0, 0.1) < 0  # no difference: the mixture ratio is below 1
    assert log_msprt(0.5, 0.01, 0.04) > math.log(1 / 0.05)
    assert log_msprt(0.5, 0.0, 0.04) == 0.0  # no variance yet: nothing to say
    # the same difference is more convincing on more rows (smaller variance)
    assert log_msprt(0.1, 0.001, 0.01) > log_msprt(0.1, 0.01, 0.01)


def test_an_equal_challenger_is_neither_rolled_back_nor_promoted_beyond_the_stated_rates(
    pool: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    champion, target = _arms(pool)
    rng = np.random.default_rng(2)
    # the same answers, its own call times from the same distribution
    equal = Arm("2", champion.outputs, rng.permutation(champion.latency_ms))
    found = replays(SPEC, target, champion, equal, POLICY, count=50, seed=3)
    assert len(found.outcomes) == 50
    assert found.rate(Action.ROLLBACK) <= POLICY.alpha_rollback
    assert found.rate(Action.PROMOTE) <= POLICY.alpha_promote
    assert found.rate(Action.RETIRE) >= 0.9


@pytest.mark.parametrize(("planted", "check"), [("failing", "errors"), ("worse", "quality")])
def test_a_planted_fault_is_rolled_back_in_shadow_before_any_client_sees_it(
    pool: tuple[np.ndarray, np.ndarray, np.ndarray], planted: str, check: str
) -> None:
    champion, target = _arms(pool)
    _, probability, latency = pool
    flipped = probability.copy()
    group = np.arange(POOL) % 4 == 0  # a quarter of the rows, as if one group's labels flipped
    flipped[group] = 1 - flipped[group]
    challenger = {
        "failing": Arm("2", champion.outputs, latency, error_rate=0.05),
        "worse": Arm("2", _outputs(flipped), latency),
    }[planted]
    for index in range(5):
        outcome = replay(SPEC, target, champion, challenger, POLICY, np.random.default_rng(index))
        assert outcome.action is Action.ROLLBACK, outcome.reason
        assert outcome.stage is Stage.SHADOW and outcome.bad_answers == 0
        assert outcome.reason.startswith(f"rolled back: {check}"), outcome.reason


def test_a_slower_challenger_passes_shadow_and_is_rolled_back_early_in_canary(
    pool: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    champion, target = _arms(pool)
    slower = Arm("2", champion.outputs, pool[2] + 20.0)
    for index in range(5):
        outcome = replay(SPEC, target, champion, slower, POLICY, np.random.default_rng(index))
        assert outcome.action is Action.ROLLBACK and outcome.stage is Stage.CANARY, outcome.reason
        assert outcome.reason.startswith("rolled back: latency"), outcome.reason
        # the latency test needs MIN_OBSERVATIONS canary requests; not many more
        assert judge.MIN_OBSERVATIONS <= outcome.bad_answers < 80


def test_a_shadow_slower_only_off_the_request_path_is_not_rolled_back() -> None:
    rng = np.random.default_rng(6)
    outputs = _outputs(rng.random(400))
    rows = []
    for stage, version, latency in (("champion", "1", 1.0), ("shadow", "2", 40.0)):
        frame = outputs.assign(request_id=[f"r{i}" for i in range(400)], row=0, stage=stage,
                               model_version=version, error=None,
                               latency_ms=rng.gamma(4.0, latency / 4.0, 400))  # fmt: skip
        rows.append(frame)
    verdict = judge.judge(SPEC, pd.concat(rows, ignore_index=True), Stage.SHADOW, "2", POLICY)
    assert verdict.action is Action.ADVANCE, verdict.reason
    [latency] = [c for c in verdict.checks if c.name == judge.SHADOW_LATENCY]
    assert latency.challenger > latency.champion + 30 and latency.verdict == ""


def test_a_planted_fault_staged_straight_to_canary_is_rolled_back_after_few_bad_answers(
    pool: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    champion, target = _arms(pool)
    failing = Arm("2", champion.outputs, pool[2], error_rate=0.05)
    straight = JudgePolicy(shadow_requests=0, canary_share=0.1, max_canary_requests=1_500)
    outcome = replay(SPEC, target, champion, failing, straight, np.random.default_rng(0))
    assert outcome.action is Action.ROLLBACK and outcome.stage is Stage.CANARY
    # 5% of its requests failed until the test was sure: a handful, not hundreds
    assert 0 < outcome.bad_answers < 60


def test_a_better_challenger_is_promoted_from_canary(
    pool: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    target, probability, latency = pool
    rng = np.random.default_rng(4)
    weak = Arm("1", _outputs(np.clip(probability + rng.normal(0, 0.3, POOL), 0.001, 0.999)),
               latency)  # fmt: skip
    better = Arm("2", _outputs(probability), latency)
    found = replays(SPEC, target, weak, better, POLICY, count=5, seed=5)
    assert {o.action for o in found.outcomes} == {Action.PROMOTE}
    assert all(o.stage is Stage.CANARY for o in found.outcomes)


def test_the_verdict_names_every_figure_and_a_shadow_reports_agreement(
    pool: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    from benchmarks.rollout import _stage_rows

    champion, target = _arms(pool)
    rows = _stage_rows(SPEC, target, champion, champion, Stage.SHADOW, 300, 0.5,
                       np.random.default_rng(0), 1.0)  # fmt: skip
    rows["model_version"] = np.where(rows["stage"] == "shadow", "2", "1")
    verdict = judge.judge(SPEC, rows, Stage.SHADOW, "2", POLICY)
    assert verdict.action is Action.HOLD and verdict.agreement == 1.0
    assert [c.name for c in verdict.checks] == ["errors", judge.SHADOW_LATENCY,
                                                "quality (Brier score)", "mean output"]  # fmt: skip
    assert "in shadow: 300 of 400 requests" in verdict.reason
    assert f"{judge.SHADOW_LATENCY}: challenger" in verdict.reason
    assert " ms on 300 vs champion" in verdict.reason


def test_a_policy_from_json_changes_the_fields_it_names_and_refuses_the_rest_by_name() -> None:
    policy = JudgePolicy.from_json('{"canary_share": 0.2, "max_canary_requests": 5000}')
    assert (policy.canary_share, policy.max_canary_requests) == (0.2, 5000)
    assert policy.shadow_requests == JudgePolicy().shadow_requests
    assert JudgePolicy.from_json("") == JudgePolicy.from_json("{}") == JudgePolicy()
    refusals = {
        '{"canary_shares": 0.2}': r"unknown field\(s\) \['canary_shares'\]; the fields are",
        '{"canary_share": 1.5}': "canary_share is 1.5, not between 0 and 1",
        '{"shadow_requests": 10.5}': "shadow_requests is a whole number, not 10.5",
        '{"alpha_promote": true}': "alpha_promote is a number, not True",
        '{"tau_sd": 0}': "tau_sd is 0.0, not above 0",
        '{"max_canary_requests": 10}': r"max_canary_requests \(10\) is below min_canary_requests",
        "[0.2]": "a JSON object of fields",
        "share=0.2": "rollout policy is not JSON",
    }
    for text, message in refusals.items():
        with pytest.raises(ValueError, match=message):
            JudgePolicy.from_json(text)


def test_a_look_with_nothing_staged_says_so_and_moves_nothing(mlflow_uri: str) -> None:
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_uri)
    name = "judge-none"
    try:
        mlflow.MlflowClient().create_registered_model(name)
        found = judge.look(SPEC, "/nonexistent", registered_name=name)
    finally:
        mlflow.set_tracking_uri(previous)
    assert (found.action, found.version, found.registered_name) == ("none", "", name)
    assert found.reason == "no version is being rolled out"
    with pytest.raises(ValueError, match="approval is one of automatic, required, not 'maybe'"):
        judge.look(SPEC, "/nonexistent", approval="maybe", registered_name=name)
