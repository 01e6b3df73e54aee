"""The inference log: what a model server answered, one record per predicted row.

The server writes it (off the request path, in batches); monitoring reads a window of it back.
Files are partitioned by project and hour, Hive-style, under a root that is a local folder or
any fsspec URL (an object store on a cluster):

    <root>/<project>/date=YYYY-MM-DD/hour=HH/part-<utc time>-<pid>-<random>.jsonl
    <root>/<project>/date=YYYY-MM-DD/hour=HH/compacted-<utc time>-<digest>.parquet

The server writes JSON lines. Each line: {"schema_version", "request_id", "row", "time" (UTC,
ISO 8601), "project", "model_version", "sample_rate", "inputs": {raw field: value}, "outputs":
{response field: value}}. `sample_rate` is the share of requests the server logged (version 2;
version 1 records, which lack it, logged every request): a logged row stands for 1/sample_rate
served rows. A part file appears whole: it is written under a temporary name, then renamed.

`compact` (a monitoring step, never the server) turns an hour's JSON parts, once the hour is
over, into one Parquet file of flat columns (the meta columns, each input under its own name,
each output as `output.<field>`) that names the parts it replaced, then deletes them; a reader
that finds both reads the Parquet file only. A part that cannot be read is moved to the hour's
`_corrupt/` folder and counted, never the end of a run. With a retention of N days, it also
deletes the hours older than that and records where the log now starts (`_retention.json`).

`scan` streams a window as Arrow tables of the flat columns in bounded memory, from JSON parts
and Parquet files alike, skipping and counting what it cannot read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from components.core.contracts import LogMaintenance
from components.core.lineage import utc_now

if TYPE_CHECKING:
    from components.core.spec import ProjectSpec

SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
ROOT_ENV = "MLOPS_INFERENCE_LOG"
"""Where the server writes the log when no flag names it; empty or unset: no log."""
SAMPLE_ENV = "MLOPS_INFERENCE_LOG_SAMPLE"
"""The share of requests the server logs when no flag says (default 1: every request)."""
OUTPUT_PREFIX = "output."
META_COLUMNS = (
    "request_id", "row", "time", "model_version", "stage", "latency_ms", "error", "sample_rate",
)  # fmt: skip
SERVED_STAGE = "champion"
"""The stage of a row logged before stages were (schema_version 1 and 2): the champion's."""
PART_PREFIX, PART_SUFFIX = "part-", ".jsonl"
COMPACTED_PREFIX, COMPACTED_SUFFIX = "compacted-", ".parquet"
QUARANTINE = "_corrupt"
RETENTION_FILE = "_retention.json"
SOURCES_KEY = b"mlops.sources"
"""Parquet key-value metadata of a compacted file: the JSON parts it replaced."""
RETENTION_DAYS = 30.0
"""How long monitoring keeps the log by default (0: for ever)."""
SETTLE = dt.timedelta(minutes=5)
"""An hour is compacted once it has been over this long: a server flushes within seconds."""
BATCH_ROWS = 65_536
"""Rows per table a scan hands on: large enough that per-table work is negligible."""
_HASH_SPACE = float(1 << 64)


class InferenceLogError(ValueError):
    """The log cannot be used as asked; the message names the path and the problem."""


def check_sample_rate(rate: float, name: str = "the inference log's sample rate") -> float:
    """A share of requests to log: more than 0, at most 1."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(
            f"{name} must be more than 0 and at most 1 (1 logs every request); got {rate}"
        )
    return float(rate)


def keeps(request_id: str, rate: float) -> bool:
    """Whether a request is logged at `rate`: decided by its id, so that a retried request is
    logged or not alike and a test can know which are."""
    if rate >= 1.0:
        return True
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE < rate


def record(
    request_id: str,
    row: int,
    when: dt.datetime,
    project: str,
    model_version: str,
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    sample_rate: float = 1.0,
    stage: str = SERVED_STAGE,
    latency_ms: float | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """One logged row; `stage`: the rollout stage of the version that answered (champion,
    canary, or shadow for an answer logged and never returned); `latency_ms`: the model call
    that answered it; `error`: why the model call failed (then `outputs` is empty)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "request_id": request_id,
        "row": row,
        "time": when.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "project": project,
        "model_version": model_version,
        "stage": stage,
        "latency_ms": latency_ms,
        "error": error,
        "sample_rate": sample_rate,
        "inputs": dict(inputs),
        "outputs": dict(outputs),
    }


