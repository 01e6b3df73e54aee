"""The shadow: a staged version scoring a copy of the champion's traffic, off the request path.

After the champion has answered a group, `ShadowScorer.offer` queues the group's frame for the
staged version and returns: the requests' answers never wait on it. One background thread
predicts each queued group with the staged version and logs its rows with stage `shadow` under
the same request ids, so that the rollout judge can pair every shadow answer with the champion's.
The queue is bounded in rows: when it is full the rows are not scored, only counted
(`mlops_shadow_dropped_total`); a shadow that fails is counted per version
(`mlops_arm_errors_total`) and never touches a response.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from kserve.logging import logger

from components.core.loading import LoadedModel
from components.core.rollout import Stage
from serving import metrics
from serving.inference_log import InferenceLogWriter, answered_spans

if TYPE_CHECKING:
    from components.core.spec import ProjectSpec

DEFAULT_MAX_QUEUED_ROWS = 10_000


@dataclass(frozen=True)
class ShadowWork:
    loaded: LoadedModel
    frame: pd.DataFrame
    spans: Sequence[tuple[str, int, int]]
    """(request id, first row, end row) of each request in `frame`."""
    when: dt.datetime


class ShadowScorer:
    def __init__(
        self,
        spec: ProjectSpec,
        inference_log: InferenceLogWriter | None,
        max_queued_rows: int = DEFAULT_MAX_QUEUED_ROWS,
    ) -> None:
        self.spec = spec
        self.inference_log = inference_log
        self.max_queued_rows = max_queued_rows
        self._queue: queue.SimpleQueue[ShadowWork | None] = queue.SimpleQueue()
        self._queued_rows = 0
        self._lock = threading.Lock()
        self._dropped = metrics.SHADOW_DROPPED.labels(spec.name)
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    def offer(self, work: ShadowWork) -> bool:
        """Queues the group for the shadow version; False (counted) when the queue is full."""
        rows = len(work.frame)
        with self._lock:
            if self._queued_rows + rows > self.max_queued_rows:
                self._dropped.inc(rows)
                return False
            self._queued_rows += rows
        self._queue.put(work)
        return True

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while (work := self._queue.get()) is not None:
            try:
                self.score(work)
            finally:
                with self._lock:
                    self._queued_rows -= len(work.frame)

    def score(self, work: ShadowWork) -> None:
        provenance = work.loaded.provenance
        stage = str(Stage.SHADOW)
        began = time.perf_counter()
        error = None
        columns: dict[str, Any] = {}
        try:
            output = work.loaded.output(self.spec, work.frame)
            columns = self.spec.task.columns(output, work.loaded.threshold)
        except Exception as exc:  # the shadow's failure is its own: counted, never answered
            error = f"{type(exc).__name__}: {exc}"[:500]
            metrics.record_arm_error(self.spec.name, stage, provenance.version, len(work.spans))
            logger.warning(
                "shadow version %s of %s failed on %d rows: %s",
                provenance.version,
                self.spec.name,
                len(work.frame),
                error,
            )
        seconds = time.perf_counter() - began
        if error is None:
            metrics.record_arm(self.spec.name, stage, provenance.version, seconds, output)
        if self.inference_log is None:
            return
        inputs = {name: work.frame[name].to_numpy() for name in self.spec.input_columns}
        for answered in answered_spans(
            work.spans, inputs, columns, work.when, provenance.version, stage, seconds, error
        ):
            self.inference_log.submit(answered)
