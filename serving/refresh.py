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

from components.core import model_uri
from components.core.loading import registry_provenance
from serving import metrics

DEFAULT_RETRY_SECONDS = 300.0


def follows_alias(uri: str) -> bool:
    parts = model_uri.parse(uri)
    return parts is not None and parts.alias is not None


class AliasRefresher:
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
        if interval <= 0:
            raise ValueError(f"the refresh interval must be positive, not {interval}")
        self.project, self.uri, self.interval = project, uri, interval
        self.served_version, self.refresh = served_version, refresh
        self.retry_seconds = retry_seconds
        self._failed: tuple[str, float] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-refresh", daemon=True)

    def start(self) -> AliasRefresher:
        self._thread.start()
        logger.info("following %s: checking the registry every %gs", self.uri, self.interval)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.check()

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
        if self._failed is not None:
            failed, when = self._failed
            if failed == version and time.monotonic() - when < self.retry_seconds:
                return None
        logger.info("%s moved from version %s to %s: loading it", self.uri, served, version)
        try:
            self.refresh(version)
        except Exception as exc:  # whatever broke, the served model stays
            self._failed = (version, time.monotonic())
            metrics.MODEL_REFRESH_FAILURES.labels(self.project).inc()
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