def partition(project: str, when: dt.datetime) -> str:
    when = when.astimezone(dt.UTC)
    return f"{project}/date={when:%Y-%m-%d}/hour={when:%H}"


def _filesystem(root: str) -> tuple[Any, str]:
    """The filesystem of `root` and the path in it, listing afresh: fsspec keeps one instance
    per store for the process, and an object store's instance caches listings, which would hide
    the parts written since (by the servers) from a reader that already looked."""
    fs, base = fsspec.core.url_to_fs(root)
    fs.invalidate_cache()
    return fs, base


def write_part(root: str, project: str, records: Iterable[Mapping[str, Any]]) -> str | None:
    """Writes the records of one batch, grouped into their hours' part files; returns the last
    path written (None for no records)."""
    by_hour: dict[str, list[str]] = {}
    folders: dict[str, str] = {}  # one parse per hour and offset, not per record
    for item in records:
        text = item["time"]
        key = text[:13] + text[-6:]
        folder = folders.get(key)
        if folder is None:
            folder = folders[key] = partition(project, dt.datetime.fromisoformat(text))
        by_hour.setdefault(folder, []).append(json.dumps(item, allow_nan=False, default=str))
    fs, base = fsspec.core.url_to_fs(root)  # a writer needs no fresh listing
    written = None
    for folder, lines in by_hour.items():
        directory = f"{base.rstrip('/')}/{folder}"
        fs.makedirs(directory, exist_ok=True)
        name = f"{PART_PREFIX}{_stamp()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{PART_SUFFIX}"
        temporary = f"{directory}/.{name}.tmp"
        with fs.open(temporary, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        fs.mv(temporary, f"{directory}/{name}")
        written = f"{directory}/{name}"
    return written


def _stamp() -> str:
    return f"{utc_now():%Y%m%dT%H%M%S%f}"


# -- the columns -------------------------------------------------------------------------------

_ARROW = {"float": pa.float64(), "int": pa.int64(), "string": pa.string()}


@dataclass(frozen=True)
class LogSchema:
    """The types of a project's logged fields: how its JSON lines are parsed and its Parquet
    files written. Numbers are float64 (the server's model frame holds every number as a float),
    text and dates are strings."""

    inputs: Mapping[str, pa.DataType]
    outputs: Mapping[str, pa.DataType]

    @classmethod
    def of(cls, spec: ProjectSpec) -> LogSchema:
        inputs = {
            c.name: pa.float64() if c.dtype in ("float", "int") else pa.string()
            for c in spec.columns
        }
        outputs = {name: _ARROW[kind] for name, kind in spec.task.fields().items()}
        return cls(inputs, outputs)

    def json_schema(self) -> pa.Schema:
        return pa.schema(
            [
                ("schema_version", pa.int64()),
                ("request_id", pa.string()),
                ("row", pa.int64()),
                ("time", pa.timestamp("us", tz="UTC")),
                ("model_version", pa.string()),
                ("stage", pa.string()),
                ("latency_ms", pa.float64()),
                ("error", pa.string()),
                ("sample_rate", pa.float64()),
                ("inputs", pa.struct(list(self.inputs.items()))),
                ("outputs", pa.struct(list(self.outputs.items()))),
            ]
        )

    def flat(self) -> pa.Schema:
        """The columns a scan yields and a compacted file holds."""
        return pa.schema(
            [
                ("request_id", pa.string()),
                ("row", pa.int64()),
                ("time", pa.timestamp("us", tz="UTC")),
                ("model_version", pa.string()),
                ("stage", pa.string()),
                ("latency_ms", pa.float64()),
                ("error", pa.string()),
                ("sample_rate", pa.float64()),
                *self.inputs.items(),
                *((OUTPUT_PREFIX + name, kind) for name, kind in self.outputs.items()),
            ]
        )


@dataclass
class Skipped:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class PartError(ValueError):
    """A part that cannot be read; the message says why."""


def _flat_table(table: pa.Table) -> pa.Table:
    """A parsed JSON part as flat columns: inputs by name, outputs as `output.<field>`."""
    versions = set(pc.unique(table["schema_version"]).to_pylist())
    if not versions <= set(READABLE_VERSIONS):
        found = ", ".join(str(v) for v in sorted(versions, key=str))
        raise PartError(
            f"schema_version {found}, expected one of {', '.join(map(str, READABLE_VERSIONS))}"
        )
    columns: dict[str, pa.ChunkedArray] = {}
    for name in META_COLUMNS:
        if name in table.column_names:
            columns[name] = table[name]
    columns["stage"] = _with_stage(table)
    for name, kind in (("latency_ms", pa.float64()), ("error", pa.string())):
        # absent before schema 3, and null-typed where no row of a part has one
        given = columns.get(name)
        columns[name] = (
            pa.chunked_array([pa.nulls(table.num_rows, kind)])
            if given is None
            else given.cast(kind)
        )
    if "sample_rate" not in columns:
        columns["sample_rate"] = pa.chunked_array([pa.nulls(table.num_rows, pa.float64())])
    columns["sample_rate"] = pc.fill_null(columns["sample_rate"].cast(pa.float64()), 1.0)
    if "time" in columns and not pa.types.is_timestamp(columns["time"].type):
        columns["time"] = columns["time"].cast(pa.timestamp("us", tz="UTC"))
    for group, prefix in (("inputs", ""), ("outputs", OUTPUT_PREFIX)):
        if group not in table.column_names:
            continue
        struct = table[group].combine_chunks()
        if not pa.types.is_struct(struct.type):
            raise PartError(f"{group!r} is not an object")
        for index in range(struct.type.num_fields):
            name = struct.type.field(index).name
            columns[prefix + name] = pa.chunked_array([pc.struct_field(struct, index)])
    missing = [name for name in ("request_id", "row", "time") if name not in columns]
    if missing:
        raise PartError(f"records without {', '.join(missing)}: not inference log records")
    return pa.table(columns)


def _with_stage(table: pa.Table) -> pa.ChunkedArray:
    """The table's stage column, the champion's where a row has none (logged before stages)."""
    if "stage" not in table.column_names:
        return pa.chunked_array([pa.array([SERVED_STAGE] * table.num_rows, pa.string())])
    return pc.fill_null(table["stage"].cast(pa.string()), SERVED_STAGE)


def _set_stage(table: pa.Table) -> pa.Table:
    stage = _with_stage(table)
    if "stage" in table.column_names:
        return table.set_column(table.column_names.index("stage"), "stage", stage)
    return table.append_column("stage", stage)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns: absent ones null, every one cast to its type."""
    columns = []
    for target in schema:
        if target.name in table.column_names:
            columns.append(table[target.name].cast(target.type))
        else:
            columns.append(pa.nulls(table.num_rows, target.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _read_json_part(raw: bytes, schema: LogSchema | None) -> pa.Table:
    """One JSON part as flat columns (typed by `schema`, or as parsed); PartError if it cannot
    be read whole (a torn line, not JSON, not log records)."""
    if not raw.strip():
        raise PartError("empty file")
    options = (
        pj.ParseOptions(explicit_schema=schema.json_schema(), unexpected_field_behavior="ignore")
        if schema
        else pj.ParseOptions()
    )
    try:
        table = pj.read_json(
            io.BytesIO(raw),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, len(raw))),
            parse_options=options,
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PartError(f"not JSON lines of log records ({exc})") from None
    if "schema_version" not in table.column_names:
        raise PartError("records without schema_version: not inference log records")
    try:
        flat = _flat_table(table)
        return conform(flat, schema.flat()) if schema else flat
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise PartError(f"fields of the wrong type ({exc})") from None


JSON_BATCH_BYTES = 8 << 20
"""JSON parts are parsed together up to this many bytes: one parse for hundreds of small parts
(the server writes one a second) instead of one each."""


@dataclass
class _JsonBatch:
    read: list[str]
    """The parts whose rows `table` holds."""
    table: pa.Table | None
    skipped: list[Skipped]


def _read_json_parts(
    fs: Any, paths: Iterable[str], schema: LogSchema | None
) -> Iterator[_JsonBatch]:
    """The parts' rows, parsed JSON_BATCH_BYTES at a time. A batch that does not parse whole is
    parsed again part by part, so that only its unreadable parts are skipped; a part gone since it
    was listed (compacted or pruned meanwhile) is passed over."""
    waiting: list[tuple[str, bytes]] = []
    size = 0

    def parsed() -> Iterator[_JsonBatch]:
        joined = b"".join(raw if raw.endswith(b"\n") else raw + b"\n" for _, raw in waiting)
        try:
            yield _JsonBatch([path for path, _ in waiting], _read_json_part(joined, schema), [])
        except PartError:
            for path, raw in waiting:
                try:
                    yield _JsonBatch([path], _read_json_part(raw, schema), [])
                except PartError as exc:
                    yield _JsonBatch([], None, [Skipped(path, str(exc))])

    for path in paths:
        try:
            with fs.open(path, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            continue
        except OSError as exc:
            yield _JsonBatch([], None, [Skipped(path, str(exc))])
            continue
        if not raw.strip():
            yield _JsonBatch([], None, [Skipped(path, "empty file")])
            continue
        waiting.append((path, raw))
        size += len(raw)
        if size >= JSON_BATCH_BYTES:
            yield from parsed()
            waiting, size = [], 0
    if waiting:
        yield from parsed()


# -- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hour:
    """One hour's folder and what it holds."""

    start: dt.datetime
    path: str
    parts: tuple[str, ...]
    """JSON parts no compacted file covers."""
    compacted: tuple[str, ...]
    covered: tuple[str, ...] = ()
    """JSON parts a compacted file already holds (left by an interrupted compaction)."""

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(hours=1)


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _ls(fs: Any, path: str) -> list[str]:
    try:
        return sorted(str(p) for p in fs.ls(path, detail=False))
    except FileNotFoundError:
        return []


def _folder_value(path: str, key: str) -> str | None:
    name = _name(path)
    return name.split("=", 1)[1] if name.startswith(f"{key}=") else None


def hours(
    fs: Any,
    base: str,
    project: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> Iterator[Hour]:
    """The hour folders of `project` that overlap [start, end), oldest first."""
    for date_path in _ls(fs, f"{base.rstrip('/')}/{project}"):
        day_text = _folder_value(date_path, "date")
        try:
            day = dt.date.fromisoformat(day_text or "")
        except ValueError:
            continue
        if (start is not None and day < start.astimezone(dt.UTC).date()) or (
            end is not None and day > end.astimezone(dt.UTC).date()
        ):
            continue
        for hour_path in _ls(fs, date_path):
            hour_text = _folder_value(hour_path, "hour")
            if hour_text is None or not hour_text.isdigit() or not 0 <= int(hour_text) < 24:
                continue
            begins = dt.datetime(day.year, day.month, day.day, int(hour_text), tzinfo=dt.UTC)
            if (start is not None and begins + dt.timedelta(hours=1) <= start) or (
                end is not None and begins >= end
            ):
                continue
            yield _hour(fs, begins, hour_path)


def _hour(fs: Any, begins: dt.datetime, path: str) -> Hour:
    names = {_name(p): p for p in _ls(fs, path)}
    compacted = [
        p
        for n, p in names.items()
        if n.startswith(COMPACTED_PREFIX) and n.endswith(COMPACTED_SUFFIX)
    ]
    covered: set[str] = set()
    for file in compacted:
        covered |= set(_sources(fs, file))
    parts = [p for n, p in names.items() if n.startswith(PART_PREFIX) and n.endswith(PART_SUFFIX)]
    return Hour(
        begins,
        path,
        tuple(p for p in parts if _name(p) not in covered),
        tuple(compacted),
        tuple(p for p in parts if _name(p) in covered),
    )


def _sources(fs: Any, path: str) -> list[str]:
    try:
        with fs.open(path, "rb") as handle:
            metadata = pq.ParquetFile(handle).metadata.metadata or {}
        return list(json.loads(metadata.get(SOURCES_KEY, b"[]")))
    except (OSError, ValueError, pa.ArrowException):
        return []  # an unreadable compacted file is counted when it is read


# -- reading a window --------------------------------------------------------------------------


@dataclass
class LogScan:
    """A window of the log, read as it is iterated: Arrow tables of the flat columns, rows with
    `start <= time < end`. After the iteration, `parts_read` and `skipped` say what it read."""

    root: str
    project: str
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    schema: LogSchema | None = None
    batch_rows: int = BATCH_ROWS
    stages: tuple[str, ...] | None = None
    """Only the rows these rollout stages answered (None: every row)."""
    answered: bool = False
    """Only rows a model answered (True), not those whose model call failed."""
    parts_read: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    def __iter__(self) -> Iterator[pa.Table]:
        fs, base = _filesystem(self.root)
        pending: list[pa.Table] = []
        waiting = 0
        for hour in hours(fs, base, self.project, self.start, self.end):
            for path in hour.compacted:
                for table in self._parquet(fs, path):
                    yield table
            for found in _read_json_parts(fs, hour.parts, self.schema):
                self.skipped.extend(found.skipped)
                self.parts_read += len(found.read)
                if found.table is None:
                    continue
                table = self._within(found.table)
                if not table.num_rows:
                    continue
                pending.append(table)
                waiting += table.num_rows
                if waiting >= self.batch_rows:
                    yield _concat(pending)
                    pending, waiting = [], 0
        if pending:
            yield _concat(pending)

    def _parquet(self, fs: Any, path: str) -> Iterator[pa.Table]:
        try:
            handle = fs.open(path, "rb")
            reader = pq.ParquetFile(handle)
        except FileNotFoundError:
            return  # pruned since it was listed
        except (OSError, pa.ArrowException) as exc:
            self.skipped.append(Skipped(path, f"not a readable Parquet file ({exc})"))
            return
        self.parts_read += 1
        rows = 0
        with handle:
            try:
                for batch in reader.iter_batches(batch_size=self.batch_rows):
                    table = pa.Table.from_batches([batch])
                    if self.schema is not None:
                        table = conform(table, self.schema.flat())
                    table = _set_stage(table)
                    rows += table.num_rows
                    yield self._within(table)
            except (OSError, pa.ArrowException) as exc:
                self.skipped.append(Skipped(path, f"unreadable after {rows:,} rows ({exc})"))

    def _within(self, table: pa.Table) -> pa.Table:
        if self.start is None and self.end is None and self.stages is None and not self.answered:
            return table
        keep = None
        if self.stages is not None:
            keep = pc.is_in(table["stage"], pa.array(self.stages, pa.string()))
        if self.answered and "error" in table.column_names:
            ok = pc.is_null(table["error"])
            keep = ok if keep is None else pc.and_(keep, ok)
        times = table["time"]
        if self.start is not None:
            after = pc.greater_equal(times, pa.scalar(self.start, pa.timestamp("us", tz="UTC")))
            keep = after if keep is None else pc.and_(keep, after)
        if self.end is not None:
            before = pc.less(times, pa.scalar(self.end, pa.timestamp("us", tz="UTC")))
            keep = before if keep is None else pc.and_(keep, before)
        return table.filter(keep)


def _concat(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")


def scan(
    root: str,
    project: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    schema: LogSchema | None = None,
    batch_rows: int = BATCH_ROWS,
    stages: tuple[str, ...] | None = None,
    answered: bool = False,
) -> LogScan:
    return LogScan(root, project, start, end, schema, batch_rows, stages, answered)


def read_window(
    root: str,
    project: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pd.DataFrame:
    """The logged rows of `project` with `start <= time < end` (either bound open when None),
    oldest first, as one DataFrame: the meta columns, each input field under its own name, each
    output as `output.<field>`. For windows that fit in memory (tests, a look at the log);
    monitoring streams the window with `scan`."""
    found = scan(root, project, start, end)
    tables = [t for t in found if t.num_rows]
    if not tables:
        return pd.DataFrame(columns=list(META_COLUMNS))
    table = _concat(tables)
    order = pc.sort_indices(table, sort_keys=[("time", "ascending")])
    frame = table.take(order).to_pandas()
    inputs = [c for c in frame.columns if c not in META_COLUMNS and not c.startswith(OUTPUT_PREFIX)]
    outputs = [c for c in frame.columns if c.startswith(OUTPUT_PREFIX)]
    return frame[[*META_COLUMNS, *inputs, *outputs]].reset_index(drop=True)


# -- compaction and retention ------------------------------------------------------------------


@dataclass
class _Tally:
    hours_compacted: int = 0
    parts_compacted: int = 0
    rows_compacted: int = 0
    quarantined: list[Skipped] = field(default_factory=list)
    hours_pruned: int = 0


def compact(
    root: str,
    project: str,
    schema: LogSchema,
    now: dt.datetime | None = None,
    retention_days: float = 0.0,
    settle: dt.timedelta = SETTLE,
) -> LogMaintenance:
    """Compacts every hour that ended at least `settle` ago, then, with `retention_days` > 0,
    deletes the hours that ended before `now - retention_days` and records the cut."""
    if retention_days < 0:
        raise InferenceLogError(
            f"retention_days must be 0 (keep everything) or more; got {retention_days}"
        )
    now = now or utc_now()
    fs, base = _filesystem(root)
    done = _Tally()
    cut = now - dt.timedelta(days=retention_days) if retention_days else None
    for hour in list(hours(fs, base, project)):
        if cut is not None and hour.end <= cut:
            fs.rm(hour.path, recursive=True)
            done.hours_pruned += 1
            continue
        for stale in hour.covered:  # left by a compaction interrupted after its rename
            fs.rm(stale)
        if hour.end + settle <= now and hour.parts:
            _compact_hour(fs, hour, schema, done)
    if cut is not None:
        for date_path in _ls(fs, f"{base.rstrip('/')}/{project}"):
            if _folder_value(date_path, "date") and not _ls(fs, date_path):
                fs.rm(date_path, recursive=True)
    kept = cut.astimezone(dt.UTC).isoformat(timespec="seconds") if cut is not None else ""
    if kept:
        marker = {"retention_days": retention_days, "kept_from": kept}
        with fs.open(f"{base.rstrip('/')}/{project}/{RETENTION_FILE}", "w") as handle:
            handle.write(json.dumps(marker))
    said = [
        f"{done.parts_compacted:,} JSON part(s) of {done.hours_compacted} closed hour(s) "
        f"compacted into Parquet ({done.rows_compacted:,} rows)"
    ]
    if done.quarantined:
        said.append(
            f"{len(done.quarantined)} unreadable part(s) moved to {QUARANTINE}/ "
            f"(first: {done.quarantined[0]})"
        )
    if kept:
        said.append(f"{done.hours_pruned} hour(s) older than {kept} pruned")
    return LogMaintenance(
        root=root,
        project=project,
        hours_compacted=done.hours_compacted,
        parts_compacted=done.parts_compacted,
        rows_compacted=done.rows_compacted,
        parts_quarantined=len(done.quarantined),
        quarantined=[str(q) for q in done.quarantined[:20]],
        hours_pruned=done.hours_pruned,
        kept_from=kept,
        summary="; ".join(said),
    )


def _compact_hour(fs: Any, hour: Hour, schema: LogSchema, done: _Tally) -> None:
    """The hour's JSON parts, in the order they were written, streamed into one Parquet file
    (row groups of about BATCH_ROWS): memory holds one row group, however busy the hour."""
    names: list[str] = []
    pending: list[pa.Table] = []
    rows = 0
    writer: pq.ParquetWriter | None = None
    temporary = f"{hour.path}/.{COMPACTED_PREFIX}{_stamp()}-{uuid.uuid4().hex[:8]}.tmp"
    with fs.open(temporary, "wb") as handle:
        try:
            for found in _read_json_parts(fs, sorted(hour.parts, key=_name), schema):
                for bad in found.skipped:
                    done.quarantined.append(bad)
                    fs.makedirs(f"{hour.path}/{QUARANTINE}", exist_ok=True)
                    fs.mv(bad.path, f"{hour.path}/{QUARANTINE}/{_name(bad.path)}")
                if found.table is None:
                    continue
                names.extend(_name(path) for path in found.read)
                pending.append(found.table)
                rows += found.table.num_rows
                if sum(t.num_rows for t in pending) >= BATCH_ROWS:
                    writer = _write_group(handle, writer, pending)
            if pending:
                writer = _write_group(handle, writer, pending)
            if writer is not None:
                writer.add_key_value_metadata({SOURCES_KEY: json.dumps(names)})
        finally:
            if writer is not None:
                writer.close()
    if not names:
        fs.rm(temporary)
        return
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    fs.mv(temporary, f"{hour.path}/{COMPACTED_PREFIX}{_stamp()}-{digest}{COMPACTED_SUFFIX}")
    for path in hour.parts:
        if _name(path) in names:
            fs.rm(path)
    done.hours_compacted += 1
    done.parts_compacted += len(names)
    done.rows_compacted += rows


def _write_group(
    handle: Any, writer: pq.ParquetWriter | None, pending: list[pa.Table]
) -> pq.ParquetWriter:
    table = pa.concat_tables(pending)
    pending.clear()
    if writer is None:
        writer = pq.ParquetWriter(handle, table.schema, compression="zstd")
    writer.write_table(table, row_group_size=max(table.num_rows, 1))
    return writer


def kept_from(root: str, project: str) -> dt.datetime | None:
    """Where the log starts since it was last pruned, or None if it never was."""
    fs, base = _filesystem(root)
    try:
        with fs.open(f"{base.rstrip('/')}/{project}/{RETENTION_FILE}", "r") as handle:
            return dt.datetime.fromisoformat(json.load(handle)["kept_from"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise InferenceLogError(
            f"{root}/{project}/{RETENTION_FILE} is not a retention record: {exc}"
        ) from None
