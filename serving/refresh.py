"""Following a registry alias: when `models:/NAME@ALIAS` moves to another version, serve it.

A daemon thread asks the registry every `interval` seconds which version the alias names. When
that differs from the served version it calls `refresh(version)`, which loads and warms the new
version and swaps it in only once that has worked. A version that fails to load is logged and
counted (`mlops_model_refresh_failures_total`), the old model keeps serving, and the same
version is tried again only after `retry_seconds` (a model that cannot load usually stays so).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from kserve.logging import logger

from components.core import model_uri, rollout
from components.core.loading import registry_provenance
from components.core.rollout import Staged
from serving import metrics

DEFAULT_RETRY_SECONDS = 300.0


def follows_alias(uri: str) -> bool:
    parts = model_uri.parse(uri)
    return parts is not None and parts.alias is not None


class _RegistryPoller:
    """A daemon thread that calls `check()` every `interval` seconds, and the memory of the
    version that last failed to load, which is tried again only after `retry_seconds`."""

    thread_name = "registry-poll"

    def __init__(self, project: str, interval: float, retry_seconds: float) -> None:
        if interval <= 0:
            raise ValueError(f"the refresh interval must be positive, not {interval}")
        self.project, self.interval, self.retry_seconds = project, interval, retry_seconds
        self._failed: tuple[str, float] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.check()

    def check(self) -> object:
        raise NotImplementedError

    def _waiting_to_retry(self, version: str) -> bool:
        if self._failed is None:
            return False
        failed, when = self._failed
        return failed == version and time.monotonic() - when < self.retry_seconds

    def _load_failed(self, version: str) -> None:
        self._failed = (version, time.monotonic())
        metrics.MODEL_REFRESH_FAILURES.labels(self.project).inc()


class AliasRefresher(_RegistryPoller):
    thread_name = "model-refresh"

    def __init__(
        self,
        project: str,
        uri: str,
        interval: float,
        served_version: Callable[[], str],
        refresh: Callable[[str], None],
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        if not follows_alias(uri):
            raise ValueError(f"{uri} is not a registry alias (models:/NAME@ALIAS)")
        super().__init__(project, interval, retry_seconds)
        self.uri = uri
        self.served_version, self.refresh = served_version, refresh

    def start(self) -> AliasRefresher:
        self._thread.start()
        logger.info("following %s: checking the registry every %gs", self.uri, self.interval)
        return self

    def check(self) -> str | None:
        """One look at the registry; the version now served when it changed, else None."""
        try:
            version, _ = registry_provenance(self.uri)
        except Exception as exc:  # the registry may be down for a while; ask again next time
            logger.warning(
                "cannot read %s from the registry: %s: %s", self.uri, type(exc).__name__, exc
            )
            return None
        served = self.served_version()
        if version == served:
            self._failed = None
            return None
        if self._waiting_to_retry(version):
            return None
        logger.info("%s moved from version %s to %s: loading it", self.uri, served, version)
        try:
            self.refresh(version)
        except Exception as exc:  # whatever broke, the served model stays
            self._load_failed(version)
            logger.error(
                "cannot serve version %s of %s, still serving version %s: %s: %s",
                version,
                self.uri,
                served,
                type(exc).__name__,
                exc,
            )
            return None
        self._failed = None
        return version


class StagedFollower(_RegistryPoller):
    """Following the version being rolled out (components.core.rollout): every `interval`
    seconds, which version is staged, in which stage and with which share. A new version is
    loaded and warmed by `load(version)` and only then served beside the champion; a new stage
    or share of the same version applies at once; no staged version ends the arm. A registry
    that cannot be read changes nothing."""

    thread_name = "staged-refresh"

    def __init__(
        self,
        project: str,
        registered_name: str,
        interval: float,
        serving: Callable[[], Staged | None],
        load: Callable[[Staged], None],
        update: Callable[[Staged | None], None],
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        super().__init__(project, interval, retry_seconds)
        self.registered_name = registered_name
        self.serving, self.load, self.update = serving, load, update

    def start(self) -> StagedFollower:
        self._thread.start()
        return self

    def check(self) -> Staged | None:
        """One look at the registry; the staged version served after it (None: none)."""
        served = self.serving()
        try:
            staged = rollout.current(self.registered_name)
        except Exception as exc:  # the registry may be down for a while; ask again next time
            logger.warning(
                "cannot read the staged version of %s: %s: %s",
                self.project,
                type(exc).__name__,
                exc,
            )
            return served
        if staged == served:
            return served
        if staged is None or (served is not None and staged.version == served.version):
            self.update(staged)
            logger.info("%s: staged now %s", self.project, _described(staged))
            return staged
        if self._waiting_to_retry(staged.version):
            return served
        try:
            self.load(staged)
        except Exception as exc:  # the champion serves on; the staged version is tried later
            self._load_failed(staged.version)
            logger.error(
                "cannot serve staged version %s of %s: %s: %s",
                staged.version,
                self.project,
                type(exc).__name__,
                exc,
            )
            return served
        self._failed = None
        logger.info("%s: staged now %s", self.project, _described(staged))
        return staged


def _described(staged: Staged | None) -> str:
    if staged is None:
        return "nothing (the champion answers every request)"
    share = f" on {staged.share:.0%} of the requests" if staged.share else ""
    return f"version {staged.version} in {staged.stage}{share}"
