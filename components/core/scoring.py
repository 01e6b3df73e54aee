"""Batch scoring: a file of rows in; out, one scored row per valid input row, in input order, by
one model version pinned for the whole batch, and the rows that failed validation set aside with
their reasons.

The pipeline's steps, each a function here: `pin` the model version; `screen_file` the rows
(the schema checks the server applies, row by row, a chunk at a time); `check_drift` of a
uniform `drift_sample` of the valid rows against the version's own reference (the monitoring
check); `shard_indices`; `score_shard` each shard with the pinned version, loaded by
`load_pinned` (its file verified before it is unpickled); `complete`: merge in input order with
DuckDB, `summarise` and `summary_html`. No step holds the whole batch: each streams chunks of
CHUNK_ROWS rows, so memory stays flat however many rows come. `screen`, `score_frame` and `merge`
are the same logic for rows already in memory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa

from components.core import engine, loading, model_uri, report
from components.core.compiled import CompiledModel, serving_threads
from components.core.contracts import (
    CHAMPION,
    DriftSummary,
    PinnedModel,
    Reference,
    RowScreening,
    ScoringSummary,
    trained_on_synthetic,
)
from components.core.drift import DriftPolicy, DriftResult, detect, no_reference, reference_label
from components.core.ingest import IngestError, parse_csv, read_bytes
from components.core.lineage import Provenance, file_sha256
from components.core.metrics import QUANTILES
from components.core.outputs import reason_fields
from components.core.spec import ProjectSpec
from components.core.tasks import fields_of
from components.core.validate import column_violations, parse_number

ROW_NUMBER = "row_number"
ROW_NUMBER_MEANS = (
    "the row's 1-based position among the input file's data rows (header not counted)"
)
MODEL_NAME, MODEL_VERSION, SCORED_AT = "model_name", "model_version", "scored_at"
REJECTED_FIELDS = ("field", "rule", "value", "reason")
"""The columns of a rejected row after its row number and identifiers: one line per problem."""
FORMATS = ("csv", "parquet")
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
DRIFT_GATES = ("warn", "stop", "off")
MAX_REJECTED_SHARE = 0.1
SHARD_ROWS = 1_000_000
"""Valid rows per shard, each scored by its own task (a pod on a cluster)."""
CHUNK_ROWS = 65_536
"""Rows read, checked, scored and written at a time: every step holds one chunk, not the batch."""
DRIFT_SAMPLE_ROWS = 20_000
"""Valid rows the drift check compares with the reference: all of a smaller batch, else a
uniform sample of this many drawn while the rows stream by."""
UNVERIFIED_HINT = "allow_unverified_model=true (make score ALLOW_UNVERIFIED=1)"


class FileArtifact(Protocol):
    uri: str
    path: str


class ScoringError(ValueError):
    """The batch cannot be scored as asked; the message names the problem."""


class DriftStopped(ScoringError):
    """The batch drifted and the drift gate is `stop`."""


def _utc_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ScoringError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


# -- the model version ------------------------------------------------------------------------


def requested_uri(spec: ProjectSpec, model_version: str) -> str:
    """`models:/NAME/VERSION` for a version number, the champion alias for ""."""
    wanted = model_version.strip()
    if not wanted:
        return f"{model_uri.MODELS_SCHEME}{spec.name}@{CHAMPION}"
    if not wanted.isdigit():
        raise ScoringError(
            f"model_version must be a version number of {spec.name} (e.g. 3), or empty for the "
            f"champion; got {model_version!r}"
        )
    return f"{model_uri.MODELS_SCHEME}{spec.name}/{int(wanted)}"


def pin(spec: ProjectSpec, model_version: str = "", allow_unverified: bool = False) -> PinnedModel:
    """The version to score with, resolved once (the alias may move while the shards run), and
    the digest its model file must have: the version's registered tag. A version without one is
    refused unless `allow_unverified`; then the file is downloaded and its digest pinned, so that
    every shard at least loads the same file. The MLflow tracking URI is set by the caller."""
    from mlflow.exceptions import MlflowException

    requested = requested_uri(spec, model_version)
    try:
        found = loading.registry_version(requested)
    except MlflowException as exc:
        raise ScoringError(
            f"cannot score with {requested}: the registry has no such version or alias "
            f"({type(exc).__name__}: {exc}); register a champion first (make run) or name an "
            "existing version"
        ) from None
    version = str(found.version)
    pinned = f"{model_uri.MODELS_SCHEME}{found.name}/{version}"
    tags = dict(found.tags or {})
    digest = (tags.get(loading.DIGEST_TAG) or "").strip().lower()
    verified = bool(digest)
    if not verified:
        if not allow_unverified:
            raise loading.ModelVerificationError(
                f"cannot score with {requested} (version {version}): it has no "
                f"{loading.DIGEST_TAG} tag, so nothing vouches for its model file (versions "
                f"registered before the register step recorded one); pass {UNVERIFIED_HINT} "
                "to score with it unchecked"
            )
        digest = _file_digest(pinned)
        loading.logger.warning(
            "scoring with %s UNVERIFIED: no %s tag; pinned the file's sha256 %s for every shard",
            pinned,
            loading.DIGEST_TAG,
            digest,
        )
    synthetic = trained_on_synthetic(tags, lambda: run_tags(str(found.run_id or "")))
    return PinnedModel(
        project=spec.name,
        requested=requested,
        name=str(found.name),
        version=version,
        run_id=str(found.run_id or loading.UNKNOWN),
        uri=pinned,
        model_file_sha256=digest,
        verified=verified,
        trained_on_synthetic=synthetic,
    )


def run_tags(run_id: str) -> dict[str, str]:
    import mlflow

    return dict(mlflow.get_run(run_id).data.tags) if run_id else {}


def _file_digest(uri: str) -> str:
    """sha256 of the model file of a registry version, as a shard downloads it."""
    import mlflow

    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    description = mlflow.models.Model.load(str(path))
    return file_sha256(loading.model_file(path, description, uri))


def load_pinned(spec: ProjectSpec, pinned: PinnedModel) -> loading.LoadedModel:
    """The pinned version, its file checked against the pinned digest (and its tag) before it is
    unpickled."""
    source = (
        f"the {loading.DIGEST_TAG} tag pinned for the batch"
        if pinned.verified
        else "the digest pinned for the batch (UNVERIFIED)"
    )
    check = loading.Verification(pinned.model_file_sha256, require=True, expected_from=source)
    return loading.load(spec, pinned.uri, verification=check, threads=serving_threads())


# -- reading and screening ---------------------------------------------------------------------


def table_format(source: str) -> str:
    """csv or parquet, by the name's extension (of a URL's path)."""
    path = urlsplit(source).path if "://" in source else source
    found = SUFFIXES.get(Path(path).suffix.lower())
    if found is None:
        raise ScoringError(
            f"cannot tell the format of {source}: expected a name ending in {', '.join(SUFFIXES)}"
        )
    return found


def read_table(source: str) -> tuple[pd.DataFrame, str, str]:
    """(rows, sha256 of the bytes read, format) of a CSV or Parquet file at a path or URL."""
    kind = table_format(source)
    raw = read_bytes(source)
    if kind == "csv":
        frame = parse_csv(raw, source)
    else:
        try:
            frame = pd.read_parquet(io.BytesIO(raw))
        except Exception as exc:  # pyarrow raises several types for a file it cannot read
            raise IngestError(f"{source} is not a readable Parquet file: {exc}") from exc
        if frame.empty:
            raise IngestError(f"{source} has no rows")
    return frame.reset_index(drop=True), hashlib.sha256(raw).hexdigest(), kind


def shown(value: object) -> str:
    """A raw value as text: blank for a missing one, whole numbers without a decimal point."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float | np.floating) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value)


