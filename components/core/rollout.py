"""A challenger's way to production: `shadow`, then `canary`, then `champion`, or back.

The registry holds the truth, so every server and every report reads the same: the alias
`staged` names the version being rolled out, and that version's tags say its stage
(`rollout_stage`), the share of requests a canary answers (`rollout_share`) and why it is where
it is (`rollout_reason`). A server serves the champion and, while a version is staged, that
version beside it:

- `shadow`: it scores a copy of the traffic off the request path; its answers are logged, never
  returned;
- `canary`: it answers `share` of the requests, chosen by request id, so a client that resends
  an id gets the same model.

Ending a rollout removes the alias: `champion` moves the champion alias to the version,
`rolled_back` (found worse) and `retired` (not shown better) leave the champion where it was. Either way the version keeps its tags, so its
history stays readable.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from components.core.contracts import CHAMPION
from components.core.lineage import utc_now

STAGED = "staged"
"""The registry alias of the version being rolled out."""
STAGE_TAG = "rollout_stage"
SHARE_TAG = "rollout_share"
REASON_TAG = "rollout_reason"
VERDICT_TAG = "rollout_verdict"
"""The judge's last verdict on the version, as JSON (components.core.judge)."""
AWAITING_TAG = "rollout_awaiting_approval"
"""Set (to the judge's reason) while a promotion waits for a person (`make approve`)."""
SINCE_TAG = "rollout_since"
"""When the version entered its stage (UTC, ISO 8601): the judge's window starts there."""
DEFAULT_CANARY_SHARE = 0.1
_HASH_SPACE = float(1 << 64)
_ROUTE_SALT = b"mlops-canary:"
"""Keeps the canary's requests independent of the inference log's sample (the same ids)."""


class Stage(StrEnum):
    SHADOW = "shadow"
    CANARY = "canary"
    CHAMPION = CHAMPION
    ROLLED_BACK = "rolled_back"
    RETIRED = "retired"
    """Ended without being shown better; nothing was found wrong with it."""


SERVED_BESIDE = (Stage.SHADOW, Stage.CANARY)
"""The stages in which a server runs the version beside the champion."""
NEXT = {
    None: {Stage.SHADOW, Stage.CANARY},
    Stage.SHADOW: {Stage.CANARY, Stage.CHAMPION, Stage.ROLLED_BACK, Stage.RETIRED},
    Stage.CANARY: {Stage.SHADOW, Stage.CANARY, Stage.CHAMPION, Stage.ROLLED_BACK, Stage.RETIRED},
}
"""The moves a staged version may make (canary -> canary changes its share)."""


class RolloutError(ValueError):
    pass


def check_share(share: float) -> float:
    if not (isinstance(share, int | float) and math.isfinite(share) and 0.0 < share < 1.0):
        raise RolloutError(f"a canary's share of requests is between 0 and 1, exclusive: {share!r}")
    return float(share)


@dataclass(frozen=True)
class Staged:
    """The version being rolled out, as a server acts on it."""

    version: str
    stage: Stage
    share: float = 0.0
    """The share of requests it answers (canary); 0 in shadow."""
    reason: str = ""
    since: str = ""

    def __post_init__(self) -> None:
        if self.stage not in SERVED_BESIDE:
            raise RolloutError(f"a staged version is in shadow or canary, not {self.stage}")
        if self.stage is Stage.CANARY:
            check_share(self.share)

    @classmethod
    def from_tags(cls, version: str, tags: Mapping[str, str]) -> Staged | None:
        """The version's stage from its tags; None when they stage it for nothing a server
        does (no stage, or one that has ended). Tags that cannot be read are an error."""
        raw = tags.get(STAGE_TAG)
        try:
            stage = Stage(raw) if raw else None
        except ValueError:
            raise RolloutError(
                f"version {version}: {STAGE_TAG}={raw!r} is none of {', '.join(Stage)}"
            ) from None
        if stage not in SERVED_BESIDE:
            return None
        share = 0.0
        if stage is Stage.CANARY:
            try:
                share = float(tags.get(SHARE_TAG, ""))
            except ValueError:
                raise RolloutError(
                    f"version {version}: {SHARE_TAG}={tags.get(SHARE_TAG)!r} is not a number"
                ) from None
        assert stage is not None
        return cls(version, stage, share, tags.get(REASON_TAG, ""), tags.get(SINCE_TAG, ""))

    def answers(self, request_id: str) -> bool:
        """Whether this version answers the request (a canary's share, sticky by id)."""
        return self.stage is Stage.CANARY and routes_to_canary(request_id, self.share)


