"""Batch scoring: a file of rows in; out, one scored row per valid input row, in input order, by
one model version pinned for the whole batch, and the rows that failed validation set aside with
their reasons.

The pipeline's steps, each a function here: `pin` the model version; `read_table` and `screen`
the rows (the schema checks the server and the validate step apply, row by row); `check_drift`
of the valid rows against the version's own reference (the monitoring check); `write_shards`;
`score_frame` each shard with the pinned version, loaded by `load_pinned` (its file verified
before it is unpickled); `merge` in input order, `summarise` and `summary_html`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from components.core import loading, model_uri, report
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
from components.core.lineage import Provenance
from components.core.metrics import QUANTILES
from components.core.outputs import (
    BinaryFormat,
    RegressionFormat,
    model_output,
    reason_fields,
)
from components.core.spec import ProjectSpec
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
SHARD_ROWS = 10_000
UNVERIFIED_HINT = "allow_unverified_model=true (make score ALLOW_UNVERIFIED=1)"


class FileArtifact(Protocol):
    uri: str
    path: str


class ScoringError(ValueError):
    """The batch cannot be scored as asked; the message names the problem."""


class DriftStopped(ScoringError):
    """The batch drifted and the drift gate is `stop`."""


def utc_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
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
        digest = file_digest(pinned)
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


def file_digest(uri: str) -> str:
    """sha256 of the model file of a registry version, as a shard downloads it."""
    import mlflow

    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    description = mlflow.models.Model.load(str(path))
    return loading.file_sha256(loading.model_file(path, description, uri))


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


def model_column(values: pd.Series, numeric: bool) -> pd.Series:
    """A checked column as the model reads it: text in a number column (a CSV column where some
    row was not a number) parsed by the schema check's own parser."""
    if numeric and values.dtype.kind not in "iuf":
        return pd.Series([parse_number(v) for v in values], index=values.index, dtype=float)
    return values


def screen(
    spec: ProjectSpec,
    frame: pd.DataFrame,
    source: str = "the batch",
    max_rejected_share: float = MAX_REJECTED_SHARE,
) -> Screened:
    """Every row checked against the project's schema with the checks the server applies. Rows
    that break a rule are set aside with their reasons; more than `max_rejected_share` of them,
    or a missing input column, stops the batch with an error naming it."""
    if not 0.0 <= max_rejected_share <= 1.0:
        raise ScoringError(f"max_rejected_share must be between 0 and 1; got {max_rejected_share}")
    missing = [c for c in spec.input_columns if c not in frame.columns]
    if missing:
        raise ScoringError(
            f"{source} lacks the required column(s) {', '.join(missing)}; the {spec.name} "
            f"model reads {', '.join(spec.input_columns)}"
        )
    identifiers = [c for c in spec.identifier_columns if c in frame.columns]
    known = {*spec.input_columns, *identifiers}
    problems: list[tuple[int, str, str, object, str]] = []
    by_rule: dict[str, set[int]] = {}
    for column in spec.columns:
        raw = frame[column.name].to_numpy(dtype=object)
        for violation in column_violations(column, frame[column.name]):
            by_rule.setdefault(violation.code, set()).update(violation.rows)
            for row in violation.rows:
                problems.append((row, column.name, violation.code, raw[row], violation.rule))
    bad = sorted({p[0] for p in problems})
    rows = len(frame)
    share = len(bad) / rows if rows else 0.0
    if share > max_rejected_share:
        counts = ", ".join(f"{code} {len(found):,}" for code, found in by_rule.items())
        first = min(problems, key=lambda p: (p[0], spec.input_columns.index(p[1])))
        raise ScoringError(
            f"{len(bad):,} of {rows:,} rows ({share:.1%}) failed validation; at most "
            f"{max_rejected_share:.1%} may (max_rejected_share). Rows per rule: {counts}; the "
            f"first: row {first[0] + 1}, field {first[1]!r}: {first[4]} (value {shown(first[3])!r})"
        )
    if len(bad) == rows:
        raise ScoringError(f"all {rows:,} rows of {source} failed validation: nothing to score")
    keep = np.ones(rows, dtype=bool)
    keep[bad] = False
    valid = pd.DataFrame({ROW_NUMBER: np.flatnonzero(keep) + 1})
    for name in identifiers:
        valid[name] = frame[name].to_numpy()[keep]
    for column in spec.columns:
        numeric = column.dtype in ("float", "int")
        valid[column.name] = model_column(frame[column.name], numeric).to_numpy()[keep]
    problems.sort(key=lambda p: (p[0], spec.input_columns.index(p[1])))
    rejected = pd.DataFrame(
        {
            ROW_NUMBER: [p[0] + 1 for p in problems],
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
    return Screened(
        valid=valid,
        rejected=rejected,
        rows=rows,
        rejected_rows=len(bad),
        rejected_by_rule={code: len(found) for code, found in sorted(by_rule.items())},
        identifiers=identifiers,
        ignored_columns=[c for c in frame.columns if c not in known],
    )


def screen_source(
    spec: ProjectSpec, source: str, max_rejected_share: float = MAX_REJECTED_SHARE
) -> tuple[Screened, RowScreening]:
    """The validate step: the file read and screened, and the record of what it kept."""
    frame, sha256, kind = read_table(source)
    screened = screen(spec, frame, source, max_rejected_share)
    return screened, screened.record(source, sha256, kind, max_rejected_share)


def table_path(artifact: FileArtifact, kind: str) -> str:
    """Where to write a table artifact: its URI gets the format's extension (as reports get
    `.html`), so that whoever downloads it can tell how to read it."""
    suffix = f".{check_choice('output_format', kind, FORMATS)}"
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
    check_choice("drift_gate", gate, DRIFT_GATES)
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


def write_shards(valid: pd.DataFrame, path: str | Path, shard_rows: int) -> list[int]:
    """The valid rows as one Parquet file, one row group per shard; returns the shard indices."""
    if shard_rows < 1:
        raise ScoringError(f"shard_rows must be at least 1; got {shard_rows}")
    valid.to_parquet(path, index=False, row_group_size=shard_rows)
    return list(range(math.ceil(len(valid) / shard_rows)))


def read_shard(path: str | Path, index: int) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read_row_group(index).to_pandas()


# -- scoring -----------------------------------------------------------------------------------


def contribution_text(spec: ProjectSpec, value: float) -> str:
    if spec.task == "binary":
        return f"{value:+.2f}"
    return f"{value:+,.0f}" + (f" {spec.target_unit}" if spec.target_unit else "")


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
            f"{names[j]} {value_text(raw[i, j])}: {contribution_text(spec, values[i, j])}"
            for j in top[i]
        ]
        for i in range(len(values))
    ]
    return pd.DataFrame(texts, columns=reason_fields()[: top.shape[1]], index=inputs.index)


