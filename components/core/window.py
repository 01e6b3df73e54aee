"""A window of rows read in bounded memory, whatever its size: exact counts and output figures over
every row, a random sample of a stated size for the drift check, and the labelled rows written out
as they stream by. Monitoring reads the inference log or a file of served inputs this way; batch
scoring's drift check samples its valid rows with the same `Reservoir`.

Each logged row weighs 1/sample_rate (the share of requests the server logged), so counts and
shares stand for every served row; a row of a file weighs 1.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.core import engine, inference_log
from components.core.contracts import OutputFigures, WindowStats
from components.core.ingest import IngestError
from components.core.metrics import QUANTILES
from components.core.spec import ProjectSpec
from components.core.validate import DataValidationError, frame_violations

SAMPLE_ROWS = 20_000
"""Rows the drift check compares with the reference: a window up to this size is compared whole.
Evidently's distances settle long before (false alarms were 0 of 180 at 500 to 2,000 rows), and
twenty thousand rows take it a few seconds."""
BATCH_ROWS = inference_log.BATCH_ROWS
KEY, ORDER, WEIGHT = "_key", "_order", "_weight"
"""Columns the window adds: each row's random key, its place in the window, its weight."""
Z95 = 1.959963984540054
SKIPPED_SHOWN = 20
"""Unreadable parts named in the stats (all are counted)."""


class WindowError(ValueError):
    """The window cannot be read as asked; the message names the source and the problem."""


# -- sampling ----------------------------------------------------------------------------------


def uniform_keys(identity: pd.DataFrame, seed: int) -> np.ndarray:
    """A number in (0, 1) per row from a hash of its identity columns (request id and row, or a
    row number): the same row gets the same number in any run and any reading order."""
    hashed = pd.util.hash_pandas_object(identity, index=False, hash_key=f"{seed:016d}"[-16:])
    return (hashed.to_numpy(dtype=np.uint64) >> np.uint64(11)).astype(float) * 2.0**-53 + 2.0**-54


class Reservoir:
    """A weighted random sample without replacement of at most `size` rows, drawn as batches
    stream by (Efraimidis and Spirakis' A-ES: row i's key is u_i^(1/w_i), the largest keys are
    kept). Memory holds `size` rows plus one batch."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a sample must hold at least 1 row; got {size}")
        self.size = size
        self._rows: pd.DataFrame | None = None
        self._keys = np.empty(0)
        self.offered = 0

    def offer(self, frame: pd.DataFrame, u: np.ndarray, weight: np.ndarray | None = None) -> None:
        self.offered += len(frame)
        keys = np.log(u) if weight is None else np.log(u) / weight
        if self._rows is not None and len(self._keys) >= self.size:
            worst = self._keys.min()
            better = keys > worst
            frame, keys = frame[better], keys[better]
            if not len(frame):
                return
        rows = frame if self._rows is None else pd.concat([self._rows, frame], ignore_index=True)
        keys = keys if self._rows is None else np.concatenate([self._keys, keys])
        if len(keys) > self.size:
            best = np.argpartition(-keys, self.size - 1)[: self.size]
            rows, keys = rows.iloc[best], keys[best]
        self._rows, self._keys = rows.reset_index(drop=True), keys

    def rows(self, order: str | None = None) -> pd.DataFrame:
        """The sample, sorted by `order` when given."""
        if self._rows is None:
            return pd.DataFrame()
        found = self._rows
        if order is not None:
            found = found.sort_values(order, kind="stable")
        return found.reset_index(drop=True)


# -- figures -----------------------------------------------------------------------------------


def _wilson(share: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson's interval of a share seen in n rows (n may be an effective, weighted count)."""
    if n <= 0:
        return (math.nan, math.nan)
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclasses.dataclass
class _Moments:
    """Weighted sums of one output over the window, for its exact mean, spread and share."""

    rows: int = 0
    weight: float = 0.0
    weight_sq: float = 0.0
    total: float = 0.0
    total_sq: float = 0.0
    positive: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, values: np.ndarray, weights: np.ndarray, positive: np.ndarray | None) -> None:
        seen = np.isfinite(values)
        values, weights = values[seen], weights[seen]
        if not len(values):
            return
        self.rows += len(values)
        self.weight += float(weights.sum())
        self.weight_sq += float((weights * weights).sum())
        self.total += float((weights * values).sum())
        self.total_sq += float((weights * values * values).sum())
        self.low, self.high = (
            min(self.low, float(values.min())),
            max(self.high, float(values.max())),
        )
        if positive is not None:
            self.positive += float(weights[positive[seen]].sum())

    def figures(
        self, field: str, unit: str, positive_label: str | None, quantiles: dict[str, float]
    ) -> OutputFigures | None:
        if not self.rows:
            return None
        effective = self.weight**2 / self.weight_sq
        mean = self.total / self.weight
        spread = math.sqrt(max(0.0, self.total_sq / self.weight - mean * mean))
        half = Z95 * spread / math.sqrt(effective)
        share = self.positive / self.weight if positive_label is not None else None
        return OutputFigures(
            field=field,
            unit=unit,
            rows=self.rows,
            weighted_rows=self.weight,
            effective_rows=effective,
            mean=mean,
            mean_interval=(mean - half, mean + half),
            std=spread,
            minimum=self.low,
            maximum=self.high,
            positive_label=positive_label,
            positive_share=share,
            positive_share_interval=_wilson(share, effective) if share is not None else None,
            quantiles=quantiles,
        )


