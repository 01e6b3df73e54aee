"""The rollout judge: the staged version against the champion on the inference log, with
sequential tests whose error rates hold however often it looks.

Each look takes the log rows since the version entered its stage (components.core.rollout)
and compares the two arms on
- **errors**: the share of requests whose model call failed;
- **latency**: the mean model-call time per request, worse only beyond `latency_margin_ms`,
  judged in canary only (a shadow's calls run off the request path, competing with it);
- **quality**: a per-row loss on the labelled rows (the Brier score of a probability, the
  absolute error of a value): paired row by row in shadow (both arms answered the same rows),
  two samples in canary;
and reports the output means and, in shadow, the agreement of the decisions.

Every comparison is a mixture sequential probability ratio test (mSPRT; Robbins 1970, Johari
et al. 2017): for a difference of means estimated as D with variance V, under a normal mixing
prior N(0, tau^2) on the true difference,

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 D^2 / (2 V (V + tau^2)))

and the hypothesis of no difference is rejected, in the direction of D, once Lambda >= 1/alpha.
Under the hypothesis Lambda is a nonnegative martingale, so by Ville's inequality it ever
crosses 1/alpha with probability at most alpha: the rate holds for any number of looks, at any
time. tau is a fraction of the observations' pooled standard deviation (`tau_sd`), the size of
difference the test is most sensitive to.

The stated rates, for a challenger no different from the champion:
- false rollback at most `alpha_rollback` over its whole rollout: each of the three checks in
  each of the two stages is tested at alpha_rollback / 6 (Bonferroni; five are judged);
- false promotion at most `alpha_promote`: promotion needs quality better at that level, in
  canary.
`benchmarks/rollout.py` measures both over replays of iid traffic.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from components.core import rollout
from components.core.contracts import RolloutCheck, RolloutVerdict
from components.core.rollout import Stage, Staged

if TYPE_CHECKING:
    from components.core.spec import ProjectSpec

SHADOW_LATENCY = "latency (off the request path, not judged)"
MIN_OBSERVATIONS = 30
"""Per arm, before a check says anything: the variance estimate needs them."""


class Action(StrEnum):
    HOLD = "hold"
    ADVANCE = "advance"
    """shadow -> canary"""
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    RETIRE = "retire"
    """The budget is spent and the challenger was not shown better: the champion stays, and
    nothing was found wrong with the challenger (not a rollback)."""


@dataclass(frozen=True)
class JudgePolicy:
    alpha_rollback: float = 0.05
    alpha_promote: float = 0.05
    tau_sd: float = 0.2
    latency_margin_ms: float = 5.0
    shadow_requests: int = 2_000
    """Shadow requests after which, nothing found worse, the challenger goes to canary."""
    canary_share: float = 0.1
    min_canary_requests: int = 200
    """Canary requests before a promotion."""
    max_canary_requests: int = 20_000
    """Canary requests after which a challenger not shown better retires."""

    def __post_init__(self) -> None:
        problems = [
            f"{name} is {getattr(self, name)!r}, not between 0 and 1"
            for name in ("alpha_rollback", "alpha_promote", "canary_share")
            if not 0.0 < getattr(self, name) < 1.0
        ]
        if not self.tau_sd > 0.0:
            problems.append(f"tau_sd is {self.tau_sd!r}, not above 0")
        problems += [
            f"{name} is {getattr(self, name)!r}, not at least 0"
            for name in ("latency_margin_ms", "shadow_requests", "min_canary_requests")
            if not getattr(self, name) >= 0
        ]
        if self.max_canary_requests < self.min_canary_requests:
            problems.append(
                f"max_canary_requests ({self.max_canary_requests}) is below min_canary_requests "
                f"({self.min_canary_requests})"
            )
        if problems:
            raise ValueError(f"rollout policy: {'; '.join(problems)}")

    @classmethod
    def from_json(cls, text: str) -> JudgePolicy:
        """The default policy with the fields a JSON object names changed, e.g.
        `{"canary_share": 0.2, "max_canary_requests": 5000}`; anything else is refused by name."""
        try:
            given = json.loads(text or "{}")
        except ValueError as exc:
            raise ValueError(f"rollout policy is not JSON ({exc}): {text!r}") from None
        if not isinstance(given, dict):
            raise ValueError(f"rollout policy is a JSON object of fields, not {text!r}")
        types = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(given) - set(types))
        if unknown:
            raise ValueError(
                f"rollout policy: unknown field(s) {unknown}; the fields are {sorted(types)}"
            )
        for name, value in given.items():
            wanted = int if types[name] in (int, "int") else float
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (wanted is int and not float(value).is_integer())
            ):
                kind = "a whole number" if wanted is int else "a number"
                raise ValueError(f"rollout policy: {name} is {kind}, not {value!r}")
            given[name] = wanted(value)
        return cls(**given)

    @property
    def alpha_check(self) -> float:
        return self.alpha_rollback / 6.0


Check = RolloutCheck
"""One comparison of the two arms: the record a look writes, defined once in contracts."""


def _check(name: str, champion: float, challenger: float, n_champion: int, n_challenger: int,
           log_lambda: float, verdict: str, unit: str = "") -> Check:  # fmt: skip
    return Check(name=name, champion=champion, challenger=challenger, n_champion=n_champion,
                 n_challenger=n_challenger, log_lambda=log_lambda, verdict=verdict, unit=unit)  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    stage: Stage
    checks: list[Check] = field(default_factory=list)
    challenger_requests: int = 0
    challenger_failed: int = 0
    """Requests the challenger's model call failed on (answered 500 in canary)."""
    agreement: float | None = None
    """Shadow: the share of rows whose decision (or value within 1%) matched the champion's."""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["action"], out["stage"] = str(self.action), str(self.stage)
        out["checks"] = [check.model_dump() for check in self.checks]
        return out


