"""The server's inference log: every answered prediction row, written off the request path.

A prediction hands its request's rows to `InferenceLogWriter.submit`. At a sample rate below 1 it
first keeps only that share of the requests, chosen by request id
(`components.core.inference_log.keeps`; the rest are counted in
`mlops_inference_log_sampled_out_total`), and every record it writes carries the rate, so that
monitoring counts each logged row as 1/rate served rows. It then only appends them to a queue
bounded in records: when the queue is full the rows are dropped and counted
(`mlops_inference_log_dropped_total`), so the log never blocks, slows or fails a prediction.
One background thread turns the queued rows into records (`components.core.inference_log.record`,
the one format monitoring reads back) and writes them with `write_part`, every `batch_records`
records or every `flush_seconds`, whichever comes first. A write that fails is logged and its
records counted as dropped. `close()` writes what is still queued, within a time limit.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve.logging import logger

from components.core.inference_log import (
    SERVED_STAGE,
    check_sample_rate,
    keeps,
    record,
    write_part,
)
from serving import metrics

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
DEFAULT_MAX_QUEUED = 10_000
DEFAULT_BATCH_RECORDS = 1_000
DEFAULT_FLUSH_SECONDS = 1.0
DEFAULT_CLOSE_SECONDS = 10.0
PACE_RECORDS = 32
"""Records the writer makes (about 0.3 ms of work) before it lets the requests' thread run."""
ERROR_LOG_INTERVAL_SECONDS = 60.0
"""A log root that keeps failing is reported once per this many seconds, with a count."""


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id(headers: Mapping[str, str] | None) -> str:
    """The client's `X-Request-ID` when it is at most 128 characters of `[A-Za-z0-9._:-]`,
    else a new id (uuid4, hex)."""
    if headers:
        given = headers.get("x-request-id") or headers.get(REQUEST_ID_HEADER)
        if given and _REQUEST_ID.fullmatch(given):
            return given
    return new_request_id()


@dataclass(frozen=True)
class Answered:
    """One answered request, as the predictor had it: column arrays, not yet records."""

    request_id: str
    when: dt.datetime
    model_version: str
    inputs: Mapping[str, np.ndarray]
    """The validated model frame's columns for this request's rows (NaN for a blank)."""
    outputs: Mapping[str, np.ndarray]
    """The response fields, one array each, in response order."""
    rows: int
    stage: str = SERVED_STAGE
    """The rollout stage of the version that answered (components.core.rollout)."""
    latency_ms: float | None = None
    """The model call that answered it (over its whole group of requests)."""
    error: str | None = None
    """Why the model call failed; `outputs` is then empty."""


def answered_spans(
    spans: Iterable[tuple[str, int, int]],
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    when: dt.datetime,
    version: str,
    stage: str,
    seconds: float,
    error: str | None = None,
) -> Iterator[Answered]:
    """One `Answered` per (request id, first row, end row) of a model call's columns."""
    for request_id, first, end in spans:
        window = slice(first, end)
        yield Answered(
            request_id,
            when,
            version,
            {name: values[window] for name, values in inputs.items()},
            {name: values[window] for name, values in outputs.items()},
            end - first,
            stage,
            round(seconds * 1000.0, 3),
            error,
        )


def _json_values(values: np.ndarray, whole: bool = False) -> list[Any]:
    """Plain JSON values: blanks and non-finite numbers as None, and, for an integer column,
    whole numbers as int (the model frame holds every number as a float)."""
    out: list[Any] = values.tolist()
    for i, value in enumerate(out):
        if isinstance(value, float):
            if not math.isfinite(value):
                out[i] = None
            elif whole and value.is_integer():
                out[i] = int(value)
    return out


def records(
    project: str, answered: Answered, whole: Collection[str] = (), sample_rate: float = 1.0
) -> list[dict[str, Any]]:
    """The log records of one answered request: one per row, numbered within the request."""
    inputs = {name: _json_values(a, name in whole) for name, a in answered.inputs.items()}
    outputs = {name: _json_values(a) for name, a in answered.outputs.items()}
    # a failed call's rows: its inputs, no outputs
    return [
        record(
            answered.request_id,
            row,
            answered.when,
            project,
            answered.model_version,
            {name: values[row] for name, values in inputs.items()},
            {name: values[row] for name, values in outputs.items()},
            sample_rate,
            answered.stage,
            answered.latency_ms,
            answered.error,
        )
        for row in range(answered.rows)
    ]


