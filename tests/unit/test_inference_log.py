"""The inference log's files: partitioned by project and hour, written whole, read back by window;
unreadable parts skipped and counted; closed hours compacted into Parquet; old hours pruned."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from components.core import inference_log as log
from components.core.projects import PROJECTS


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
    # a time given with another offset lands in its UTC hour, whatever the hour text says
    other = {**rows(noon, 1, "paris")[0], "time": "2026-11-29T12:10:00+01:00"}
    log.write_part(str(tmp_path), "telecom", [other])
    [paris] = [p for p in tmp_path.rglob("part-*.jsonl") if '"paris"' in p.read_text()]
    assert paris.parent.name == "hour=11"
    paris.unlink()
    frame = log.read_window(str(tmp_path), "telecom")
    assert list(frame["request_id"]) == ["r1"] * 3 + ["late"] * 2
    assert list(frame.columns) == [*log.META_COLUMNS, "calls", "output.plan"]
    recent = log.read_window(str(tmp_path), "telecom", start=noon - dt.timedelta(minutes=1))
    assert list(recent["request_id"]) == ["late", "late"]
    assert log.read_window(str(tmp_path), "bankchurn").empty


def test_an_unreadable_part_is_skipped_and_named_never_the_end_of_the_read(tmp_path: Path) -> None:
    noon = dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)
    good = Path(str(log.write_part(str(tmp_path), "telecom", rows(noon, 2, "good"))))
    torn = Path(str(log.write_part(str(tmp_path), "telecom", rows(noon, 3, "torn"))))
    torn.write_text(torn.read_text() + '{"schema_version": 2, "request_')  # a torn last line
    foreign = Path(str(log.write_part(str(tmp_path), "telecom", rows(noon, 1, "foreign"))))
    foreign.write_text('{"schema_version": 9, "request_id": "x", "row": 0}\n')
    (good.parent / "part-garbage.jsonl").write_bytes(b"\x00\x01 not json at all")
    found = log.scan(str(tmp_path), "telecom")
    tables = list(found)
    assert sum(t.num_rows for t in tables) == 2 and found.parts_read == 1
    reasons = {Path(s.path).name: s.reason for s in found.skipped}
    assert set(reasons) == {torn.name, foreign.name, "part-garbage.jsonl"}
    assert "not JSON lines" in reasons[torn.name]
    assert "schema_version 9, expected one of 1, 2" in reasons[foreign.name]
    assert list(log.read_window(str(tmp_path), "telecom")["request_id"]) == ["good", "good"]


def test_version_1_records_read_as_logged_at_every_request(tmp_path: Path) -> None:
    noon = dt.datetime(2026, 11, 29, 12, tzinfo=dt.UTC)
    old = [
        {k: v for k, v in r.items() if k != "sample_rate"} | {"schema_version": 1}
        for r in rows(noon, 2)
    ]
    log.write_part(str(tmp_path), "telecom", old)
    log.write_part(
        str(tmp_path), "telecom", [r | {"sample_rate": 0.25} for r in rows(noon, 1, "r2")]
    )
    frame = log.read_window(str(tmp_path), "telecom")
    assert frame["sample_rate"].tolist() == [1.0, 1.0, 0.25]


def test_sampling_keeps_a_share_of_requests_chosen_by_their_id() -> None:
    ids = [f"request-{i}" for i in range(20_000)]
    kept = [i for i in ids if log.keeps(i, 0.1)]
    assert 1_850 < len(kept) < 2_150  # 10% within 5 standard errors
    assert kept == [i for i in ids if log.keeps(i, 0.1)]  # the same requests every time
    assert set(kept) <= {i for i in ids if log.keeps(i, 0.5)}  # a larger rate keeps a superset
    assert all(log.keeps(i, 1.0) for i in ids[:100])
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="more than 0 and at most 1"):
            log.check_sample_rate(bad)


def log_schema() -> log.LogSchema:
    return log.LogSchema.of(PROJECTS["telecom"])


def telecom_rows(when: dt.datetime, count: int, request: str) -> list[dict[str, object]]:
    inputs = {"calls": 40.0, "minutes": 311.9, "messages": 83.0, "mb_used": 19915.4}
    outputs = {"ultra_probability": 0.25, "recommended_plan": "Standard"}
    return [log.record(request, i, when, "telecom", "3", inputs, outputs) for i in range(count)]


def test_compaction_turns_closed_hours_into_parquet_and_reads_the_same_rows(tmp_path: Path) -> None:
    root = str(tmp_path)
    now = dt.datetime(2026, 11, 29, 12, 30, tzinfo=dt.UTC)
    for minutes in (-20, -10, 20):  # three parts in the 10:00 hour, one in the open 12:00 hour
        log.write_part(
            root,
            "telecom",
            telecom_rows(now - dt.timedelta(hours=2, minutes=-minutes), 4, f"m{minutes}"),
        )
    log.write_part(root, "telecom", telecom_rows(now, 2, "open"))
    torn = Path(
        str(log.write_part(root, "telecom", telecom_rows(now - dt.timedelta(hours=2), 1, "t")))
    )
    torn.write_text(torn.read_text()[:-20])
    before = log.read_window(root, "telecom")
    done = log.compact(root, "telecom", log_schema(), now=now)
    assert (done.hours_compacted, done.parts_compacted, done.rows_compacted) == (1, 3, 12)
    assert done.parts_quarantined == 1 and torn.name in done.quarantined[0]
    hour = tmp_path / "telecom" / "date=2026-11-29" / "hour=10"
    assert [p.name.split("-")[0] for p in hour.glob("*") if p.is_file()] == ["compacted"]
    assert (hour / log.QUARANTINE / torn.name).exists()  # set aside, not deleted
    assert len(list((tmp_path / "telecom" / "date=2026-11-29" / "hour=12").glob("part-*"))) == 1
    after = log.read_window(root, "telecom")
    assert sorted(after["request_id"]) == sorted(before["request_id"])
    assert after["output.ultra_probability"].tolist() == [0.25] * 14
    again = log.compact(root, "telecom", log_schema(), now=now)
    assert again.parts_compacted == 0  # nothing left to do


def test_a_compaction_interrupted_after_its_rename_counts_no_row_twice(tmp_path: Path) -> None:
    root = str(tmp_path)
    now = dt.datetime(2026, 11, 29, 12, 30, tzinfo=dt.UTC)
    part = Path(
        str(log.write_part(root, "telecom", telecom_rows(now - dt.timedelta(hours=2), 5, "a")))
    )
    saved = part.read_bytes()
    log.compact(root, "telecom", log_schema(), now=now)
    part.write_bytes(saved)  # as if the compaction stopped before deleting its source
    assert len(log.read_window(root, "telecom")) == 5
    log.compact(root, "telecom", log_schema(), now=now)
    assert not part.exists() and len(log.read_window(root, "telecom")) == 5


def test_retention_prunes_what_is_older_and_records_where_the_log_starts(tmp_path: Path) -> None:
    root = str(tmp_path)
    now = dt.datetime(2026, 11, 29, 12, 30, tzinfo=dt.UTC)
    for days in (0, 2, 5, 9):
        log.write_part(root, "telecom", telecom_rows(now - dt.timedelta(days=days), 2, f"d{days}"))
    done = log.compact(root, "telecom", log_schema(), now=now, retention_days=3)
    assert done.hours_pruned == 2 and done.kept_from == "2026-11-26T12:30:00+00:00"
    kept = log.read_window(root, "telecom")
    assert sorted(set(kept["request_id"])) == ["d0", "d2"]
    assert kept["time"].min() >= pd.Timestamp(done.kept_from)
    assert log.kept_from(root, "telecom") == dt.datetime.fromisoformat(done.kept_from)
    assert sorted(p.name for p in (tmp_path / "telecom").iterdir() if p.is_dir()) == [
        "date=2026-11-27",
        "date=2026-11-29",
    ]
    with pytest.raises(log.InferenceLogError, match="retention_days must be 0"):
        log.compact(root, "telecom", log_schema(), now=now, retention_days=-1)


def test_an_object_store_url_is_read_and_compacted_like_a_folder() -> None:
    root = "memory://inference-test"
    now = dt.datetime(2026, 11, 29, 12, 30, tzinfo=dt.UTC)
    log.write_part(root, "telecom", telecom_rows(now - dt.timedelta(hours=3), 3, "old"))
    log.write_part(root, "telecom", telecom_rows(now, 2, "new"))
    log.compact(root, "telecom", log_schema(), now=now, retention_days=1)
    assert sorted(log.read_window(root, "telecom")["request_id"]) == [
        "new",
        "new",
        "old",
        "old",
        "old",
    ]