def log_msprt(difference: float, variance: float, tau2: float) -> float:
    """log Lambda of the mSPRT for an estimated difference of means and its variance."""
    if variance <= 0.0 or tau2 <= 0.0 or not math.isfinite(difference):
        return 0.0
    return 0.5 * math.log(variance / (variance + tau2)) + tau2 * difference**2 / (
        2.0 * variance * (variance + tau2)
    )


def _two_sample(
    name: str,
    champion: np.ndarray,
    challenger: np.ndarray,
    alpha: float,
    policy: JudgePolicy,
    margin: float = 0.0,
    alpha_better: float | None = None,
    unit: str = "",
) -> Check:
    """Challenger minus champion; positive is worse. `margin`: worse only beyond it."""
    a, b = np.asarray(champion, float), np.asarray(challenger, float)
    mean_a = float(a.mean()) if len(a) else math.nan
    mean_b = float(b.mean()) if len(b) else math.nan
    if min(len(a), len(b)) < MIN_OBSERVATIONS:
        return _check(name, mean_a, mean_b, len(a), len(b), 0.0, "", unit)
    var_a, var_b = float(a.var(ddof=1)), float(b.var(ddof=1))
    variance = var_a / len(a) + var_b / len(b)
    tau2 = (policy.tau_sd**2) * max((var_a + var_b) / 2.0, 1e-12)
    return _decided(
        name, mean_a, mean_b, len(a), len(b), mean_b - mean_a, variance, tau2, alpha, margin,
        alpha_better, unit,
    )  # fmt: skip


