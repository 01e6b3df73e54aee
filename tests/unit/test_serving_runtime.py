"""What keeps a server's tail short under load: the heap settled after each model swap, and
the inference log's writer handing the GIL back while it turns rows into records."""

from __future__ import annotations

import datetime as dt
import gc
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pytest

from serving import inference_log
from serving.inference_log import Answered, InferenceLogWriter
from serving.predictor import settle_heap


class _Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_settling_frees_the_last_swaps_cycles_and_freezes_what_is_alive() -> None:
    try:
        dropped = _Node()
        gone = weakref.ref(dropped)
        del dropped
        kept = _Node()
        settle_heap()
        assert gone() is None and gc.get_freeze_count() > 0
        # frozen: a full collection walks past it, as it walks past the models
        held = weakref.ref(kept)
        del kept
        gc.collect()
        assert held() is not None
        # the next swap's settling unfreezes first, so what the swap replaced is freed
        settle_heap()
        assert held() is None
    finally:
        gc.unfreeze()


def test_the_log_writer_hands_the_gil_back_while_it_makes_the_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(inference_log.time, "sleep", pauses.append)
    written: list[dict[str, Any]] = []

    def write(root: str, project: str, records: Iterable[Mapping[str, Any]]) -> None:
        written.extend(dict(r) for r in records)

    writer = InferenceLogWriter("unused", "telecom", write=write)
    when = dt.datetime.now(dt.UTC)
    answered = [
        Answered(
            f"r{i}",
            when,
            "3",
            {"calls": np.array([1.0, 2.0])},
            {"plan": np.array(["Ultra", "Standard"])},
            2,
        )
        for i in range(100)
    ]
    writer._flush(answered)
    assert len(written) == 200 and written[1]["outputs"] == {"plan": "Standard"}
    assert pauses == [0] * (200 // inference_log.PACE_RECORDS)


def test_every_collection_is_timed_once_however_often_the_watch_is_set() -> None:
    from prometheus_client import REGISTRY

    from serving import metrics

    def full(name: str) -> float:
        return REGISTRY.get_sample_value(f"mlops_gc_pause_seconds_{name}", {"generation": "2"}) or 0

    metrics.watch_gc()
    metrics.watch_gc()
    count, seconds = full("count"), full("sum")
    try:
        gc.collect()
        assert [c for c in gc.callbacks if c is metrics._time_collection] == [
            metrics._time_collection
        ]
        assert full("count") == count + 1 and full("sum") > seconds
    finally:
        gc.callbacks.remove(metrics._time_collection)