@dataclass
class Screened:
    valid: pd.DataFrame
    """Row number, the identifiers found, the input columns as the model reads them."""
    rejected: pd.DataFrame
    """One line per problem: row number, identifiers, field, rule, value, reason."""
    rows: int
    rejected_rows: int
    rejected_by_rule: dict[str, int]
    identifiers: list[str]
    ignored_columns: list[str]

    def record(
        self, source: str, sha256: str, source_format: str, max_share: float
    ) -> RowScreening:
        return RowScreening(
            source=source,
            source_sha256=sha256,
            source_format=source_format,
            rows=self.rows,
            valid_rows=len(self.valid),
            rejected_rows=self.rejected_rows,
            rejected_by_rule=self.rejected_by_rule,
            max_rejected_share=max_share,
            identifier_columns=self.identifiers,
            ignored_columns=self.ignored_columns,
        )


def _model_column(values: pd.Series, numeric: bool) -> pd.Series:
    """A checked column as the model reads it: text in a number column (a CSV column where some
    row was not a number) parsed by the schema check's own parser."""
    if numeric and values.dtype.kind not in "iuf":
        return pd.Series([parse_number(v) for v in values], index=values.index, dtype=float)
    return values


Problem = tuple[int, str, str, object, str]
"""(0-based row, field, rule code, raw value, rule in words)."""


@dataclass
class _Chunk:
    """The screening of a run of consecutive rows."""

    valid: pd.DataFrame
    rejected: pd.DataFrame
    bad_rows: int
    by_rule: dict[str, int]
    first: Problem | None


def _screen_chunk(
    spec: ProjectSpec, frame: pd.DataFrame, offset: int, identifiers: Sequence[str]
) -> _Chunk:
    """Rows `offset` to `offset + len(frame)` of a batch checked with the server's checks."""
    frame = frame.reset_index(drop=True)
    problems: list[Problem] = []
    by_rule: dict[str, set[int]] = {}
    for column in spec.columns:
        raw = frame[column.name].to_numpy(dtype=object)
        for violation in column_violations(column, frame[column.name]):
            by_rule.setdefault(violation.code, set()).update(violation.rows)
            for row in violation.rows:
                problems.append((row, column.name, violation.code, raw[row], violation.rule))
    problems.sort(key=lambda p: (p[0], spec.input_columns.index(p[1])))
    keep = np.ones(len(frame), dtype=bool)
    keep[[p[0] for p in problems]] = False
    valid = pd.DataFrame({ROW_NUMBER: np.flatnonzero(keep) + 1 + offset})
    for name in identifiers:
        valid[name] = frame[name].to_numpy()[keep]
    for column in spec.columns:
        numeric = column.dtype in ("float", "int")
        valid[column.name] = _model_column(frame[column.name], numeric).to_numpy()[keep]
    rejected = pd.DataFrame(
        {
            ROW_NUMBER: np.array([p[0] + 1 + offset for p in problems], dtype=np.int64),
            **{name: [frame[name].iat[p[0]] for p in problems] for name in identifiers},
            **dict(
                zip(
                    REJECTED_FIELDS,
                    (
                        [p[1] for p in problems],
                        [p[2] for p in problems],
                        [shown(p[3]) for p in problems],
                        [p[4] for p in problems],
                    ),
                    strict=True,
                )
            ),
        }
    )
    first = problems[0] if problems else None
    if first is not None:
        first = (first[0] + offset, *first[1:])
    return _Chunk(
        valid=valid,
        rejected=rejected,
        bad_rows=len(frame) - int(keep.sum()),
        by_rule={code: len(rows) for code, rows in by_rule.items()},
        first=first,
    )


