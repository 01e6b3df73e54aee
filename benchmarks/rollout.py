"""Replays of a rollout: how often the judge rolls back or promotes a challenger, measured
(`make bench-rollout`, .state/bench/rollout.md).

A replay sends iid one-row requests, drawn with replacement from a pool of labelled rows, through
a whole rollout as the servers run it: a shadow stage (both arms answer every request), then a
canary stage (each request answered by one arm, the challenger's share chosen at random as the
request id's hash chooses it), each judged from its own start. The arms' outputs on the pool are
computed once with the real models; each request's model-call time is drawn from that model's
own measured single-row calls; a planted error rate fails that share of the challenger's
requests. The judge (components.core.judge) looks after every `growth` more requests and the
replay ends at its first verdict other than hold.

On the real telecom file (DATA_DIR, default ../shared/data), split as the pipeline splits it
(seed 42), the champion is the project's first candidate trained on the training split, and the
challengers are: the same candidate on another seed (equal), one trained on labels flipped where
mb_used is in its top quarter (worse), the champion 20 ms slower, the champion failing 5% of
requests, and (better) the champion itself against one trained on 120 rows; the planted faults
also staged straight to canary, where clients see them until the verdict. Each is trained here
rather than taken from the registry: an equal challenger needs the champion's own recipe and
another seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.core import judge
from components.core.judge import Action, JudgePolicy
from components.core.rollout import Stage
from components.core.spec import ProjectSpec

POOL_ROW = "pool_row"
"""Which row of the pool a request sent (the judge reads no such column)."""
REPORT = Path(__file__).resolve().parents[1] / ".state" / "bench" / "rollout.md"


@dataclass
class Arm:
    """One version as the replay serves it."""

    version: str
    outputs: pd.DataFrame
    """The response fields (`output.<field>`) on every row of the pool, in pool order."""
    latency_ms: np.ndarray
    """Measured model-call times to draw from."""
    error_rate: float = 0.0


@dataclass
class Outcome:
    action: Action
    stage: Stage
    requests: int
    """Requests sent in the stage that decided."""
    bad_answers: int
    """Requests the challenger answered badly before the verdict: failed (500), or slower than
    the margin, or (quality) wrong where the champion was right, in canary."""
    reason: str


@dataclass
class Replays:
    outcomes: list[Outcome] = field(default_factory=list)

    def rate(self, action: Action) -> float:
        return sum(o.action is action for o in self.outcomes) / max(len(self.outcomes), 1)


def _stage_rows(
    spec: ProjectSpec,
    pool_target: np.ndarray,
    champion: Arm,
    challenger: Arm,
    stage: Stage,
    requests: int,
    share: float,
    rng: np.random.Generator,
    labelled_share: float,
) -> pd.DataFrame:
    """The log rows of `requests` one-row requests in `stage`."""
    picks = rng.integers(0, len(pool_target), requests)
    ids = np.array([f"r{i}" for i in range(requests)], dtype=object)
    labelled = rng.random(requests) < labelled_share
    target = np.where(labelled, pool_target[picks], np.nan)
    frames = []

    def rows_of(arm: Arm, mask: np.ndarray, stage_name: str) -> pd.DataFrame:
        n = int(mask.sum())
        failed = rng.random(n) < arm.error_rate
        out = arm.outputs.iloc[picks[mask]].reset_index(drop=True)
        out.loc[failed, :] = np.nan
        return pd.DataFrame(
            {
                "request_id": ids[mask],
                "row": 0,
                "stage": stage_name,
                "model_version": arm.version,
                "latency_ms": rng.choice(arm.latency_ms, n),
                "error": pd.Series(["planted" if f else None for f in failed], dtype=object),
                spec.target: target[mask],
                POOL_ROW: picks[mask],
            }
        ).join(out)

    if stage is Stage.SHADOW:
        everyone = np.ones(requests, dtype=bool)
        frames = [rows_of(champion, everyone, "champion"), rows_of(challenger, everyone, "shadow")]
    else:
        to_canary = rng.random(requests) < share
        frames = [
            rows_of(champion, ~to_canary, "champion"),
            rows_of(challenger, to_canary, "canary"),
        ]
    rows = pd.concat(frames, ignore_index=True)
    rows["order"] = rows["request_id"].str[1:].astype(int)
    return rows.sort_values("order", kind="stable").drop(columns="order").reset_index(drop=True)


def replay(
    spec: ProjectSpec,
    pool_target: np.ndarray,
    champion: Arm,
    challenger: Arm,
    policy: JudgePolicy,
    rng: np.random.Generator,
    labelled_share: float = 1.0,
    growth: float = 1.25,
) -> Outcome:
    """One whole rollout: shadow, then (when it advances) canary."""
    for stage, budget in (
        (Stage.SHADOW, policy.shadow_requests),
        (Stage.CANARY, math.ceil(policy.max_canary_requests / policy.canary_share * 1.2)),
    ):
        if budget == 0:
            continue  # staged straight to canary
        rows = _stage_rows(
            spec, pool_target, champion, challenger, stage, budget, policy.canary_share, rng,
            labelled_share,
        )  # fmt: skip
        order = rows["request_id"].str[1:].astype(int).to_numpy()
        look = 50
        while True:
            look = min(look, budget)
            seen = rows[order < look]
            verdict = judge.judge(spec, seen, stage, challenger.version, policy)
            if verdict.action is not Action.HOLD or look >= budget:
                break
            look = math.ceil(look * growth)
        if verdict.action is Action.ADVANCE:
            continue
        action = verdict.action if verdict.action is not Action.HOLD else Action.RETIRE
        bad = _bad(spec, seen, stage, champion, pool_target, policy)
        return Outcome(action, stage, look, bad, verdict.reason)
    raise AssertionError("a canary stage always ends the replay")


def _bad(
    spec: ProjectSpec,
    rows: pd.DataFrame,
    stage: Stage,
    champion: Arm,
    pool_target: np.ndarray,
    policy: JudgePolicy,
) -> int:
    """Canary requests the challenger answered worse than the champion would have: failed,
    slower than the champion's median call plus the margin, or (labelled) a wrong decision or
    a larger error where the champion's was right or smaller. A shadow's answers reach nobody."""
    if stage is not Stage.CANARY:
        return 0
    mine = rows[rows["stage"] == "canary"]
    slow = float(np.median(champion.latency_ms)) + policy.latency_margin_ms
    bad = mine["error"].notna().to_numpy() | (mine["latency_ms"].to_numpy(float) > slow)
    field_name = f"output.{spec.task.explained_field}"
    theirs = champion.outputs[field_name].to_numpy(float)[mine[POOL_ROW].to_numpy()]
    truth = pool_target[mine[POOL_ROW].to_numpy()]
    ours = mine[field_name].to_numpy(float)
    if spec.task.probabilistic:
        worse = ((ours >= 0.5) != (truth >= 0.5)) & ((theirs >= 0.5) == (truth >= 0.5))
    else:
        worse = np.abs(ours - truth) > np.abs(theirs - truth)
    labelled = mine[spec.target].notna().to_numpy()
    return int((bad | (worse & labelled & ~np.isnan(ours))).sum())


def replays(
    spec: ProjectSpec,
    pool_target: np.ndarray,
    champion: Arm,
    challenger: Arm,
    policy: JudgePolicy,
    count: int,
    seed: int = 0,
    labelled_share: float = 1.0,
) -> Replays:
    found = Replays()
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        found.outcomes.append(
            replay(spec, pool_target, champion, challenger, policy, rng, labelled_share)
        )
    return found


# -- real models -------------------------------------------------------------------------------


def timed_outputs(
    spec: ProjectSpec, model: Any, pool: pd.DataFrame, calls: int = 300
) -> tuple[pd.DataFrame, np.ndarray]:
    """The model's response fields on the pool, and `calls` single-row call times (ms)."""
    output = spec.task.model_output(model, pool[spec.input_columns])
    threshold = getattr(model, "threshold", None)
    columns = spec.task.columns(np.asarray(output, float), threshold)
    outputs = pd.DataFrame({f"output.{k}": v for k, v in columns.items()})
    times = []
    for i in range(calls):
        row = pool[spec.input_columns].iloc[[i % len(pool)]]
        began = time.perf_counter()
        spec.task.model_output(model, row)
        times.append((time.perf_counter() - began) * 1000.0)
    return outputs, np.asarray(times)


