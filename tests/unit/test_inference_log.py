"""The inference log's files: partitioned by project and hour, written whole, read back by window."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from components.core import inference_log as log


def rows(when: dt.datetime, count: int, request: str = "r1") -> list[dict[str, object]]:
    return [
        log.record(request, i, when, "telecom", "3", {"calls": float(i)}, {"plan": "Ultra"})
        for i in range(count)
    ]


def test_records_land_in_their_hour_and_read_back_in_time_order(tmp_path: Path) -> None:
    noon = dt.datetime(2026, 11, 29, 12, 30, tzinfo=dt.UTC)
    log.write_part(
        str(tmp_path), "telecom", rows(noon, 2, "late") + rows(noon - dt.timedelta(hours=1), 3)
    )
    folders = sorted(
        p.parent.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("part-*.jsonl")
    )
    assert folders == ["telecom/date=2026-11-29/hour=11", "telecom/date=2026-11-29/hour=12"]
    assert not list(tmp_path.rglob("*.tmp"))
    frame = log.read_window(str(tmp_path), "telecom")
    assert list(frame["request_id"]) == ["r1"] * 3 + ["late"] * 2
    assert list(frame.columns) == [*log.META_COLUMNS, "calls", "output.plan"]
    recent = log.read_window(str(tmp_path), "telecom", start=noon - dt.timedelta(minutes=1))
    assert list(recent["request_id"]) == ["late", "late"]
    assert log.read_window(str(tmp_path), "bankchurn").empty


def test_a_damaged_or_foreign_line_is_named(tmp_path: Path) -> None:
    noon = dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)
    path = Path(str(log.write_part(str(tmp_path), "telecom", rows(noon, 1))))
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(log.InferenceLogError, match=r"line 2: not JSON"):
        log.read_window(str(tmp_path), "telecom")
    path.write_text('{"schema_version": 9}\n')
    with pytest.raises(log.InferenceLogError, match="schema_version 9, expected 1"):
        log.read_window(str(tmp_path), "telecom")
