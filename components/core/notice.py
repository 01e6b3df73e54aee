"""A pipeline run's outcome as one JSON notice, posted to a webhook: the run, its status, the
step that failed and why, and what the registry decided. Generic JSON first; its `text` line
makes the same body a Slack incoming-webhook message.

The URL is a secret (a Slack webhook URL carries a token): it comes from the environment
(`URL_ENV`), and nothing here prints or raises more of it than its scheme and host.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from components.core.contracts import CHAMPION, KFP_RUN_ID_TAG, ContractError, StepFailure
from components.core.failure import ERROR_CHARS, FAILURE_FILE, summary_of

URL_ENV = "NOTIFY_URL"
NOT_CONFIGURED = f"no notice configured: {URL_ENV} is not set"
SUCCEEDED = "SUCCEEDED"
ATTEMPTS = 3
BACKOFF_S = 1.0
"""Wait before the second attempt; doubled before each later one."""
TIMEOUT_S = 10.0
_TRANSIENT = {408, 425, 429}
"""Statuses worth another attempt, with every 5xx; any other answer will not change."""


class NoticeError(RuntimeError):
    """The URL is unusable or the notice was not delivered; the message names only the host."""


@dataclass(frozen=True)
class Outcome:
    """What KFP says of the run: the exit task's final status and the run's names."""

    pipeline: str
    project: str
    run_id: str
    run_name: str
    state: str
    message: str = ""
    """KFP's error message for the run's body, when it gives one."""


@dataclass(frozen=True)
class Failure:
    step: str
    summary: str
    error: str


@dataclass(frozen=True)
class RegistryDecision:
    """What the run did in the model registry, read back from it by the run's id."""

    model: str
    version: str | None
    """The version this run registered; None when it registered none."""
    promoted: bool
    champion_version: str | None
    """The champion after the run; None when the model has none."""
    decision: str

    def line(self) -> str:
        champion = f"v{self.champion_version}" if self.champion_version else "none"
        if self.version is None:
            return f"no new {self.model} version registered; champion {champion}"
        if self.promoted:
            return f"{self.model} v{self.version} registered and promoted to champion"
        return f"{self.model} v{self.version} registered; champion stays {champion}"


def where(url: str) -> str:
    """Scheme and host of a URL, the only part of it that may be shown."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def check_url(url: str) -> str:
    """The URL's scheme and host, once it is an http(s) URL with a host; else NoticeError."""
    if any(c.isspace() or not c.isprintable() for c in url):
        raise NoticeError(f"{URL_ENV} contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        raise NoticeError(f"{URL_ENV} is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise NoticeError(f"{URL_ENV} must be an http:// or https:// URL")
    if not parts.hostname:
        raise NoticeError(f"{URL_ENV} has no host")
    return where(url)


def run_failure(run_folder: Path) -> Failure | None:
    """The step that raised in a run on this machine, from the record it left in its folder
    (components/core/failure.py); the earliest if several did (a ParallelFor's shards). None
    when there is none, as on a cluster, where the folder is not on this machine."""
    if not run_folder.is_dir():
        return None
    records = sorted(run_folder.rglob(FAILURE_FILE), key=lambda path: path.stat().st_mtime)
    if not records:
        return None
    step = records[0].parent.name
    try:
        found = StepFailure.read(records[0])
    except ContractError as exc:
        return Failure(step, f"its failure record is unreadable: {exc}", "")
    return Failure(step, found.summary, found.error)


def registry_decision(model: str, run_id: str, tracking_uri: str) -> RegistryDecision:
    """The version the run registered (its KFP_RUN_ID_TAG), whether it became champion, and the
    champion after the run. A registry that cannot be read says so in the decision: the notice
    goes out whatever the registry answers."""
    # MLflow's client retries a dead server for minutes; a notice should not wait that long.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    import mlflow  # here: a run without a notice or a registry never pays for it
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri)
    try:
        mine = client.search_model_versions(
            f"name = '{model}' and tags.{KFP_RUN_ID_TAG} = '{run_id}'"
        )
        try:
            champion: str | None = str(client.get_model_version_by_alias(model, CHAMPION).version)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            champion = None
    except Exception as exc:  # reported in the notice, not swallowed
        return RegistryDecision(
            model, None, False, None, f"the registry could not be read ({summary_of(exc)})"
        )
    if not mine:
        return RegistryDecision(model, None, False, champion, "no version registered by this run")
    latest = max(mine, key=lambda found: int(found.version))
    version = str(latest.version)
    return RegistryDecision(
        model, version, champion == version, champion, (latest.tags or {}).get("decision", "")
    )