# -- the window --------------------------------------------------------------------------------


def _labelled_schema(spec: ProjectSpec) -> pa.Schema:
    """The columns of a window's labelled rows: every input, the target, where each row came from."""
    inputs = inference_log.LogSchema.of(spec).inputs
    return pa.schema(
        [
            *inputs.items(),
            (spec.target, pa.float64()),
            ("request_id", pa.string()),
            ("row", pa.int64()),
            ("time", pa.timestamp("us", tz="UTC")),
            ("model_version", pa.string()),
            ("sample_rate", pa.float64()),
            (KEY, pa.float64()),
            (ORDER, pa.int64()),
        ]
    )


class _Collector:
    """Takes the window's rows batch by batch: validates them, counts them, keeps its sample,
    writes its labelled rows to `labelled_path` and sums its outputs."""

    def __init__(self, spec: ProjectSpec, sample_rows: int, labelled_path: str | Path) -> None:
        self.spec = spec
        self.sample = Reservoir(sample_rows)
        self.labelled_path = str(labelled_path)
        self._labelled_schema = _labelled_schema(spec)
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.weight = 0.0
        self.labelled = 0
        self.by_version: dict[str, int] = {}
        self.rates: set[float] = set()
        self.moments = _Moments()
        task = spec.task
        self.output_field = inference_log.OUTPUT_PREFIX + task.explained_field
        self.decision = inference_log.OUTPUT_PREFIX + task.decision if task.decision else ""

    def add(self, batch: pd.DataFrame) -> None:
        """`batch`: the inputs, and where known the target, the outputs, `sample_rate`,
        `model_version`; KEY and ORDER set."""
        if not len(batch):
            return
        batch = batch.set_axis(range(self.rows, self.rows + len(batch)))
        present = [c for c in self.spec.input_columns if c in batch.columns]
        violations = frame_violations(self.spec, batch[present], with_target=False)
        if violations:
            shifted = [
                dataclasses.replace(v, rows=tuple(r + self.rows for r in v.rows))
                for v in violations
            ]
            raise DataValidationError(f"{self.spec.name} monitoring window", shifted)
        rates = batch["sample_rate"].to_numpy(dtype=float) if "sample_rate" in batch else None
        weights = 1.0 / rates if rates is not None else np.ones(len(batch))
        self.rows += len(batch)
        self.weight += float(weights.sum())
        if rates is not None:
            self.rates.update(np.unique(rates).tolist())
        if "model_version" in batch:
            for version, count in batch["model_version"].fillna("unknown").value_counts().items():
                self.by_version[str(version)] = self.by_version.get(str(version), 0) + int(count)
        if self.output_field in batch:
            positive = None
            if self.decision and self.decision in batch:
                positive = self.spec.task.positive_of(batch[self.decision])
            values = pd.to_numeric(batch[self.output_field], errors="coerce").to_numpy(dtype=float)
            self.moments.add(values, weights, positive)
        self.sample.offer(batch.assign(**{WEIGHT: weights}), batch[KEY].to_numpy(), weights)
        if self.spec.target in batch:
            self._write_labelled(batch[batch[self.spec.target].notna()])

    def _write_labelled(self, rows: pd.DataFrame) -> None:
        if not len(rows):
            return
        self.labelled += len(rows)
        schema = self._labelled_schema
        frame = rows[[name for name in schema.names if name in rows.columns]]
        table = inference_log.conform(pa.Table.from_pandas(frame, preserve_index=False), schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.labelled_path, schema, compression="zstd")
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is None:  # no labelled row: an empty file, so that readers need no case
            self._writer = pq.ParquetWriter(self.labelled_path, self._labelled_schema)
        self._writer.close()

    def output_figures(self, sample: pd.DataFrame) -> OutputFigures | None:
        quantiles: dict[str, float] = {}
        if self.output_field in sample:
            values = pd.to_numeric(sample[self.output_field], errors="coerce").dropna()
            if len(values):
                quantiles = {k: float(np.quantile(values, q)) for k, q in QUANTILES.items()}
        label = self.spec.task.positive_label
        field = self.output_field.removeprefix(inference_log.OUTPUT_PREFIX)
        return self.moments.figures(field, self.spec.output_unit, label, quantiles)


