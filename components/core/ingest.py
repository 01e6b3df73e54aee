"""Load a project's data from a path, an http(s) URL or the synthetic generator, then split it."""

from __future__ import annotations

import hashlib
import io
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from components.core.contracts import DataSource, SourceInfo
from components.core.spec import ProjectSpec

SYNTHETIC_PREFIX = "synthetic"
SYNTHETIC_NOTICE = "SYNTHETIC DATA: generated with the real schema for tests and demos; figures on it say nothing about the real problem"


class IngestError(ValueError):
    """The source could not be read as a table of rows."""


@dataclass
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    current: pd.DataFrame
    """Unlabelled rows standing for production traffic: the test rows without the target."""
    stratified: bool


def parse_synthetic(source: str) -> int | None:
    """`synthetic` or `synthetic:ROWS` -> rows (0 means the project's default); anything else -> None."""
    if source == SYNTHETIC_PREFIX:
        return 0
    if source.startswith(SYNTHETIC_PREFIX + ":"):
        rows = source.split(":", 1)[1]
        if not rows.isdigit() or int(rows) < 1:
            raise IngestError(
                f"synthetic source {source!r}: expected 'synthetic:ROWS' with ROWS a positive integer"
            )
        return int(rows)
    return None


def read_bytes(source: str) -> bytes:
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=60) as response:
                return bytes(response.read())
        except OSError as exc:
            raise IngestError(f"could not download {source}: {exc}") from exc
    path = Path(source.removeprefix("file://")).expanduser()
    if not path.is_file():
        raise IngestError(f"data file not found: {path}")
    return path.read_bytes()


def parse_csv(raw: bytes, source: str) -> pd.DataFrame:
    if not raw.strip():
        raise IngestError(f"{source} is empty: no header and no rows")
    try:
        frame = pd.read_csv(io.BytesIO(raw))
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise IngestError(f"{source} is not a readable CSV file: {exc}") from exc
    if frame.empty:
        raise IngestError(f"{source} has a header but no data rows")
    return frame


def load(spec: ProjectSpec, source: str, seed: int = 42) -> tuple[pd.DataFrame, DataSource]:
    """Reads the source and applies the project's cleaning rules, reporting the rows each removed."""
    synthetic_rows = parse_synthetic(source)
    if synthetic_rows is not None:
        rows = synthetic_rows or spec.synthetic_rows
        frame = spec.make_synthetic(rows, seed)
        raw = frame.to_csv(index=False).encode()
        label = f"{SYNTHETIC_PREFIX}:{rows} (seed {seed})"
    else:
        raw = read_bytes(source)
        frame = parse_csv(raw, source)
        label = source
    frame, removed = clean(spec, frame)
    info = DataSource(
        source=label,
        synthetic=synthetic_rows is not None,
        rows=len(frame),
        columns=frame.shape[1],
        sha256=hashlib.sha256(raw).hexdigest(),
        removed_rows=removed,
        notice=SYNTHETIC_NOTICE if synthetic_rows is not None else "",
    )
    return frame, info


def clean(spec: ProjectSpec, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Applies the cleaning rules in order. A rule is skipped when the target is not numeric or
    missing, so that validation, not a silent filter, reports the broken column."""
    removed: dict[str, int] = {}
    target = frame.get(spec.target)
    if target is None or not pd.api.types.is_numeric_dtype(target):
        return frame, removed
    for rule in spec.cleaning_rules:
        keep = rule.apply(frame).fillna(False).astype(bool)
        removed[rule.description] = int((~keep).sum())
        frame = frame.loc[keep].reset_index(drop=True)
    return frame, removed


def split(spec: ProjectSpec, frame: pd.DataFrame, test_size: float, seed: int) -> Split:
    """Stratified for classifiers. Falls back to a plain split when the target cannot stratify
    (missing, or a class with one row), so that validation names the problem."""
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")
    if len(frame) < 4:
        raise IngestError(f"only {len(frame)} rows: too few to split into train and test")
    stratify = None
    if spec.task.stratified and spec.target in frame:
        counts = frame[spec.target].value_counts()
        if len(counts) > 1 and counts.min() >= 2:
            stratify = frame[spec.target]
    train, test = train_test_split(frame, test_size=test_size, random_state=seed, stratify=stratify)
    current = test.drop(columns=[spec.target], errors="ignore")
    return Split(
        train=train.reset_index(drop=True),
        test=test.reset_index(drop=True),
        current=current.reset_index(drop=True),
        stratified=stratify is not None,
    )


def ingest(spec: ProjectSpec, source: str, seed: int, test_size: float) -> tuple[Split, SourceInfo]:
    """Reads, cleans and splits the source; the record says what was read and how it was split."""
    frame, data = load(spec, source, seed)
    parts = split(spec, frame, test_size, seed)
    info = SourceInfo(
        **data.model_dump(),
        stratified=parts.stratified,
        train_rows=len(parts.train),
        test_rows=len(parts.test),
    )
    return parts, info


def summary_markdown(spec: ProjectSpec, info: SourceInfo, seed: int, current_rows: int) -> str:
    removed = "".join(f"- {rule}: **{n}** rows removed\n" for rule, n in info.removed_rows.items())
    notice = f"**{info.notice}**" if info.notice else ""
    how = "stratified" if info.stratified else "plain"
    return (
        f"# {spec.name}: ingest\n\n{notice}\n\n"
        f"- source: `{info.source}`\n- sha256: `{info.sha256}`\n"
        f"- rows: {info.rows}, columns: {info.columns}\n{removed}"
        f"- split: train {info.train_rows}, test {info.test_rows} ({how}, seed {seed}); "
        f"current batch {current_rows}\n"
    )