def prediction_columns(
    spec: ProjectSpec, output: np.ndarray, threshold: float | None
) -> dict[str, np.ndarray]:
    """The project's fields for the model's outputs, as the server answers them."""
    if isinstance(spec.output, BinaryFormat):
        return spec.output.columns(
            spec.label_names, output, 0.5 if threshold is None else threshold
        )
    assert isinstance(spec.output, RegressionFormat)
    return spec.output.columns(output)


def score_frame(
    spec: ProjectSpec,
    model: Any,
    threshold: float | None,
    frame: pd.DataFrame,
    version: str,
    background: pd.DataFrame | None = None,
    scored_at: str | None = None,
    compiled: CompiledModel | None = None,
) -> pd.DataFrame:
    """Screened rows (row number, identifiers, inputs) scored: the row number and identifiers,
    the project's output fields, the top reasons when a `background` for the explainer is given,
    then the model's name and version and when it scored them. The output comes from the
    version's `compiled` graph when given (the same figures, verified at registration and load)."""
    inputs = frame[spec.input_columns]
    output = compiled.output(inputs) if compiled else model_output(spec, model, inputs)
    # Built in one go: inserting columns one by one costs about a tenth of a fast model's call.
    columns: dict[str, Any] = {
        name: frame[name].to_numpy() for name in frame.columns if name not in spec.input_columns
    }
    columns |= prediction_columns(spec, output, threshold)
    if background is not None:
        from components.core.explain import explainer_for  # SHAP: only for shards with reasons

        explanation = explainer_for(spec, model, background).explain(inputs)
        texts = reasons(spec, explanation.contributions, inputs)
        columns |= {name: texts[name].to_numpy() for name in texts.columns}
    columns |= {MODEL_NAME: spec.name, MODEL_VERSION: version, SCORED_AT: scored_at or utc_iso()}
    return pd.DataFrame(columns, index=frame.index)


def risk_ranks(probability: np.ndarray, row_numbers: np.ndarray) -> np.ndarray:
    """1 for the highest probability; ties in input order."""
    order = np.lexsort((row_numbers, -probability))
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def merge(spec: ProjectSpec, parts: Sequence[pd.DataFrame], expected_rows: int) -> pd.DataFrame:
    """The scored shards as one table in input order, with the risk rank when the project's
    output has one. Every valid row must be there exactly once."""
    merged = pd.concat(list(parts), ignore_index=True) if parts else pd.DataFrame()
    if merged.empty or len(merged) != expected_rows or merged[ROW_NUMBER].duplicated().any():
        raise ScoringError(
            f"the shards hold {len(merged):,} scored rows "
            f"({int(merged[ROW_NUMBER].duplicated().sum()) if not merged.empty else 0} repeated); "
            f"expected each of the {expected_rows:,} valid rows once"
        )
    merged = merged.sort_values(ROW_NUMBER, kind="stable").reset_index(drop=True)
    output = spec.output
    if isinstance(output, BinaryFormat) and output.rank:
        ranks = risk_ranks(
            merged[output.probability].to_numpy(dtype=float),
            merged[ROW_NUMBER].to_numpy(),
        )
        after = list(merged.columns).index(
            "risk_band" if output.with_risk_band else output.decision
        )
        merged.insert(after + 1, output.rank, ranks)
    return merged