def body(
    outcome: Outcome, failure: Failure | None, registry: RegistryDecision | None
) -> dict[str, Any]:
    """The notice: the fields a reader filters on, and `text`, one line for a person."""
    failed = outcome.state != SUCCEEDED
    error = (failure.error or failure.summary) if failure else outcome.message
    head = f"{outcome.pipeline} {outcome.state}"
    if failed and failure:
        head += f" in {failure.step}"
    head += f" (run {outcome.run_name or outcome.run_id})"
    if failed:
        reason = failure.summary if failure else outcome.message or "see the run's log"
        text = f"{head}: {reason}"
    else:
        text = f"{head}: {registry.line()}" if registry else head
    return {
        "pipeline": outcome.pipeline,
        "project": outcome.project,
        "run": outcome.run_id,
        "run_name": outcome.run_name,
        "status": outcome.state,
        "failed_step": failure.step if failed and failure else "",
        "error": error[-ERROR_CHARS:] if failed else "",
        "registry": asdict(registry) if registry else None,
        "text": text,
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirected POST would arrive as a GET without its body: fail on the 3xx instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _scrubbed(text: str, url: str) -> str:
    """`text` without the URL, its path, query or credentials, should an error quote them."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    for secret in sorted({url, parts.path, parts.query, userinfo}, key=len, reverse=True):
        if len(secret) > 1:
            text = text.replace(secret, "...")
    return text


def post(
    url: str,
    notice: Mapping[str, Any],
    *,
    attempts: int = ATTEMPTS,
    backoff_s: float = BACKOFF_S,
    timeout_s: float = TIMEOUT_S,
) -> int:
    """POSTs the notice as JSON; returns the 2xx status. A refused connection, a timeout, a 5xx,
    408 or 429 is tried again, up to `attempts` times; then, or on any other answer,
    NoticeError naming the host and the last status or error."""
    host = check_url(url)
    data = json.dumps(notice).encode()
    problem = ""
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(request, timeout=timeout_s) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            problem = f"HTTP {exc.code}"
            if exc.code not in _TRANSIENT and exc.code < 500:
                break
        except urllib.error.URLError as exc:
            reason = exc.reason
            problem = summary_of(reason) if isinstance(reason, BaseException) else str(reason)
        except (OSError, http.client.HTTPException) as exc:
            problem = summary_of(exc)
        if attempt < attempts:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    raise NoticeError(
        _scrubbed(f"the notice was not delivered to {host} ({attempt} attempt(s)): {problem}", url)
    )


def send(url: str, outcome: Outcome, *, run_folder: Path | None, tracking_uri: str | None) -> str:
    """Builds the run's notice and posts it; returns the line to log. `run_folder`: where a run
    on this machine keeps its steps' outputs (their failure records); `tracking_uri`: the
    registry to read the run's decision from (None: the pipeline registers nothing)."""
    host = check_url(url)
    failure = None
    if outcome.state != SUCCEEDED and run_folder is not None:
        failure = run_failure(run_folder)
    registry = None
    if tracking_uri is not None:
        registry = registry_decision(outcome.project, outcome.run_id, tracking_uri)
    notice = body(outcome, failure, registry)
    status = post(url, notice)
    return f"notice posted to {host} (HTTP {status}): {notice['text']}"