def routes_to_canary(request_id: str, share: float) -> bool:
    digest = hashlib.blake2b(_ROUTE_SALT + request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE < share


# -- the registry ------------------------------------------------------------------------------


MAX_TAG_CHARS = 5_000
"""What any MLflow store keeps of a tag value."""


def registry_client() -> Any:
    """An MLflow client of the tracking URI in effect."""
    import mlflow

    return mlflow.MlflowClient()


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        # only an answer that the alias is not set: an unreachable registry is no answer
        if f"alias {alias} not found" in str(exc):
            return None
        raise


def current(name: str, client: Any = None) -> Staged | None:
    """The version of `name` being rolled out now, or None."""
    client = client or registry_client()
    version = _alias_version(client, name, STAGED)
    if version is None:
        return None
    if version == _alias_version(client, name, CHAMPION):
        return None  # promoted, the alias not yet removed
    return Staged.from_tags(version, client.get_model_version(name, version).tags)


def stage(
    name: str,
    version: str,
    to: Stage,
    *,
    share: float | None = None,
    reason: str,
    client: Any = None,
) -> Stage:
    """Moves `version` of `name` to stage `to`, recording `reason` on it; returns the stage.

    `shadow` and `canary` stage the version (ending the rollout of any other one); `champion`
    promotes it and `rolled_back` ends it, both only for the version being rolled out."""
    client = client or registry_client()
    version = str(version)
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version(name, version)
    except MlflowException as exc:
        if "not found" not in str(exc).lower() and "RESOURCE_DOES_NOT_EXIST" not in str(
            exc.error_code
        ):
            raise
        raise RolloutError(f"{name} has no version {version}") from None
    champion = _alias_version(client, name, CHAMPION)
    if version == champion:
        raise RolloutError(f"version {version} of {name} is the champion already")
    staged_now = current(name, client)
    now = staged_now.stage if staged_now is not None and staged_now.version == version else None
    if to not in NEXT.get(now, set()):
        where = f"in {now}" if now else "not being rolled out"
        raise RolloutError(f"version {version} of {name} is {where}: it cannot move to {to}")
    tags = {STAGE_TAG: str(to), REASON_TAG: reason, SINCE_TAG: utc_now().isoformat()}
    if to is Stage.CANARY:
        tags[SHARE_TAG] = str(check_share(DEFAULT_CANARY_SHARE if share is None else share))
    elif share is not None:
        raise RolloutError(f"a share is a canary's; {to} takes none")
    if staged_now is not None and staged_now.version != version:
        client.set_model_version_tag(name, staged_now.version, STAGE_TAG, str(Stage.ROLLED_BACK))
        client.set_model_version_tag(
            name, staged_now.version, REASON_TAG, f"replaced by version {version}"
        )
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if AWAITING_TAG in (found.tags or {}):  # whatever moved it answered the wait
        client.delete_model_version_tag(name, version, AWAITING_TAG)
    if to in SERVED_BESIDE:
        client.set_registered_model_alias(name, STAGED, version)
    else:
        if to is Stage.CHAMPION:
            client.set_registered_model_alias(name, CHAMPION, version)
        client.delete_registered_model_alias(name, STAGED)
    return to


def awaiting(name: str, version: str, client: Any = None) -> str:
    """Why the judge holds `version` for a person's approval ("" when it does not)."""
    client = client or registry_client()
    return str((client.get_model_version(name, str(version)).tags or {}).get(AWAITING_TAG, ""))