def _paired(
    name: str, champion: np.ndarray, challenger: np.ndarray, alpha: float, policy: JudgePolicy,
    alpha_better: float | None = None,
) -> Check:  # fmt: skip
    a, b = np.asarray(champion, float), np.asarray(challenger, float)
    n = len(a)
    if n < MIN_OBSERVATIONS:
        return _check(name, _mean(a), _mean(b), n, n, 0.0, "")
    d = b - a
    var_d = float(d.var(ddof=1))
    tau2 = (policy.tau_sd**2) * max((float(a.var(ddof=1)) + float(b.var(ddof=1))) / 2.0, 1e-12)
    return _decided(
        name, _mean(a), _mean(b), n, n, float(d.mean()), var_d / n, tau2, alpha, 0.0, alpha_better
    )


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def _decided(
    name: str,
    mean_a: float,
    mean_b: float,
    n_a: int,
    n_b: int,
    difference: float,
    variance: float,
    tau2: float,
    alpha: float,
    margin: float,
    alpha_better: float | None,
    unit: str = "",
) -> Check:
    worse = log_msprt(difference - margin, variance, tau2)
    if difference - margin > 0 and worse >= math.log(1.0 / alpha):
        return _check(name, mean_a, mean_b, n_a, n_b, worse, "worse", unit)
    if alpha_better is not None:
        better = log_msprt(difference, variance, tau2)
        if difference < 0 and better >= math.log(1.0 / alpha_better):
            return _check(name, mean_a, mean_b, n_a, n_b, better, "better", unit)
    # the evidence that it is worse, where the estimate points that way
    return _check(name, mean_a, mean_b, n_a, n_b, worse if difference > margin else 0.0, "", unit)


# -- the arms from the log ---------------------------------------------------------------------


def row_loss(spec: ProjectSpec, output: Any, target: Any) -> np.ndarray:
    """Per labelled row: the Brier score of a probability, the absolute error of a value."""
    output, target = np.asarray(output, float), np.asarray(target, float)
    if spec.task.probabilistic:
        return (output - target) ** 2
    return np.abs(output - target)


def loss_name(spec: ProjectSpec) -> str:
    return "Brier score" if spec.task.probabilistic else "absolute error"