@dataclass
class _Tally:
    """Counts over every chunk of a batch, and the share check made once all rows are in."""

    rows: int = 0
    bad_rows: int = 0
    by_rule: dict[str, int] = dataclasses.field(default_factory=dict)
    first: Problem | None = None

    def add(self, rows: int, chunk: _Chunk) -> None:
        self.rows += rows
        self.bad_rows += chunk.bad_rows
        for code, count in chunk.by_rule.items():
            self.by_rule[code] = self.by_rule.get(code, 0) + count
        if self.first is None:
            self.first = chunk.first

    def enforce(self, max_rejected_share: float, source: str) -> None:
        share = self.bad_rows / self.rows if self.rows else 0.0
        if share > max_rejected_share:
            assert self.first is not None
            counts = ", ".join(f"{code} {found:,}" for code, found in self.by_rule.items())
            row, field, _, value, rule = self.first
            raise ScoringError(
                f"{self.bad_rows:,} of {self.rows:,} rows ({share:.1%}) failed validation; at "
                f"most {max_rejected_share:.1%} may (max_rejected_share). Rows per rule: "
                f"{counts}; the first: row {row + 1}, field {field!r}: {rule} (value "
                f"{shown(value)!r})"
            )
        if self.bad_rows == self.rows:
            raise ScoringError(
                f"all {self.rows:,} rows of {source} failed validation: nothing to score"
            )

    def rules(self) -> dict[str, int]:
        return dict(sorted(self.by_rule.items()))


def _check_columns(
    spec: ProjectSpec, columns: Sequence[str], source: str
) -> tuple[list[str], list[str]]:
    """(identifiers found, columns ignored); a missing input column stops the batch."""
    missing = [c for c in spec.input_columns if c not in columns]
    if missing:
        raise ScoringError(
            f"{source} lacks the required column(s) {', '.join(missing)}; the {spec.name} "
            f"model reads {', '.join(spec.input_columns)}"
        )
    identifiers = [c for c in spec.identifier_columns if c in columns]
    known = {*spec.input_columns, *identifiers}
    return identifiers, [c for c in columns if c not in known]


def _check_share(max_rejected_share: float) -> None:
    if not 0.0 <= max_rejected_share <= 1.0:
        raise ScoringError(f"max_rejected_share must be between 0 and 1; got {max_rejected_share}")


def screen(
    spec: ProjectSpec,
    frame: pd.DataFrame,
    source: str = "the batch",
    max_rejected_share: float = MAX_REJECTED_SHARE,
) -> Screened:
    """Every row checked against the project's schema with the checks the server applies. Rows
    that break a rule are set aside with their reasons; more than `max_rejected_share` of them,
    or a missing input column, stops the batch with an error naming it."""
    _check_share(max_rejected_share)
    identifiers, ignored = _check_columns(spec, list(frame.columns), source)
    chunk = _screen_chunk(spec, frame, 0, identifiers)
    tally = _Tally()
    tally.add(len(frame), chunk)
    tally.enforce(max_rejected_share, source)
    return Screened(
        valid=chunk.valid,
        rejected=chunk.rejected,
        rows=tally.rows,
        rejected_rows=tally.bad_rows,
        rejected_by_rule=tally.rules(),
        identifiers=identifiers,
        ignored_columns=ignored,
    )


def screen_source(
    spec: ProjectSpec, source: str, max_rejected_share: float = MAX_REJECTED_SHARE
) -> tuple[Screened, RowScreening]:
    """A file read whole and screened, and the record of what it kept (for files that fit in
    memory; the validate step streams with `screen_file`)."""
    frame, sha256, kind = read_table(source)
    screened = screen(spec, frame, source, max_rejected_share)
    return screened, screened.record(source, sha256, kind, max_rejected_share)


# -- streaming a batch of any size -------------------------------------------------------------


def as_text(values: pd.Series) -> pd.Series:
    """Values as text, missing ones as None, whole numbers without a decimal point (as `shown`
    writes them): identifiers and text columns keep one type however each chunk was read."""
    kind = values.dtype.kind
    if kind in "iub":
        return values.astype(str).astype(object)
    if kind == "f":
        numbers = values.to_numpy(dtype=float)
        out = np.full(len(numbers), None, dtype=object)
        present = ~np.isnan(numbers)
        whole = present & np.isfinite(numbers) & (numbers == np.round(numbers))
        out[whole] = numbers[whole].astype(np.int64).astype(str)
        other = present & ~whole
        out[other] = numbers[other].astype(str)
        return pd.Series(out, index=values.index, dtype=object)
    raw = values.to_numpy(dtype=object)
    return pd.Series(
        [v if type(v) is str else (shown(v) or None) for v in raw], index=values.index, dtype=object
    )


def _valid_schema(spec: ProjectSpec, identifiers: Sequence[str]) -> pa.Schema:
    """The valid rows as written: the row number, identifiers as text, numbers as float64 and
    the other inputs as text, whatever each chunk of the file looked like."""
    numeric = {c.name for c in spec.columns if c.dtype in ("float", "int")}
    return pa.schema(
        [
            (ROW_NUMBER, pa.int64()),
            *((name, pa.string()) for name in identifiers),
            *((c.name, pa.float64() if c.name in numeric else pa.string()) for c in spec.columns),
        ]
    )


def _rejected_schema(identifiers: Sequence[str]) -> pa.Schema:
    return pa.schema(
        [
            (ROW_NUMBER, pa.int64()),
            *((name, pa.string()) for name in [*identifiers, *REJECTED_FIELDS]),
        ]
    )


