"""The inference log: what a model server answered, one JSON line per predicted row.

The server writes it (off the request path, in batches); monitoring reads a window of it back.
Files are partitioned by project and hour, Hive-style, under a root that is a local folder or
any fsspec URL (an object store on a cluster):

    <root>/<project>/date=YYYY-MM-DD/hour=HH/part-<utc time>-<pid>-<random>.jsonl

Each line: {"schema_version", "request_id", "row", "time" (UTC, ISO 8601), "project",
"model_version", "inputs": {raw field: value}, "outputs": {response field: value}}. A part file
appears whole: it is written under a temporary name and then renamed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import fsspec
import pandas as pd

SCHEMA_VERSION = 1
ROOT_ENV = "MLOPS_INFERENCE_LOG"
"""Where the server writes the log when no flag names it; empty or unset: no log."""
OUTPUT_PREFIX = "output."
META_COLUMNS = ("request_id", "row", "time", "model_version")


class InferenceLogError(ValueError):
    """The log cannot be read as asked; the message names the path and the problem."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def record(
    request_id: str,
    row: int,
    when: dt.datetime,
    project: str,
    model_version: str,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "request_id": request_id,
        "row": row,
        "time": when.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "project": project,
        "model_version": model_version,
        "inputs": dict(inputs),
        "outputs": dict(outputs),
    }


def partition(project: str, when: dt.datetime) -> str:
    when = when.astimezone(dt.UTC)
    return f"{project}/date={when:%Y-%m-%d}/hour={when:%H}"


def write_part(root: str, project: str, records: Iterable[Mapping[str, Any]]) -> str | None:
    """Writes the records of one batch, grouped into their hours' part files; returns the last
    path written (None for no records)."""
    by_hour: dict[str, list[str]] = {}
    for item in records:
        when = dt.datetime.fromisoformat(item["time"])
        by_hour.setdefault(partition(project, when), []).append(
            json.dumps(item, allow_nan=False, default=str)
        )
    fs, base = fsspec.core.url_to_fs(root)
    written = None
    for folder, lines in by_hour.items():
        directory = f"{base.rstrip('/')}/{folder}"
        fs.makedirs(directory, exist_ok=True)
        name = f"part-{utc_now():%Y%m%dT%H%M%S%f}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        temporary = f"{directory}/.{name}.tmp"
        with fs.open(temporary, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        fs.mv(temporary, f"{directory}/{name}")
        written = f"{directory}/{name}"
    return written


def _hour_of(path: str) -> dt.datetime | None:
    parts = dict(p.split("=", 1) for p in path.split("/") if p.startswith(("date=", "hour=")))
    try:
        return dt.datetime.fromisoformat(f"{parts['date']}T{parts['hour']}:00:00+00:00")
    except (KeyError, ValueError):
        return None


def read_window(
    root: str,
    project: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pd.DataFrame:
    """The logged rows of `project` with `start <= time < end` (either bound open when None),
    oldest first: the meta columns, each input field under its own name, each output as
    `output.<field>`."""
    fs, base = fsspec.core.url_to_fs(root)
    pattern = f"{base.rstrip('/')}/{project}/date=*/hour=*/part-*.jsonl"
    lines: list[dict[str, Any]] = []
    for path in sorted(fs.glob(pattern)):
        hour = _hour_of(path)
        if hour is None:
            continue
        if (start is not None and hour + dt.timedelta(hours=1) <= start) or (
            end is not None and hour >= end
        ):
            continue
        with fs.open(path, "r") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    item = json.loads(text)
                except ValueError as exc:
                    raise InferenceLogError(f"{path} line {number}: not JSON ({exc})") from None
                version = item.get("schema_version")
                if version != SCHEMA_VERSION:
                    raise InferenceLogError(
                        f"{path} line {number}: schema_version {version!r}, expected "
                        f"{SCHEMA_VERSION}"
                    )
                lines.append(item)
    return to_frame(lines, start, end)


def to_frame(
    lines: list[dict[str, Any]],
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pd.DataFrame:
    rows = [
        {
            **{k: item[k] for k in META_COLUMNS},
            **item["inputs"],
            **{OUTPUT_PREFIX + k: v for k, v in item["outputs"].items()},
        }
        for item in lines
    ]
    frame = pd.DataFrame(rows, columns=None if rows else list(META_COLUMNS))
    if frame.empty:
        return frame
    times = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    keep = pd.Series(True, index=frame.index)
    if start is not None:
        keep &= times >= pd.Timestamp(start)
    if end is not None:
        keep &= times < pd.Timestamp(end)
    order = times[keep].sort_values(kind="stable").index
    return frame.loc[order].reset_index(drop=True)