def _requests(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per request: its model-call time and whether the call failed."""
    if rows.empty:
        return pd.DataFrame({"latency_ms": pd.Series(dtype=float), "failed": pd.Series(dtype=bool)})
    flagged = rows[["request_id", "latency_ms"]].assign(failed=rows["error"].notna())
    return flagged.groupby("request_id", sort=False).agg(
        latency_ms=("latency_ms", "first"), failed=("failed", "max")
    )


def judge(
    spec: ProjectSpec,
    rows: pd.DataFrame,
    stage: Stage,
    challenger_version: str,
    policy: JudgePolicy | None = None,
) -> Verdict:
    """The verdict on the log rows of one stage: the champion's (stage champion) and the
    challenger's (its stage, its version), with the target column where labelled."""
    policy = policy or JudgePolicy()
    if spec.target not in rows:
        rows = rows.assign(**{spec.target: np.nan})  # no labels yet
    champion = rows[rows["stage"] == str(Stage.CHAMPION)]
    challenger = rows[(rows["stage"] == str(stage)) & (rows["model_version"] == challenger_version)]
    requests_a, requests_b = _requests(champion), _requests(challenger)
    alpha = policy.alpha_check
    checks = [
        _two_sample("errors", requests_a["failed"].to_numpy(float),
                    requests_b["failed"].to_numpy(float), alpha, policy),
        _two_sample("latency", requests_a["latency_ms"].dropna().to_numpy(float),
                    requests_b["latency_ms"].dropna().to_numpy(float), alpha, policy,
                    margin=policy.latency_margin_ms, unit=" ms"),
    ]  # fmt: skip
    if stage is Stage.SHADOW:
        # A shadow's calls run on a background thread after each answer and wait for the
        # requests' thread, more the busier the machine: shown, judged only in canary.
        checks[1] = checks[1].model_copy(update={"name": SHADOW_LATENCY, "verdict": ""})
    output = f"output.{spec.task.explained_field}"
    target = spec.target
    answered_a = champion[champion["error"].isna()]
    answered_b = challenger[challenger["error"].isna()]
    promote_alpha = policy.alpha_promote if stage is Stage.CANARY else None
    agreement = None
    labelled_a = answered_a.dropna(subset=[target])
    labelled_b = answered_b.dropna(subset=[target])
    if stage is Stage.SHADOW:
        pairs = answered_a.merge(answered_b, on=["request_id", "row"], suffixes=("_a", "_b"))
        if len(pairs):
            agreement = _agreement(spec, pairs)
        labelled = pairs.dropna(subset=[f"{target}_a"])
        checks.append(
            _paired(
                f"quality ({loss_name(spec)})",
                row_loss(spec, labelled[f"{output}_a"], labelled[f"{target}_a"]),
                row_loss(spec, labelled[f"{output}_b"], labelled[f"{target}_a"]),
                alpha,
                policy,
            )
        )
    else:
        checks.append(
            _two_sample(
                f"quality ({loss_name(spec)})",
                row_loss(spec, labelled_a[output], labelled_a[target]),
                row_loss(spec, labelled_b[output], labelled_b[target]),
                alpha,
                policy,
                alpha_better=promote_alpha,
            )
        )
    checks.append(
        _check(
            "mean output",
            _mean(answered_a[output].to_numpy(float)),
            _mean(answered_b[output].to_numpy(float)),
            len(answered_a),
            len(answered_b),
            0.0,
            "",
        )
    )
    n_b, failed = len(requests_b), int(requests_b["failed"].sum())
    made = _action(stage, checks, n_b, policy)
    summary = "; ".join(c.described() for c in checks)
    return Verdict(made[0], f"{made[1]} ({summary})", stage, checks, n_b, failed, agreement)


def _action(
    stage: Stage, checks: Sequence[Check], requests: int, policy: JudgePolicy
) -> tuple[Action, str]:
    worse = [c.name for c in checks if c.verdict == "worse"]
    if worse:
        return Action.ROLLBACK, f"rolled back: {' and '.join(worse)} worse than the champion's"
    if stage is Stage.SHADOW:
        if requests >= policy.shadow_requests:
            return Action.ADVANCE, (
                f"to canary: nothing worse than the champion on {requests:,} shadow requests"
            )
        return Action.HOLD, f"in shadow: {requests:,} of {policy.shadow_requests:,} requests"
    better = [c.name for c in checks if c.verdict == "better"]
    if better and requests >= policy.min_canary_requests:
        return Action.PROMOTE, f"promoted: {' and '.join(better)} better than the champion's"
    if requests >= policy.max_canary_requests:
        return Action.RETIRE, (
            f"retired: not shown better than the champion on {requests:,} canary requests"
        )
    return Action.HOLD, f"in canary: {requests:,} requests, no verdict yet"


def _agreement(spec: ProjectSpec, pairs: pd.DataFrame) -> float:
    """The share of paired rows whose decision matched (a value: within 1% of the champion's)."""
    if spec.task.probabilistic:
        name = f"output.{spec.task.decision}"
        return float(np.mean(pairs[f"{name}_a"].to_numpy() == pairs[f"{name}_b"].to_numpy()))
    name = f"output.{spec.task.explained_field}"
    x, y = pairs[f"{name}_a"].to_numpy(float), pairs[f"{name}_b"].to_numpy(float)
    return float(np.mean(np.abs(x - y) <= 0.01 * np.maximum(np.abs(x), 1e-9)))


# -- a look at the registry and the log --------------------------------------------------------

APPROVALS = ("automatic", "required")


def check_approval(approval: str) -> str:
    if approval not in APPROVALS:
        raise ValueError(f"approval is one of {', '.join(APPROVALS)}, not {approval!r}")
    return approval


def _stage_of(action: Action) -> Stage | None:
    return {
        Action.ADVANCE: Stage.CANARY,
        Action.PROMOTE: Stage.CHAMPION,
        Action.ROLLBACK: Stage.ROLLED_BACK,
        Action.RETIRE: Stage.RETIRED,
    }.get(action)


def window_rows(
    spec: ProjectSpec,
    log_root: str,
    staged: Staged,
    labels: str = "",
    now: dt.datetime | None = None,
) -> pd.DataFrame:
    """The log rows since the version entered its stage: the champion's and its own, failed
    calls included, with `labels` joined on request id and row."""
    from components.core import inference_log
    from components.core.window import joined_batches

    if not staged.since:
        raise ValueError(f"version {staged.version} has no {rollout.SINCE_TAG} tag: restage it")
    since = dt.datetime.fromisoformat(staged.since)
    found = inference_log.scan(
        log_root, spec.name, since, now, inference_log.LogSchema.of(spec),
        stages=(str(Stage.CHAMPION), str(staged.stage)),
    )  # fmt: skip
    frames = list(joined_batches(spec, found, labels))
    if not frames:
        columns = [*inference_log.META_COLUMNS, f"output.{spec.task.explained_field}"]
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)