def _table(results: dict[str, Replays], policy: JudgePolicy) -> str:
    lines = [
        "| challenger | replays | rolled back | promoted | retired | median requests to verdict "
        "| bad answers before the verdict (median, max) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, found in results.items():
        bad = [o.bad_answers for o in found.outcomes]
        requests = [o.requests for o in found.outcomes]
        lines.append(
            f"| {name} | {len(found.outcomes)} | {found.rate(Action.ROLLBACK):.0%} | "
            f"{found.rate(Action.PROMOTE):.0%} | {found.rate(Action.RETIRE):.0%} | "
            f"{int(np.median(requests)):,} | {int(np.median(bad))}, {max(bad)} |"
        )
    lines.append("")
    lines.append(
        f"Stated: false rollback <= {policy.alpha_rollback:.0%}, false promotion <= "
        f"{policy.alpha_promote:.0%} (an equal challenger)."
    )
    return "\n".join(lines) + "\n"


def _trained(spec: ProjectSpec, train_frame: pd.DataFrame, seed: int) -> Any:
    from components.core import train

    narrowed = dataclasses.replace(spec, candidates=(spec.candidates[0],))
    return train.train(narrowed, train_frame, seed=seed, trials_per_candidate=1,
                       time_budget_s=60).model  # fmt: skip


def flipped_for_a_group(spec: ProjectSpec, frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows with their labels flipped where `column` is in its top quarter: a model that
    learns them is worse there and nowhere else."""
    flipped = frame.copy()
    group = flipped[column] >= flipped[column].quantile(0.75)
    flipped.loc[group, spec.target] = 1 - flipped.loc[group, spec.target]
    return flipped


def main(argv: list[str] | None = None) -> int:
    from benchmarks.options import add_data_dir
    from components.core import ingest
    from components.core.projects import get_spec

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir(parser)
    parser.add_argument("--replays", type=int, default=50)
    args = parser.parse_args(argv)
    spec = get_spec("telecom")
    source = args.data_dir / spec.data_file
    if not source.is_file():
        raise SystemExit(f"bench-rollout needs the real {spec.data_file}: {source} is absent")
    frame, _ = ingest.load(spec, str(source))
    split = ingest.split(spec, frame, test_size=0.25, seed=42)
    pool = split.test.reset_index(drop=True)
    target = pool[spec.target].to_numpy(float)
    policy = JudgePolicy()
    began = time.perf_counter()
    champion_model = _trained(spec, split.train, seed=42)
    champion = Arm("1", *timed_outputs(spec, champion_model, pool))
    weak = Arm("0", *timed_outputs(spec, _trained(spec, split.train.head(120), seed=42), pool))
    equal = Arm("2", *timed_outputs(spec, _trained(spec, split.train, seed=7), pool))
    worse = Arm("3", *timed_outputs(spec, _trained(
        spec, flipped_for_a_group(spec, split.train, "mb_used"), seed=42), pool))  # fmt: skip
    slower = Arm("4", champion.outputs, champion.latency_ms + 20.0)
    failing = Arm("5", champion.outputs, champion.latency_ms, error_rate=0.05)
    better = Arm("1", champion.outputs, champion.latency_ms)
    cases = {
        "equal (the same candidate, another seed)": (champion, equal),
        "5% of requests fail": (champion, failing),
        "20 ms slower": (champion, slower),
        "worse (labels flipped where mb_used is in its top quarter)": (champion, worse),
        "better (the champion against one trained on 120 rows)": (weak, better),
    }
    results = {
        name: replays(spec, target, base, challenger, policy, args.replays)
        for name, (base, challenger) in cases.items()
    }
    # the same faults staged straight to canary, where clients see them until the verdict
    straight = dataclasses.replace(policy, shadow_requests=0)
    for name in ("5% of requests fail", "20 ms slower",
                 "worse (labels flipped where mb_used is in its top quarter)"):  # fmt: skip
        base, challenger = cases[name]
        results[f"{name}, straight to canary"] = replays(
            spec, target, base, challenger, straight, args.replays
        )
    text = _table(results, policy)
    took = time.perf_counter() - began
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        f"# The rollout judge over replays of iid traffic\n\n`make bench-rollout` on {source} "
        f"({len(pool):,} test rows of the telecom split, seed 42), {args.replays} replays per "
        f"challenger, {took:.0f} s. The judge's policy: {policy}.\n\n{text}"
    )
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
