"""The batch scoring pipeline's steps: pin the model version, validate the rows, check drift,
split into shards, score each shard, merge."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def resolve(
    project: str,
    mlflow_tracking_uri: str,
    model_version: str,
    allow_unverified_model: bool,
    pinned: Output[Artifact],
):
    """The version to score with (`model_version`, or the champion when empty), resolved once,
    and the digest its model file must have: the version's registered tag. Without one it stops,
    unless `allow_unverified_model` (then the file's own digest is pinned for every shard)."""
    import mlflow

    from components.core import scoring
    from components.core.projects import get_spec
    from components.core.registry import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(mlflow_tracking_uri))
    found = scoring.pin(get_spec(project), model_version, allow_unverified_model)
    found.write(pinned.path)
    checked = "verified by its tag" if found.verified else "UNVERIFIED"
    print(f"{found.requested} is version {found.version}: {found.uri}, {checked}")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def validate_rows(
    project: str,
    source: str,
    max_rejected_share: float,
    output_format: str,
    valid: Output[Dataset],
    rejected: Output[Dataset],
    screening: Output[Artifact],
):
    """Reads the CSV or Parquet file at `source` (a path or URL the pod reads) a chunk at a time
    and checks every row against the project's schema. Valid rows go on (as Parquet, with their
    row number); rejected rows are written with their reasons. Stops when more than
    `max_rejected_share` of the rows are bad, or when an input column is missing."""
    from components.core import scoring
    from components.core.projects import get_spec

    record = scoring.screen_file(
        get_spec(project),
        source,
        scoring.table_path(valid, "parquet"),
        scoring.table_path(rejected, output_format),
        output_format,
        max_rejected_share,
    )
    record.write(screening.path)
    print(
        f"{record.rows:,} rows read, {record.valid_rows:,} valid, {record.rejected_rows:,} "
        f"rejected {record.rejected_by_rule or ''}"
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def drift_check(
    project: str,
    pinned: Input[Artifact],
    valid: Input[Dataset],
    screening: Input[Artifact],
    mlflow_tracking_uri: str,
    gate: str,
    min_rows: int,
    run_name: str,
    summary: Output[Artifact],
    report: Output[HTML],
):
    """Drift of the valid rows (all of them, or a uniform sample of DRIFT_SAMPLE_ROWS of a larger
    batch) against the pinned version's reference: the monitoring check. Gate `warn` goes on and
    says so, `stop` stops the run naming the drifted columns, `off` checks nothing."""
    import mlflow

    from components.core import scoring
    from components.core.contracts import PinnedModel, RowScreening
    from components.core.drift import DriftPolicy, report_html
    from components.core.projects import get_spec
    from components.core.registry import tracking_uri
    from components.core.step_io import write_document

    spec = get_spec(project)
    mlflow.set_tracking_uri(tracking_uri(mlflow_tracking_uri))
    model = PinnedModel.read(pinned.path)
    found = scoring.reference_of(model) if gate != "off" else None
    rows, total = scoring.drift_sample(valid.path, max(scoring.DRIFT_SAMPLE_ROWS, min_rows))
    result = scoring.check_drift(
        spec, rows, model.version, found, gate, DriftPolicy(min_rows=min_rows)
    )
    result.summary.write(summary.path)
    where = scoring.batch_provenance(model, RowScreening.read(screening.path), run_name)
    compared = (
        "this batch's valid rows"
        if len(rows) == total
        else f"a uniform sample of {len(rows):,} of this batch's {total:,} valid rows"
    )
    write_document(report, report_html(spec, result, where, compared))
    print(scoring.drift_verdict(result.summary, gate))
    scoring.enforce(spec, result.summary, gate)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def split(valid: Input[Dataset], shard_rows: int) -> list[int]:
    """The shards of the valid rows, `shard_rows` each (read from the file's footer): the list
    of shard indices the scoring fans out over. Shard i is rows i * shard_rows onwards."""
    from components.core import scoring

    rows = scoring.row_count(valid.path)
    indices = scoring.shard_indices(rows, shard_rows)
    print(f"{rows:,} valid rows in {len(indices)} shard(s) of up to {shard_rows:,}")
    return indices


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def score(
    project: str,
    pinned: Input[Artifact],
    valid: Input[Dataset],
    shard_rows: int,
    index: int,
    with_reasons: bool,
    mlflow_tracking_uri: str,
    scored: Output[Dataset],
):
    """Shard `index` of the valid rows scored by the pinned version a chunk at a time, its model
    file verified against the pinned digest before it is unpickled; with the top reasons per
    row when `with_reasons`."""
    import mlflow

    from components.core import scoring
    from components.core.contracts import PinnedModel
    from components.core.projects import get_spec
    from components.core.registry import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(mlflow_tracking_uri))
    model = PinnedModel.read(pinned.path)
    path = scoring.table_path(scored, "parquet")
    rows = scoring.score_shard(
        get_spec(project), model, valid.path, index, shard_rows, with_reasons, path
    )
    scored.metadata.update({"shard": index, "rows": rows})
    print(f"shard {index}: {rows:,} rows scored by {model.uri}")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def merge(
    project: str,
    parts: Input[list[Dataset]],
    pinned: Input[Artifact],
    screening: Input[Artifact],
    drift_summary: Input[Artifact],
    mlflow_tracking_uri: str,
    output_format: str,
    with_reasons: bool,
    gate: str,
    run_name: str,
    predictions: Output[Dataset],
    summary: Output[Artifact],
    report: Output[HTML],
):
    """The scored shards as one file in input order (`output_format`), written by DuckDB within
    its memory cap, the run's summary record and its page: counts, rejected rows by rule,
    scores against the reference, drift."""
    import mlflow

    from components.core import scoring
    from components.core.contracts import DriftSummary, PinnedModel, RowScreening
    from components.core.projects import get_spec
    from components.core.registry import tracking_uri
    from components.core.step_io import write_document

    mlflow.set_tracking_uri(tracking_uri(mlflow_tracking_uri))
    done = scoring.complete(
        get_spec(project),
        PinnedModel.read(pinned.path),
        RowScreening.read(screening.path),
        DriftSummary.read(drift_summary.path),
        [part.path for part in parts],
        scoring.table_path(predictions, output_format),
        with_reasons=with_reasons,
        gate=gate,
        output_format=output_format,
        run=run_name,
    )
    done.summary.write(summary.path)
    write_document(report, done.html)
    print(
        f"{done.summary.scored_rows:,} rows scored in {done.summary.shards} shard(s): "
        f"{predictions.path}"
    )