@dataclasses.dataclass
class Collected:
    """A window read: its sample (the whole window when it is small), its stats, and where its
    labelled rows were written."""

    sample: pd.DataFrame
    stats: WindowStats
    labelled_path: str


def joined_batches(
    spec: ProjectSpec, found: inference_log.LogScan, labels: str, seed: int = 0
) -> Iterator[pd.DataFrame]:
    """The scan's rows as DataFrames, `labels` (a path or URL; "" for none) joined on request
    id and row, as a monitoring window joins them."""
    return _log_batches(spec, found, labels, seed)


def _log_batches(
    spec: ProjectSpec, found: inference_log.LogScan, labels: str, seed: int
) -> Iterator[pd.DataFrame]:
    """The scan's rows as DataFrames with KEY and ORDER, labels joined on request id and row."""

    def keyed() -> Iterator[pa.RecordBatch]:
        order = 0
        for table in found:
            if not table.num_rows:
                continue
            frame = table.select(["request_id", "row"]).to_pandas()
            keys = uniform_keys(frame, seed)
            table = table.append_column(KEY, pa.array(keys)).append_column(
                ORDER, pa.array(np.arange(order, order + table.num_rows, dtype=np.int64))
            )
            order += table.num_rows
            yield from table.to_batches()

    if not labels:
        for batch in keyed():
            yield batch.to_pandas()
        return
    flat = inference_log.LogSchema.of(spec).flat()
    schema = flat.append(pa.field(KEY, pa.float64())).append(pa.field(ORDER, pa.int64()))
    with (
        tempfile.TemporaryDirectory(prefix="mlops-join-") as folder,
        engine.connect(Path(folder) / "spill") as con,
    ):
        _load_labels(con, spec, labels)
        # The log streams by and its size is unknown to the planner, which would then build the
        # join's hash table on it (all of the window) instead of on the labels.
        con.execute("SET disabled_optimizers = 'build_side_probe_side'")
        con.register("log", con.from_arrow(pa.RecordBatchReader.from_batches(schema, keyed())))
        joined = con.sql(
            f'SELECT log.*, labels.target AS "{spec.target}" FROM log '
            "LEFT JOIN labels USING (request_id, row)"
        )
        for batch in joined.to_arrow_reader(BATCH_ROWS):
            yield batch.to_pandas()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _load_labels(con: object, spec: ProjectSpec, labels: str) -> None:
    """The labels file (request_id, row, the target) as the table `labels`, one row per request
    row (the first label given wins); its target must be numeric."""
    import duckdb

    try:
        with engine.local_copy(labels, ".csv") as path:
            if not path.is_file():
                raise WindowError(f"labels file not found: {labels}")
            source = f"read_csv({_literal(str(path))}, header=true, all_varchar=true)"
            columns = [c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]  # type: ignore[attr-defined]
            missing = [c for c in ("request_id", spec.target) if c not in columns]
            if missing:
                raise WindowError(f"labels file {labels} lacks the column(s) {missing}")
            row = '"row"' if "row" in columns else "'0'"
            con.execute(  # type: ignore[attr-defined]
                f"""CREATE TEMP TABLE raw_labels AS SELECT request_id, {row} AS row_text,
                    "{spec.target}" AS target_text, row_number() OVER () AS line FROM {source}"""
            )
    except (OSError, duckdb.Error) as exc:
        raise WindowError(f"cannot read the labels file {labels}: {exc}") from None
    bad = con.execute(  # type: ignore[attr-defined]
        """SELECT count(*), any_value(target_text), any_value(row_text) FROM raw_labels
           WHERE (target_text IS NOT NULL AND TRY_CAST(target_text AS DOUBLE) IS NULL)
              OR TRY_CAST(row_text AS BIGINT) IS NULL"""
    ).fetchall()[0]
    if bad and bad[0]:
        raise WindowError(
            f"labels file {labels}: {bad[0]:,} line(s) whose {spec.target} is not a number or "
            f"whose row is not a whole number (e.g. {spec.target} {bad[1]!r}, row {bad[2]!r})"
        )
    con.execute(  # type: ignore[attr-defined]
        """CREATE TEMP TABLE labels AS SELECT request_id, CAST(row_text AS BIGINT) AS row,
           arg_min(CAST(target_text AS DOUBLE), line) AS target FROM raw_labels
           GROUP BY request_id, row;
           DROP TABLE raw_labels"""
    )