class _RecordQueue:
    """A FIFO of answered requests bounded by the rows (records) they hold, not their number."""

    def __init__(self, max_records: int, wake_at: int) -> None:
        self.max_records, self.wake_at = max_records, wake_at
        self._items: deque[Answered] = deque()
        self._records = 0
        self._changed = threading.Condition()

    def offer(self, item: Answered) -> bool:
        with self._changed:
            if self._records + item.rows > self.max_records:
                return False
            self._items.append(item)
            self._records += item.rows
            if self._records >= self.wake_at:
                self._changed.notify()
        return True

    def take(self, timeout: float, stopping: threading.Event) -> list[Answered]:
        """Everything queued, once `wake_at` records are there, `timeout` has passed, or on stop."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._records >= self.wake_at or stopping.is_set(), timeout
            )
            taken = list(self._items)
            self._items.clear()
            self._records = 0
        return taken

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    @property
    def records(self) -> int:
        return self._records


class InferenceLogWriter:
    def __init__(
        self,
        root: str,
        project: str,
        *,
        whole_columns: Collection[str] = (),
        max_queued: int = DEFAULT_MAX_QUEUED,
        batch_records: int = DEFAULT_BATCH_RECORDS,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        sample_rate: float = 1.0,
        write: Callable[[str, str, Iterable[Mapping[str, Any]]], object] = write_part,
    ) -> None:
        """`whole_columns`: integer input columns, logged as int rather than float;
        `sample_rate`: the share of requests logged (1: every one)."""
        if max_queued < 1:
            raise ValueError(
                f"the inference log queue must hold at least 1 record, not {max_queued}"
            )
        self.root, self.project = root, project
        self.sample_rate = check_sample_rate(sample_rate)
        self.whole_columns = frozenset(whole_columns)
        self.flush_seconds = flush_seconds
        self._write = write
        self._queue = _RecordQueue(max_queued, min(batch_records, max_queued))
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._dropped = metrics.INFERENCE_LOG_DROPPED.labels(project)
        self._sampled_out = metrics.INFERENCE_LOG_SAMPLED_OUT.labels(project)
        self._written = metrics.INFERENCE_LOG_RECORDS.labels(project)
        self._failures_unreported = 0
        self._last_error_logged = -math.inf

    def start(self) -> InferenceLogWriter:
        self._thread.start()
        logger.info(
            "inference log: %s rows to %s (%s of the requests; queue of %d records)",
            self.project,
            self.root,
            f"{self.sample_rate:.0%}" if self.sample_rate < 1 else "all",
            self._queue.max_records,
        )
        return self

    def submit(self, answered: Answered) -> bool:
        """Queues the request's rows; False (and counted as dropped) when the queue is full or
        the writer is closed. A request the sample rate leaves out is counted and not queued.
        Never blocks."""
        if not keeps(answered.request_id, self.sample_rate):
            self._sampled_out.inc(answered.rows)
            return True
        if not self._stopping.is_set() and self._queue.offer(answered):
            return True
        self._dropped.inc(answered.rows)
        return False

    def close(self, timeout: float = DEFAULT_CLOSE_SECONDS) -> None:
        """Stops taking rows and writes what is queued, waiting at most `timeout` seconds."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._queue.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning(
                "inference log: %d queued rows not written within %gs of shutdown",
                self._queue.records,
                timeout,
            )

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._flush(self._queue.take(self.flush_seconds, self._stopping))
        self._flush(self._queue.take(0.0, self._stopping))

    def _flush(self, answered: list[Answered]) -> None:
        if not answered:
            return
        rows = sum(a.rows for a in answered)
        try:
            self._write(self.root, self.project, self._paced(answered))
        except Exception as exc:  # a failed write loses its rows, never the server
            self._dropped.inc(rows)
            self._report(rows, exc)
            return
        self._written.inc(rows)

    def _paced(self, answered: list[Answered]) -> Iterator[dict[str, Any]]:
        """The records, the GIL handed back to the requests' thread every PACE_RECORDS: turning
        a second of traffic into JSON takes tens of milliseconds of Python, which would
        otherwise hold it in 5 ms turns (the interpreter's switch interval) while requests wait."""
        since_pause = 0
        for item in answered:
            for made in records(self.project, item, self.whole_columns, self.sample_rate):
                yield made
                since_pause += 1
                if since_pause >= PACE_RECORDS:
                    time.sleep(0)  # releases the GIL: a waiting request runs now
                    since_pause = 0

    def _report(self, rows: int, exc: Exception) -> None:
        self._failures_unreported += 1
        now = time.monotonic()
        if now - self._last_error_logged < ERROR_LOG_INTERVAL_SECONDS:
            return
        logger.error(
            "inference log: cannot write %d rows to %s (%d failed writes since the last report): "
            "%s: %s",
            rows,
            self.root,
            self._failures_unreported,
            type(exc).__name__,
            exc,
        )
        self._failures_unreported = 0
        self._last_error_logged = now