def _typed(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    columns = {}
    for field in schema:
        values = frame[field.name]
        if pa.types.is_string(field.type):
            values = as_text(values)
        elif pa.types.is_floating(field.type):
            values = values.astype(float)
        columns[field.name] = values
    return pa.Table.from_pandas(pd.DataFrame(columns), schema=schema, preserve_index=False)


class _TableWriter:
    """Chunks of one schema appended to a CSV (header once) or a Parquet file (a row group per
    chunk); an empty batch still gets its header or schema."""

    def __init__(self, path: str | Path, kind: str, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        _check_choice("output_format", kind, FORMATS)
        self.schema, self.kind, self.rows = schema, kind, 0
        if kind == "parquet":
            self._parquet: Any = pq.ParquetWriter(str(path), schema)
        else:
            self._csv = open(path, "w", newline="")  # noqa: SIM115 - closed by close()
            pd.DataFrame({f.name: [] for f in schema}).to_csv(self._csv, index=False)

    def write(self, frame: pd.DataFrame) -> None:
        if not len(frame):
            return
        self.rows += len(frame)
        table = _typed(frame, self.schema)  # one type per column, CSV and Parquet alike
        if self.kind == "parquet":
            self._parquet.write_table(table)
        else:
            table.to_pandas().to_csv(self._csv, index=False, header=False)

    def close(self) -> None:
        if self.kind == "parquet":
            self._parquet.close()
        else:
            self._csv.close()


def _read_chunks(
    path: Path, kind: str, source: str, rows: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """The file's rows, `rows` at a time, as pandas reads them (CSV) or as stored (Parquet)."""
    if kind == "csv":
        with path.open("rb") as handle:
            if not handle.read(1 << 16).strip():
                raise IngestError(f"{source} is empty: no header and no rows")
        try:
            yield from pd.read_csv(path, chunksize=rows)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise IngestError(f"{source} is not a readable CSV file: {exc}") from exc
        return
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=rows)
        for batch in batches:
            yield batch.to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise IngestError(f"{source} is not a readable Parquet file: {exc}") from exc


def screen_file(
    spec: ProjectSpec,
    source: str,
    valid_path: str | Path,
    rejected_path: str | Path,
    rejected_format: str,
    max_rejected_share: float = MAX_REJECTED_SHARE,
    chunk_rows: int = CHUNK_ROWS,
) -> RowScreening:
    """The validate step: the file at `source` read `chunk_rows` at a time, every row screened as
    `screen` does; valid rows to Parquet (a row group per chunk), rejected rows with their
    reasons to `rejected_format`. Memory holds one chunk, whatever the file's size."""
    _check_share(max_rejected_share)
    kind = table_format(source)
    suffix = Path(urlsplit(source).path).suffix
    try:
        with engine.local_copy(source, suffix) as path:
            if not path.is_file():
                raise IngestError(f"data file not found: {path}")
            sha256 = file_sha256(path)
            tally, columns = _screen_chunks(
                spec,
                _read_chunks(path, kind, source, chunk_rows),
                source,
                valid_path,
                rejected_path,
                rejected_format,
            )
    except OSError as exc:
        raise IngestError(f"could not read {source}: {exc}") from exc
    if tally.rows == 0:
        raise IngestError(f"{source} has a header but no data rows")
    tally.enforce(max_rejected_share, source)
    identifiers, ignored = _check_columns(spec, columns, source)
    return RowScreening(
        source=source,
        source_sha256=sha256,
        source_format=kind,
        rows=tally.rows,
        valid_rows=tally.rows - tally.bad_rows,
        rejected_rows=tally.bad_rows,
        rejected_by_rule=tally.rules(),
        max_rejected_share=max_rejected_share,
        identifier_columns=identifiers,
        ignored_columns=ignored,
    )


def _screen_chunks(
    spec: ProjectSpec,
    chunks: Iterator[pd.DataFrame],
    source: str,
    valid_path: str | Path,
    rejected_path: str | Path,
    rejected_format: str,
) -> tuple[_Tally, list[str]]:
    tally = _Tally()
    columns: list[str] = []
    valid: _TableWriter | None = None
    rejected: _TableWriter | None = None
    try:
        for chunk in chunks:
            if valid is None:
                columns = list(chunk.columns)
                identifiers, _ = _check_columns(spec, columns, source)
                valid = _TableWriter(valid_path, "parquet", _valid_schema(spec, identifiers))
                rejected = _TableWriter(
                    rejected_path, rejected_format, _rejected_schema(identifiers)
                )
            assert rejected is not None
            found = _screen_chunk(spec, chunk, tally.rows, identifiers)
            tally.add(len(chunk), found)
            valid.write(found.valid)
            rejected.write(found.rejected)
    finally:
        for writer in (valid, rejected):
            if writer is not None:
                writer.close()
    return tally, columns


def table_path(artifact: FileArtifact, kind: str) -> str:
    """Where to write a table artifact: its URI gets the format's extension (as reports get
    `.html`), so that whoever downloads it can tell how to read it."""
    suffix = f".{_check_choice('output_format', kind, FORMATS)}"
    if not artifact.uri.endswith(suffix):
        artifact.uri = artifact.uri + suffix
    return artifact.path


# -- drift -------------------------------------------------------------------------------------


def reference_of(pinned: PinnedModel) -> tuple[Reference, pd.DataFrame] | None:
    """The pinned version's reference (tracking URI set by the caller); None when it has none."""
    from mlflow.exceptions import MlflowException

    from components.core import reference

    try:
        return reference.load(pinned.run_id)
    except (MlflowException, OSError):
        return None


def check_drift(
    spec: ProjectSpec,
    current: pd.DataFrame,
    version: str,
    found: tuple[Reference, pd.DataFrame] | None,
    gate: str = "warn",
    policy: DriftPolicy | None = None,
) -> DriftResult:
    """The monitoring check of the valid rows against the version's reference; gate `off`
    checks nothing. `enforce` then applies the gate."""
    _check_choice("drift_gate", gate, DRIFT_GATES)
    if gate == "off":
        return no_reference(spec, len(current), "not checked: the drift gate is off")
    if found is None:
        return no_reference(
            spec, len(current), f"not checked: {spec.name} v{version} has no reference"
        )
    record, rows = found
    label = reference_label(spec, version)
    found_policy = policy or DriftPolicy()
    current = current[spec.input_columns]
    return detect(spec, rows, current, record.importance, found_policy, label)


def enforce(spec: ProjectSpec, found: DriftSummary, gate: str) -> None:
    """Gate `stop` on a drifted batch raises DriftStopped naming the drifted columns; `warn`
    lets it through (the summary says so)."""
    if gate == "stop" and found.drift_detected:
        raise DriftStopped(
            f"{spec.name}: the batch drifted from {found.reference} ({found.reason}); drifted "
            f"column(s): {', '.join(found.drifted_columns)}. The drift gate is 'stop', so "
            "nothing was scored (drift_gate 'warn' scores and reports it)"
        )


def drift_verdict(found: DriftSummary, gate: str) -> str:
    if gate == "off" or not found.drift_detected:
        return found.reason
    return f"DRIFT, scored anyway (drift_gate {gate}): {found.reason}"


# -- shards ------------------------------------------------------------------------------------


def row_count(path: str | Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(str(path)).metadata.num_rows)


def shard_indices(rows: int, shard_rows: int) -> list[int]:
    """The shards of `rows` valid rows: shard i is rows i * shard_rows up to the next shard."""
    if shard_rows < 1:
        raise ScoringError(f"shard_rows must be at least 1; got {shard_rows}")
    return list(range(math.ceil(rows / shard_rows)))


def _read_rows(
    path: str | Path, start: int = 0, stop: int | None = None, batch_rows: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Rows `start` to `stop` (0-based, stop excluded) of a Parquet file, `batch_rows` at a time:
    only the row groups that hold them are read."""
    import pyarrow.parquet as pq

    file = pq.ParquetFile(str(path))
    meta = file.metadata
    stop = meta.num_rows if stop is None else min(stop, meta.num_rows)
    first = 0
    for group in range(meta.num_row_groups):
        rows = meta.row_group(group).num_rows
        if first + rows > start and first < stop:
            table = file.read_row_group(group)
            low, high = max(start - first, 0), min(stop - first, rows)
            for offset in range(low, high, batch_rows):
                yield table.slice(offset, min(batch_rows, high - offset)).to_pandas()
        first += rows
        if first >= stop:
            break


def read_shard(path: str | Path, index: int, shard_rows: int) -> Iterator[pd.DataFrame]:
    return _read_rows(path, index * shard_rows, (index + 1) * shard_rows)


def drift_sample(
    path: str | Path, size: int = DRIFT_SAMPLE_ROWS, seed: int = 0
) -> tuple[pd.DataFrame, int]:
    """(a uniform sample of at most `size` valid rows in input order, all the valid rows'
    count), drawn while the file streams by: a batch of at most `size` rows is its own sample."""
    from components.core.window import Reservoir, uniform_keys

    sample = Reservoir(size)
    for frame in _read_rows(path):
        sample.offer(frame, uniform_keys(frame[[ROW_NUMBER]], seed))
    return sample.rows(order=ROW_NUMBER), sample.offered


# -- scoring -----------------------------------------------------------------------------------


def value_text(value: object) -> str:
    text = shown(value)
    if text == "":
        return "blank"
    if isinstance(value, float | np.floating) and text == str(value):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return text


def reasons(spec: ProjectSpec, contributions: pd.DataFrame, inputs: pd.DataFrame) -> pd.DataFrame:
    """Each row's largest contributions by size, in words: "Age 58: +0.21" (the field, its
    value, and how much it moved the output, in the output's unit)."""
    values = contributions.to_numpy(dtype=float)
    names = list(contributions.columns)
    count = len(reason_fields())
    top = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :count]
    raw = inputs[names].to_numpy(dtype=object)
    texts = [
        [
            f"{names[j]} {value_text(raw[i, j])}: {spec.task.contribution_text(values[i, j])}"
            for j in top[i]
        ]
        for i in range(len(values))
    ]
    return pd.DataFrame(texts, columns=reason_fields()[: top.shape[1]], index=inputs.index)


def prediction_columns(
    spec: ProjectSpec, output: np.ndarray, threshold: float | None
) -> dict[str, np.ndarray]:
    """The project's fields for the model's outputs, as the server answers them."""
    return spec.task.columns(output, threshold)


def score_frame(
    spec: ProjectSpec,
    model: Any,
    threshold: float | None,
    frame: pd.DataFrame,
    version: str,
    background: pd.DataFrame | None = None,
    scored_at: str | None = None,
    compiled: CompiledModel | None = None,
    explainer: Any = None,
) -> pd.DataFrame:
    """Screened rows (row number, identifiers, inputs) scored: the row number and identifiers,
    the project's output fields, the top reasons when a `background` for the explainer (or the
    `explainer` itself, built once for many chunks) is given, then the model's name and version
    and when it scored them. The output comes from the version's `compiled` graph when given
    (the same figures, verified at registration and load)."""
    inputs = frame[spec.input_columns]
    output = compiled.output(inputs) if compiled else spec.task.model_output(model, inputs)
    # Built in one go: inserting columns one by one costs about a tenth of a fast model's call.
    columns: dict[str, Any] = {
        name: frame[name].to_numpy() for name in frame.columns if name not in spec.input_columns
    }
    columns |= prediction_columns(spec, output, threshold)
    if explainer is None and background is not None:
        from components.core.explain import explainer_for  # SHAP: only for shards with reasons

        explainer = explainer_for(spec, model, background)
    if explainer is not None:
        explanation = explainer.explain(inputs)
        texts = reasons(spec, explanation.contributions, inputs)
        columns |= {name: texts[name].to_numpy() for name in texts.columns}
    columns |= {MODEL_NAME: spec.name, MODEL_VERSION: version, SCORED_AT: scored_at or _utc_iso()}
    return pd.DataFrame(columns, index=frame.index)


def _merged_columns(spec: ProjectSpec, columns: Sequence[str]) -> list[str]:
    """The scored shards' columns with the risk rank after the decision (and risk band) when
    the project's output has one."""
    return fields_of(spec.task, columns)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _score_order(spec: ProjectSpec, con: Any, table: str, folder: Path) -> Path:
    """Every row's (row number, score) sorted by score, highest first, ties in input order, as
    a Parquet file: the risk rank is a row's place in it, the quantiles are read off it. DuckDB
    sorts out of core, so this holds for any number of rows."""
    path = folder / "order.parquet"
    score = _quoted(score_field(spec))
    con.execute(
        f"COPY (SELECT {ROW_NUMBER}, {score} AS score FROM {table} "
        f"ORDER BY score DESC, {ROW_NUMBER}) TO {_literal(path)} (FORMAT parquet)"
    )
    return path


def _merge_query(
    spec: ProjectSpec, con: Any, columns: Sequence[str], table: str, folder: Path
) -> tuple[str, Path | None]:
    """(SQL of the merged output, the score order when it was made): `table`'s rows, in input
    order already, with the risk rank (1 for the highest probability, ties in input order) when
    the project's output has one, joined by position to the ranks sorted back into input order;
    a row out of place stops the query."""
    names = _merged_columns(spec, columns)
    if not spec.task.rank:
        return f"SELECT {', '.join(map(_quoted, names))} FROM {table}", None
    order = _score_order(spec, con, table, folder)
    ranks = folder / "ranks.parquet"
    con.execute(
        f"COPY (SELECT {ROW_NUMBER}, file_row_number + 1 AS rank FROM "
        f"read_parquet({_literal(order)}, file_row_number = true) ORDER BY {ROW_NUMBER}) "
        f"TO {_literal(ranks)} (FORMAT parquet)"
    )
    selected = [
        f"CASE WHEN s.{ROW_NUMBER} = r.{ROW_NUMBER} THEN r.rank ELSE "
        f"error('scored rows out of input order at row ' || s.{ROW_NUMBER}) END AS "
        f"{_quoted(name)}"
        if name == spec.task.rank
        else f"s.{_quoted(name)}"
        for name in names
    ]
    sql = (
        f"SELECT {', '.join(selected)} FROM {table} s "
        f"POSITIONAL JOIN read_parquet({_literal(ranks)}) r"
    )
    return sql, order


def _check_complete(con: Any, table: str, expected_rows: int) -> None:
    """Every valid row in the shards exactly once."""
    rows, distinct = con.execute(
        f"SELECT count(*), count(DISTINCT {ROW_NUMBER}) FROM {table}"
    ).fetchall()[0]
    if rows == 0 or rows != expected_rows or distinct != rows:
        raise ScoringError(
            f"the shards hold {rows:,} scored rows ({rows - distinct} repeated); "
            f"expected each of the {expected_rows:,} valid rows once"
        )


def merge(spec: ProjectSpec, parts: Sequence[pd.DataFrame], expected_rows: int) -> pd.DataFrame:
    """Scored shards held in memory as one table, by the merge step's own query."""
    frames = [p for p in parts if len(p)]
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({ROW_NUMBER: []})
    with tempfile.TemporaryDirectory(prefix="merge-") as folder:
        con = engine.connect(Path(folder) / "spill")
        con.execute("SET preserve_insertion_order = true")
        con.register("parts", merged)
        _check_complete(con, "parts", expected_rows)
        con.execute(f"CREATE TEMP TABLE scored AS SELECT * FROM parts ORDER BY {ROW_NUMBER}")
        sql, _ = _merge_query(spec, con, list(merged.columns), "scored", Path(folder))
        found = con.execute(sql).df()
        con.close()
    return found


def _first_row_number(path: str | Path) -> int:
    import pyarrow.parquet as pq

    file = pq.ParquetFile(str(path))
    first = file.read_row_group(0, columns=[ROW_NUMBER]) if file.metadata.num_row_groups else None
    return int(first[ROW_NUMBER][0].as_py()) if first is not None and first.num_rows else 0


def _merge_files(
    spec: ProjectSpec,
    con: Any,
    parts: Sequence[str],
    expected_rows: int,
    out: str | Path,
    output_format: str,
    folder: Path,
) -> tuple[list[str], Path | None]:
    """The merge step: the scored shards' Parquet files (each a range of rows in input order)
    as one file in input order, written by DuckDB within its memory cap; returns the output's
    columns and the score order when it was made. Registers the shards as the view `scored`
    for the summary's figures."""
    import pyarrow.parquet as pq

    _check_choice("output_format", output_format, FORMATS)
    if not parts:
        raise ScoringError(f"no scored shards; expected each of the {expected_rows:,} rows once")
    con.execute("SET preserve_insertion_order = true")
    files = ", ".join(_literal(p) for p in sorted(parts, key=_first_row_number))
    con.execute(f"CREATE VIEW scored AS SELECT * FROM read_parquet([{files}])")
    _check_complete(con, "scored", expected_rows)
    columns = pq.ParquetFile(str(parts[0])).schema_arrow.names
    sql, order = _merge_query(spec, con, columns, "scored", folder)
    options = "FORMAT csv, HEADER true" if output_format == "csv" else "FORMAT parquet"
    con.execute(f"COPY ({sql}) TO {_literal(out)} ({options})")
    return _merged_columns(spec, columns), order


def output_columns(spec: ProjectSpec, with_reasons: bool, identifiers: Sequence[str]) -> list[str]:
    """The columns of a project's batch output, in order."""
    fields = spec.task.batch_fields()
    return [
        ROW_NUMBER,
        *identifiers,
        *fields,
        *(reason_fields() if with_reasons else []),
        MODEL_NAME,
        MODEL_VERSION,
        SCORED_AT,
    ]


def write_table(frame: pd.DataFrame, path: str | Path, table: str) -> None:
    _check_choice("output_format", table, FORMATS)
    if table == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def rejected_path(output: str | Path) -> str:
    """Where the rejected rows go beside an output file or URL: `<stem>.rejected.<ext>`."""
    folder, slash, name = str(output).rpartition("/")
    stem, dot, suffix = name.rpartition(".")
    rejected = f"{stem}.rejected.{suffix}" if dot else f"{name}.rejected"
    return f"{folder}{slash}{rejected}"


def score_shard(
    spec: ProjectSpec,
    pinned: PinnedModel,
    valid: str | Path,
    index: int,
    shard_rows: int,
    with_reasons: bool,
    out: str | Path,
) -> int:
    """The score step: shard `index` of the valid rows scored by the pinned version a chunk at
    a time into a Parquet file at `out`; returns the rows scored."""
    import pyarrow.parquet as pq

    loaded = load_pinned(spec, pinned)
    explainer = None
    if with_reasons:
        from components.core.explain import explainer_for

        explainer = explainer_for(spec, loaded.model, loaded.background)
    scored_at = _utc_iso()
    writer: Any = None
    rows = 0
    try:
        for frame in read_shard(valid, index, shard_rows):
            scored = score_frame(
                spec,
                loaded.model,
                loaded.threshold,
                frame,
                pinned.version,
                scored_at=scored_at,
                compiled=loaded.compiled,
                explainer=explainer,
            )
            table = pa.Table.from_pandas(scored, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(str(out), table.schema)
            writer.write_table(table.cast(writer.schema))
            rows += len(scored)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ScoringError(f"shard {index} holds no rows: the split and the valid rows disagree")
    return rows


# -- the summary -------------------------------------------------------------------------------


def score_field(spec: ProjectSpec) -> str:
    return spec.task.explained_field


def quantiles(values: np.ndarray) -> dict[str, float]:
    """The reference's figures (its scores are held in memory: a sample of training rows)."""
    if len(values) == 0:
        return {}
    found = {name: float(np.quantile(values, q)) for name, q in QUANTILES.items()}
    return {"min": float(np.min(values)), **found, "max": float(np.max(values))} | {
        "mean": float(np.mean(values))
    }


HISTOGRAM_ROWS = 100_000
"""Scores drawn for the page's histogram: all of a smaller batch, else a uniform sample."""


@dataclass
class ScoreFigures:
    """The scored rows' figures, computed by the engine over every row."""

    rows: int
    quantiles: dict[str, float]
    positive_share: float | None
    sample: np.ndarray
    """The scores of at most HISTOGRAM_ROWS rows, for the histogram."""


def score_figures(
    spec: ProjectSpec, con: Any, table: str, folder: Path, order: Path | None = None
) -> ScoreFigures:
    """Quantiles (interpolated as numpy's), mean and the labelled share over every row of
    `table` (a DuckDB view or registered frame), and a sample of the scores. The quantiles are
    read off the score order (`order`, made when not given), never from the scores in memory."""
    score = _quoted(score_field(spec))
    share = "NULL"
    positive = spec.task.positive_decision
    if positive is not None:
        literal = _literal(positive) if isinstance(positive, str) else str(positive)
        share = f"avg(CASE WHEN {_quoted(spec.task.decision)} = {literal} THEN 1.0 ELSE 0.0 END)"
    rows, mean, positive_share = con.execute(
        f"SELECT count(*), avg({score}), {share} FROM {table}"
    ).fetchall()[0]
    figures: dict[str, float] = {}
    if rows:
        order = order or _score_order(spec, con, table, folder)
        wanted = {"min": 1.0, **QUANTILES, "max": 0.0}  # of the order, highest first
        at = {
            name: (rows - 1) * (1.0 - q if name not in ("min", "max") else q)
            for name, q in wanted.items()
        }
        places = sorted({p for h in at.values() for p in (math.floor(h), math.ceil(h))})
        found = dict(
            con.execute(
                f"SELECT file_row_number, score FROM read_parquet({_literal(order)}, "
                f"file_row_number = true) WHERE file_row_number IN ({', '.join(map(str, places))})"
            ).fetchall()
        )
        for name, h in at.items():
            # h counts from the highest: between places floor and ceil, nearer the lower score
            high, low = found[math.floor(h)], found[math.ceil(h)]
            figures[name] = float(low + (high - low) * (math.ceil(h) - h))
        figures["mean"] = float(mean)
    sample = con.execute(
        f"SELECT {score} FROM {table} USING SAMPLE reservoir({HISTOGRAM_ROWS} ROWS) REPEATABLE (1)"
    ).fetchnumpy()[score_field(spec)]
    return ScoreFigures(
        rows=int(rows),
        quantiles=figures,
        positive_share=None if positive_share is None else float(positive_share),
        sample=np.asarray(sample, dtype=float),
    )


def summarise(
    spec: ProjectSpec,
    pinned: PinnedModel,
    screening: RowScreening,
    drift: DriftSummary,
    merged: pd.DataFrame | ScoreFigures,
    reference_scores: np.ndarray,
    *,
    shards: int,
    with_reasons: bool,
    gate: str,
    output_format: str,
    threshold: float | None = None,
    columns: Sequence[str] | None = None,
) -> ScoringSummary:
    """The run's record, from the merged rows or their figures (`columns`: the output's, when
    only figures are given). `threshold` (the model's) gives the reference's labelled share."""
    if isinstance(merged, pd.DataFrame):
        with tempfile.TemporaryDirectory(prefix="summary-") as folder:
            con = engine.connect(Path(folder) / "spill")
            con.register("merged", merged)
            figures = score_figures(spec, con, "merged", Path(folder))
            con.close()
        columns = list(merged.columns)
    else:
        figures = merged
    shares: dict[str, float | None] = {}
    if figures.positive_share is not None:
        shares["positive_share"] = figures.positive_share
        if threshold is not None and len(reference_scores):
            shares["reference_positive_share"] = float(np.mean(reference_scores >= threshold))
    return ScoringSummary(
        project=spec.name,
        model_name=pinned.name,
        model_version=pinned.version,
        model_file_sha256=pinned.model_file_sha256,
        model_verified=pinned.verified,
        source=screening.source,
        source_sha256=screening.source_sha256,
        rows=screening.rows,
        valid_rows=screening.valid_rows,
        rejected_rows=screening.rejected_rows,
        rejected_by_rule=screening.rejected_by_rule,
        scored_rows=figures.rows,
        shards=shards,
        with_reasons=with_reasons,
        drift_gate=gate,
        drift_detected=drift.drift_detected,
        drifted_columns=drift.drifted_columns,
        drift_reason=drift_verdict(drift, gate),
        output_columns=list(columns or []),
        output_format=output_format,
        score_field=score_field(spec),
        score_quantiles=figures.quantiles,
        reference_score_quantiles=quantiles(reference_scores),
        finished=_utc_iso(),
        **shares,
    )


def provenance(pinned: PinnedModel, summary: ScoringSummary, run: str) -> Provenance:
    checked = "" if pinned.verified else " (UNVERIFIED: no registered digest)"
    notice = (
        f"The model, {pinned.name} v{pinned.version}, learnt from SYNTHETIC data: its scores "
        "say nothing about the real problem."
        if pinned.trained_on_synthetic
        else ""
    )
    return Provenance(
        project=summary.project,
        synthetic=None,
        data=f"{summary.source} (sha256 {summary.source_sha256[:12]}, {summary.rows:,} rows read)",
        model=f"{pinned.uri} (asked for {pinned.requested}), model file sha256 "
        f"{pinned.model_file_sha256[:12]}{checked}",
        run=run,
        notice=notice,
        model_version=pinned.version,
        created=summary.finished,
    )


def _histogram(
    spec: ProjectSpec, scores: np.ndarray, reference_scores: np.ndarray, rows: int
) -> str:
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    both = np.concatenate([scores, reference_scores])
    low, high = float(both.min()), float(both.max())
    bins = np.linspace(low, high if high > low else low + 1.0, 30)
    drawn = f", a sample of {len(scores):,}" if len(scores) < rows else ""
    ax.hist(scores, bins=bins, density=True, alpha=0.6, label=f"this batch ({rows:,}{drawn})")
    if len(reference_scores):
        ax.hist(
            reference_scores,
            bins=bins,
            density=True,
            histtype="step",
            lw=2,
            label=f"reference ({len(reference_scores):,})",
        )
    ax.set(xlabel=f"{score_field(spec)} ({spec.output_unit})", ylabel="density")
    ax.legend()
    return report.figure_to_html(fig, "score distribution")


def summary_html(
    spec: ProjectSpec,
    summary: ScoringSummary,
    scores: np.ndarray,
    reference_scores: np.ndarray,
    where: Provenance,
) -> str:
    """The run's page: counts, rejected rows by rule, the scores against the same model's
    scores of its reference rows, and the drift verdict."""
    counts = pd.DataFrame(
        {
            "rows": ["read", "valid (scored)", "rejected"],
            "count": [f"{n:,}" for n in (summary.rows, summary.scored_rows, summary.rejected_rows)],
        }
    )
    rules = pd.DataFrame(
        {
            "rule": list(summary.rejected_by_rule),
            "rows": [f"{n:,}" for n in summary.rejected_by_rule.values()],
        }
    )
    names = list(summary.score_quantiles)
    figures = pd.DataFrame(
        {
            "figure": names,
            "this batch": [summary.score_quantiles[n] for n in names],
            "reference": [summary.reference_score_quantiles.get(n) for n in names],
        }
    )
    if summary.positive_share is not None:
        labelled = pd.DataFrame(
            {
                "figure": [f"share labelled {spec.task.positive_label}"],
                "this batch": [summary.positive_share],
                "reference": [summary.reference_positive_share],
            }
        )
        figures = pd.concat([figures, labelled], ignore_index=True)
    reference_note = (
        f"The reference is the same model's scores on its own reference rows "
        f"({len(reference_scores):,} rows of its training data)."
        if len(reference_scores)
        else "This version has no reference rows: no comparison."
    )
    reading = report.paragraph(
        f"{summary.scored_rows:,} of {summary.rows:,} rows scored by {summary.model_name} "
        f"v{summary.model_version}, {summary.rejected_rows:,} set aside; "
        f"{summary.shards} shard(s); reasons {'on' if summary.with_reasons else 'off'}. "
        f"Drift ({summary.drift_gate} gate): {summary.drift_reason}.",
        "reading",
    )
    sections = [
        ("Rows", report.table_html(counts)),
        (
            "Rejected rows by rule",
            report.table_html(rules)
            + report.paragraph(
                "A row breaking two rules counts under both; the rejected file lists every "
                "problem with its row number."
            )
            if len(rules)
            else report.paragraph("No row failed validation."),
        ),
        (
            f"Scores ({score_field(spec)}, {spec.output_unit}) against the reference",
            _histogram(spec, scores, reference_scores, summary.scored_rows)
            + report.table_html(figures)
            + report.paragraph(reference_note),
        ),
        (
            "Drift",
            report.paragraph(
                f"Drift gate {summary.drift_gate}: {summary.drift_reason}."
                + (
                    f" Drifted columns: {', '.join(summary.drifted_columns)}."
                    if summary.drifted_columns
                    else ""
                )
            ),
        ),
    ]
    title = f"{spec.title} ({spec.name}): batch scoring"
    return report.page(title, where, sections, reading)


@dataclass
class Finished:
    summary: ScoringSummary
    html: str


def complete(
    spec: ProjectSpec,
    pinned: PinnedModel,
    screening: RowScreening,
    drift: DriftSummary,
    parts: Sequence[str],
    out: str | Path,
    *,
    with_reasons: bool,
    gate: str,
    output_format: str,
    run: str,
) -> Finished:
    """The merge step: the scored shards' files written to `out` in input order, the same
    model's scores of its reference rows (MLflow tracking URI set by the caller), the summary
    record and its page."""
    with tempfile.TemporaryDirectory(prefix="merge-") as folder:
        con = engine.connect(Path(folder) / "spill")
        work = Path(folder)
        columns, order = _merge_files(
            spec, con, parts, screening.valid_rows, out, output_format, work
        )
        figures = score_figures(spec, con, "scored", work, order)
        con.close()
    found = reference_of(pinned)
    reference_scores = np.array([], dtype=float)
    threshold: float | None = None
    if found is not None:
        loaded = load_pinned(spec, pinned)
        reference_scores = loaded.output(spec, found[1][spec.input_columns])
        threshold = loaded.threshold
    summary = summarise(
        spec,
        pinned,
        screening,
        drift,
        figures,
        reference_scores,
        shards=len(parts),
        with_reasons=with_reasons,
        gate=gate,
        output_format=output_format,
        threshold=threshold,
        columns=columns,
    )
    where = provenance(pinned, summary, run)
    page = summary_html(spec, summary, figures.sample, reference_scores, where)
    return Finished(summary, page)


def batch_provenance(pinned: PinnedModel, screening: RowScreening, run: str) -> Provenance:
    """The drift report's header: the batch's valid rows and the pinned version."""
    return Provenance(
        project=pinned.project,
        synthetic=None,
        data=f"{screening.source} (sha256 {screening.source_sha256[:12]}): "
        f"{screening.valid_rows:,} valid of {screening.rows:,} rows",
        model=f"none: the rows are compared with {pinned.uri}'s reference",
        run=run,
        model_version=pinned.version,
    )