def review(
    spec: ProjectSpec,
    log_root: str,
    labels: str = "",
    policy: JudgePolicy | None = None,
    approval: str = "automatic",
    now: dt.datetime | None = None,
    registered_name: str = "",
) -> Verdict | None:
    """One look at the version being rolled out (None: there is none): its verdict, recorded
    on the version, and acted on in the registry (the project's registered model, or
    `registered_name`). With `approval` "required" a promotion
    waits for `make approve` instead (the version keeps its canary share meanwhile)."""
    done = _look(spec, log_root, labels, policy, approval, now, registered_name)
    return None if done is None else done[1]


def look(
    spec: ProjectSpec,
    log_root: str,
    labels: str = "",
    policy: JudgePolicy | None = None,
    approval: str = "automatic",
    now: dt.datetime | None = None,
    registered_name: str = "",
) -> RolloutVerdict:
    """`review` as the record a pipeline step writes: the version, the verdict, and where the
    judge moved it ("none" when nothing is being rolled out)."""
    name = registered_name or spec.name
    when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    done = _look(spec, log_root, labels, policy, approval, now, registered_name)
    if done is None:
        return RolloutVerdict(project=spec.name, registered_name=name, time=when, version="",
                              stage="", action="none", moved_to="",
                              reason="no version is being rolled out")  # fmt: skip
    staged, verdict, moved_to = done
    return RolloutVerdict(
        project=spec.name,
        registered_name=name,
        time=when,
        version=staged.version,
        stage=str(verdict.stage),
        action=str(verdict.action),
        moved_to=moved_to,
        reason=verdict.reason,
        checks=verdict.checks,
        challenger_requests=verdict.challenger_requests,
        challenger_failed=verdict.challenger_failed,
        agreement=verdict.agreement,
    )


AWAITING_APPROVAL = "awaiting approval"


def _look(
    spec: ProjectSpec,
    log_root: str,
    labels: str,
    policy: JudgePolicy | None,
    approval: str,
    now: dt.datetime | None,
    registered_name: str,
) -> tuple[Staged, Verdict, str] | None:
    """The staged version, the verdict on it, and the stage it was moved to ("" for none)."""
    check_approval(approval)
    policy = policy or JudgePolicy()
    name = registered_name or spec.name
    staged = rollout.current(name)
    if staged is None:
        return None
    rows = window_rows(spec, log_root, staged, labels, now)
    verdict = judge(spec, rows, staged.stage, staged.version, policy)
    client = rollout.registry_client()
    record = json.dumps(verdict.as_dict(), default=str)[: rollout.MAX_TAG_CHARS]
    client.set_model_version_tag(name, staged.version, rollout.VERDICT_TAG, record)
    to = _stage_of(verdict.action)
    if to is Stage.CHAMPION and approval == "required":
        client.set_model_version_tag(name, staged.version, rollout.AWAITING_TAG,
                                     verdict.reason[: rollout.MAX_TAG_CHARS])  # fmt: skip
        return staged, verdict, AWAITING_APPROVAL
    if to is not None:
        share = policy.canary_share if to is Stage.CANARY else None
        rollout.stage(name, staged.version, to, share=share, reason=verdict.reason,
                      client=client)  # fmt: skip
    return staged, verdict, str(to) if to is not None else ""