def _file_batches(spec: ProjectSpec, source: str, seed: int) -> Iterator[pd.DataFrame]:
    """A CSV of served inputs, a chunk at a time, with KEY and ORDER."""
    try:
        with engine.local_copy(source, ".csv") as path:
            if not path.is_file():
                raise IngestError(f"data file not found: {path}")
            order = 0
            try:
                chunks = pd.read_csv(path, chunksize=BATCH_ROWS)
                for chunk in chunks:
                    positions = np.arange(order, order + len(chunk), dtype=np.int64)
                    chunk[KEY] = uniform_keys(pd.DataFrame({"row": positions}), seed)
                    chunk[ORDER] = positions
                    order += len(chunk)
                    yield chunk
            except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
                raise IngestError(f"{source} is not a readable CSV file: {exc}") from exc
            if not order:
                raise IngestError(f"{source} has a header but no data rows")
    except OSError as exc:
        raise IngestError(f"could not read {source}: {exc}") from exc


def collect_log(
    spec: ProjectSpec,
    root: str,
    start: dt.datetime,
    end: dt.datetime,
    labels: str,
    labelled_path: str | Path,
    sample_rows: int = SAMPLE_ROWS,
    seed: int = 42,
) -> Collected:
    """The rows logged from `start` to `end`, with `labels` joined when given. A start before
    the log's retention is moved to where the log starts, and the stats say so."""
    note = ""
    kept = inference_log.kept_from(root, spec.name)
    if kept is not None and start < kept:
        note = (
            f"the window asked to start at {start:%Y-%m-%d %H:%M} UTC, but the log keeps only "
            f"what is newer than {kept:%Y-%m-%d %H:%M} UTC (its retention): the window starts "
            "there"
        )
        start = kept
    # The champion's rows: a staged version's (canary, shadow) are another model's answers,
    # which its rollout judges on their own.
    found = inference_log.scan(
        root, spec.name, start, end, inference_log.LogSchema.of(spec),
        stages=(inference_log.SERVED_STAGE,), answered=True,
    )  # fmt: skip
    described = f"inference log {root}, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    collector = _Collector(spec, sample_rows, labelled_path)
    for batch in _log_batches(spec, found, labels, seed):
        collector.add(batch)
    return _finish(collector, found, described, start, end, note)


def collect_file(
    spec: ProjectSpec,
    source: str,
    labelled_path: str | Path,
    sample_rows: int = SAMPLE_ROWS,
    seed: int = 42,
) -> Collected:
    """A CSV of served inputs at a path or URL; its target column, when there, is the ground
    truth."""
    collector = _Collector(spec, sample_rows, labelled_path)
    for batch in _file_batches(spec, source, seed):
        collector.add(batch)
    return _finish(collector, None, f"file {source}", None, None, "")


def _finish(
    collector: _Collector,
    found: inference_log.LogScan | None,
    described: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    note: str,
) -> Collected:
    collector.close()
    spec = collector.spec
    sample = collector.sample.rows(ORDER)
    skipped = found.skipped if found is not None else []
    stats = WindowStats(
        project=spec.name,
        window=described,
        start=start.isoformat(timespec="seconds") if start else "",
        end=end.isoformat(timespec="seconds") if end else "",
        note=note,
        rows=collector.rows,
        rows_estimated=collector.weight,
        rows_sampled=len(sample),
        sample_size=collector.sample.size,
        labelled_rows=collector.labelled,
        rows_by_version=collector.by_version,
        sample_rates=sorted(collector.rates),
        parts_read=found.parts_read if found is not None else 0,
        parts_skipped=len(skipped),
        skipped=[str(s) for s in skipped[:SKIPPED_SHOWN]],
        output=collector.output_figures(sample),
    )
    return Collected(sample, stats, collector.labelled_path)