def output_columns(spec: ProjectSpec, with_reasons: bool, identifiers: Sequence[str]) -> list[str]:
    """The columns of a project's batch output, in order."""
    output = spec.output
    if isinstance(output, BinaryFormat):
        fields = [output.probability, output.decision]
        fields += ["risk_band"] * output.with_risk_band + [output.rank] * bool(output.rank)
    else:
        fields = [output.value]
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
    check_choice("output_format", table, FORMATS)
    if table == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def rejected_path(output: str | Path) -> Path:
    """Where the rejected rows go beside an output file: `<stem>.rejected.<ext>`."""
    path = Path(output)
    return path.with_name(f"{path.stem}.rejected{path.suffix}")


def score_shard(
    spec: ProjectSpec, pinned: PinnedModel, shards: str | Path, index: int, with_reasons: bool
) -> pd.DataFrame:
    """The score step: one shard of the valid rows, by the pinned version."""
    loaded = load_pinned(spec, pinned)
    frame = read_shard(shards, index)
    background = loaded.background if with_reasons else None
    return score_frame(
        spec,
        loaded.model,
        loaded.threshold,
        frame,
        pinned.version,
        background,
        compiled=loaded.compiled,
    )


# -- the summary -------------------------------------------------------------------------------


def score_field(spec: ProjectSpec) -> str:
    return spec.output.explained_field


def quantiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    found = {name: float(np.quantile(values, q)) for name, q in QUANTILES.items()}
    return {"min": float(np.min(values)), **found, "max": float(np.max(values))} | {
        "mean": float(np.mean(values))
    }


def summarise(
    spec: ProjectSpec,
    pinned: PinnedModel,
    screening: RowScreening,
    drift: DriftSummary,
    merged: pd.DataFrame,
    reference_scores: np.ndarray,
    *,
    shards: int,
    with_reasons: bool,
    gate: str,
    output_format: str,
    threshold: float | None = None,
) -> ScoringSummary:
    """The run's record. `threshold` (the model's) gives the reference's labelled share."""
    scores = merged[score_field(spec)].to_numpy(dtype=float)
    shares: dict[str, float | None] = {}
    if isinstance(spec.output, BinaryFormat):
        labelled = merged[spec.output.decision].to_numpy()
        positive = spec.label_names[1] if spec.output.decision_as_label else 1
        shares["positive_share"] = float(np.mean(labelled == positive))
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
        scored_rows=len(merged),
        shards=shards,
        with_reasons=with_reasons,
        drift_gate=gate,
        drift_detected=drift.drift_detected,
        drifted_columns=drift.drifted_columns,
        drift_reason=drift_verdict(drift, gate),
        output_columns=list(merged.columns),
        output_format=output_format,
        score_field=score_field(spec),
        score_quantiles=quantiles(scores),
        reference_score_quantiles=quantiles(reference_scores),
        finished=utc_iso(),
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


def _histogram(spec: ProjectSpec, scores: np.ndarray, reference_scores: np.ndarray) -> str:
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    both = np.concatenate([scores, reference_scores])
    low, high = float(both.min()), float(both.max())
    bins = np.linspace(low, high if high > low else low + 1.0, 30)
    ax.hist(scores, bins=bins, density=True, alpha=0.6, label=f"this batch ({len(scores):,})")
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
                "figure": [f"share labelled {spec.label_names[1]}"],
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
            _histogram(spec, scores, reference_scores)
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
    predictions: pd.DataFrame
    summary: ScoringSummary
    html: str


def complete(
    spec: ProjectSpec,
    pinned: PinnedModel,
    screening: RowScreening,
    drift: DriftSummary,
    parts: Sequence[pd.DataFrame],
    *,
    with_reasons: bool,
    gate: str,
    output_format: str,
    run: str,
) -> Finished:
    """The merge step: the shards in input order, the same model's scores of its reference rows
    (MLflow tracking URI set by the caller), the summary record and its page."""
    merged = merge(spec, parts, screening.valid_rows)
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
        merged,
        reference_scores,
        shards=len(parts),
        with_reasons=with_reasons,
        gate=gate,
        output_format=output_format,
        threshold=threshold,
    )
    scores = merged[score_field(spec)].to_numpy(dtype=float)
    where = provenance(pinned, summary, run)
    return Finished(merged, summary, summary_html(spec, summary, scores, reference_scores, where))


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
