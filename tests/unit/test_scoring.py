"""Batch scoring's logic on small synthetic files: row-by-row validation, the outputs of each
project in input order, reasons, shards, files and the drift gate."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import FixedThresholdClassifier

from components.core import drift, scoring
from components.core.contracts import PinnedModel, Reference
from components.core.explain import explainer_for
from components.core.ingest import IngestError
from components.core.loading import decision_threshold
from components.core.outputs import reason_fields
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from components.core.tasks import Binary
from components.core.train import build_pipeline, single_threaded, split_xy
from tests.conftest import real_data_path, small_split

BANKCHURN, TELECOM, CARVISION = PROJECTS["bankchurn"], PROJECTS["telecom"], PROJECTS["carvision"]
THRESHOLD = 0.3
"""A stored decision threshold that is not 0.5, so that a label at 0.5 would show."""
_MODELS: dict[str, Any] = {}


def fitted(spec: ProjectSpec) -> Any:
    """The project's random forest pipeline fitted once on the small synthetic split."""
    if spec.name not in _MODELS:
        X, y = split_xy(spec, small_split(spec).train)
        pipeline = build_pipeline(spec, spec.candidate("random_forest"), 7)
        model = (
            FixedThresholdClassifier(pipeline, threshold=THRESHOLD, response_method="predict_proba")
            if spec.task.probabilistic
            else pipeline
        ).fit(X, y)
        single_threaded(model)
        _MODELS[spec.name] = model
    return _MODELS[spec.name]


def batch_file(tmp_path: Path, spec: ProjectSpec, rows: int = 120, seed: int = 3) -> Path:
    """A file as a user would bring it: the real columns, the target dropped."""
    path = tmp_path / f"{spec.name}.csv"
    spec.make_synthetic(rows, seed).drop(columns=[spec.target]).to_csv(path, index=False)
    return path


def with_bad_rows(path: Path) -> Path:
    """Three bad customers: a negative age, an unknown country, text in a number."""
    frame = pd.read_csv(path).astype({"Age": object, "Balance": object})
    frame.loc[3, "Age"] = -4
    frame.loc[5, "Geography"] = "Mars"
    frame.loc[7, "Balance"] = "lots"
    frame["Notes"] = "carried or ignored"
    frame.to_csv(path, index=False)
    return path


def scored(spec: ProjectSpec, screened: scoring.Screened, reasons: bool = False) -> pd.DataFrame:
    model = fitted(spec)
    background = small_split(spec).train.head(50) if reasons else None
    threshold = decision_threshold(spec, model, "test")
    # Three shards, handed to merge out of order: the output is in input order all the same.
    third = len(screened.valid) // 3 + 1
    shards = [screened.valid.iloc[i : i + third] for i in range(0, len(screened.valid), third)]
    parts = [scoring.score_frame(spec, model, threshold, s, "7", background) for s in shards]
    return scoring.merge(spec, parts[::-1], len(screened.valid))


def test_bad_rows_are_set_aside_with_reasons_and_the_good_rows_scored(tmp_path: Path) -> None:
    path = with_bad_rows(batch_file(tmp_path, BANKCHURN))
    frame, sha256, kind = scoring.read_table(str(path))
    assert kind == "csv" and len(sha256) == 64
    screened = scoring.screen(BANKCHURN, frame, str(path))
    rejected = screened.rejected
    assert list(rejected.columns) == [
        "row_number",
        "RowNumber",
        "CustomerId",
        "Surname",
        "field",
        "rule",
        "value",
        "reason",
    ]
    assert rejected[["row_number", "field", "rule", "value"]].values.tolist() == [
        [4, "Age", "minimum", "-4"],
        [6, "Geography", "category", "Mars"],
        [8, "Balance", "type", "lots"],
    ]
    assert rejected["reason"].tolist() == [
        "below the minimum 18",
        "not one of the allowed values ['France', 'Germany', 'Spain']",
        "not a number (expected float)",
    ]
    assert rejected["CustomerId"].tolist() == frame["CustomerId"].iloc[[3, 5, 7]].tolist()
    assert screened.rejected_by_rule == {"category": 1, "minimum": 1, "type": 1}
    assert screened.ignored_columns == ["Notes"]
    record = screened.record(str(path), sha256, kind, scoring.MAX_REJECTED_SHARE)
    assert (record.rows, record.valid_rows, record.rejected_rows) == (120, 117, 3)

    out = scored(BANKCHURN, screened)
    good = [i for i in range(120) if i not in (3, 5, 7)]
    assert out["row_number"].tolist() == [i + 1 for i in good]
    assert out["CustomerId"].tolist() == frame["CustomerId"].iloc[good].tolist()
    # The model's own answer on the same rows read by pandas, unvalidated.
    clean = pd.read_csv(path).iloc[good]
    clean = clean.astype({"Age": int, "Balance": float})[BANKCHURN.input_columns]
    expected = fitted(BANKCHURN).predict_proba(clean)[:, 1]
    np.testing.assert_allclose(out["churn_probability"], expected, rtol=0, atol=1e-9)
    assert (out["churn"] == (expected >= THRESHOLD)).all()


def test_a_batch_mostly_bad_stops_naming_the_share(tmp_path: Path) -> None:
    frame = pd.read_csv(batch_file(tmp_path, BANKCHURN, rows=1000))
    frame.loc[:611, "Age"] = 12
    with pytest.raises(
        scoring.ScoringError,
        match=re.escape("612 of 1,000 rows (61.2%) failed validation; at most 10.0% may"),
    ) as stopped:
        scoring.screen(BANKCHURN, frame)
    assert "minimum 612" in str(stopped.value) and "row 1, field 'Age'" in str(stopped.value)
    # the same batch passes when the run allows that share
    assert len(scoring.screen(BANKCHURN, frame, max_rejected_share=0.7).valid) == 388


def test_a_missing_input_column_stops_naming_it(tmp_path: Path) -> None:
    frame = pd.read_csv(batch_file(tmp_path, TELECOM)).drop(columns=["minutes"])
    with pytest.raises(scoring.ScoringError, match=r"lacks the required column\(s\) minutes"):
        scoring.screen(TELECOM, frame, "users.csv")


@pytest.mark.parametrize("spec", [BANKCHURN, TELECOM, CARVISION], ids=lambda s: s.name)
def test_each_project_writes_its_fields_in_input_order(spec: ProjectSpec, tmp_path: Path) -> None:
    frame, _, _ = scoring.read_table(str(batch_file(tmp_path, spec)))
    screened = scoring.screen(spec, frame)
    out = scored(spec, screened, reasons=spec.task.with_reasons)
    identifiers = list(spec.identifier_columns)
    assert list(out.columns) == scoring.output_columns(spec, spec.task.with_reasons, identifiers)
    assert out["row_number"].tolist() == list(range(1, len(frame) + 1))
    assert (out[identifiers].to_numpy() == frame[identifiers].to_numpy()).all()
    assert set(out["model_name"]) == {spec.name} and set(out["model_version"]) == {"7"}
    assert all(pd.Timestamp(t).tzname() == "UTC" for t in out["scored_at"])
    model = fitted(spec)
    inputs = frame[spec.input_columns]
    task = spec.task
    if isinstance(task, Binary):
        expected = model.predict_proba(inputs)[:, 1]
        np.testing.assert_allclose(out[task.probability], expected, rtol=0, atol=1e-9)
        labels = np.where(model.predict(inputs) == 1, *task.labels[::-1])
        decision = out[task.decision]
        assert (
            (decision == labels).all()
            if task.decision_as_label
            else (decision == model.predict(inputs)).all()
        )
    else:
        np.testing.assert_allclose(out["price"], model.predict(inputs), rtol=0, atol=1e-9)


def test_bankchurn_ranks_by_risk_and_gives_three_reasons_in_words(tmp_path: Path) -> None:
    frame, _, _ = scoring.read_table(str(batch_file(tmp_path, BANKCHURN, rows=30)))
    out = scored(BANKCHURN, scoring.screen(BANKCHURN, frame), reasons=True)
    ranked = out.sort_values("risk_rank")
    assert out["risk_rank"].tolist() != list(range(1, 31))  # input order kept, not risk order
    assert ranked["risk_rank"].tolist() == list(range(1, 31))
    assert ranked["churn_probability"].is_monotonic_decreasing
    assert set(out["risk_band"]) <= {"low", "medium", "high"}
    # Each row's reasons are its three largest contributions by size, with their values.
    model = fitted(BANKCHURN)
    explainer = explainer_for(BANKCHURN, model, small_split(BANKCHURN).train.head(50))
    contributions = explainer.explain(frame[BANKCHURN.input_columns]).contributions
    pattern = re.compile(r"^(\w+) (.+): ([+-]\d+\.\d\d)$")
    for i, row in out.iterrows():
        found = [pattern.match(row[f]) for f in reason_fields()]
        assert all(found), [row[f] for f in reason_fields()]
        fields = [m[1] for m in found if m]
        assert fields == list(contributions.loc[i].abs().sort_values(ascending=False).index[:3])
        for m in found:
            assert m is not None
            assert float(m[3]) == pytest.approx(contributions.loc[i, m[1]], abs=0.0051)
            assert m[2] == scoring.value_text(frame.loc[i, m[1]])


def test_reasons_text_names_the_field_its_value_and_the_contribution() -> None:
    inputs = pd.DataFrame({"Age": [58, 30], "Balance": [125510.82, np.nan], "Gender": ["F", "M"]})
    contributions = pd.DataFrame(
        {"Age": [0.21, -0.01], "Balance": [-0.05, 0.002], "Gender": [0.1, 0.3]}
    )
    texts = scoring.reasons(BANKCHURN, contributions, inputs)
    assert texts.values.tolist() == [
        ["Age 58: +0.21", "Gender F: +0.10", "Balance 125510.82: -0.05"],
        ["Gender M: +0.30", "Age 30: -0.01", "Balance blank: +0.00"],
    ]
    price = scoring.reasons(
        CARVISION,
        pd.DataFrame({"odometer": [-1234.4]}),
        inputs.head(1).assign(odometer=[145000.0])[["odometer"]],
    )
    assert price.iloc[0, 0] == "odometer 145000: -1,234 USD"


def test_files_by_extension_and_the_rejected_file_beside_the_output(tmp_path: Path) -> None:
    assert scoring.rejected_path("out/churn.csv") == "out/churn.rejected.csv"
    assert scoring.rejected_path("/x/y.parquet") == "/x/y.rejected.parquet"
    assert scoring.rejected_path("s3://bucket/a.b/y.csv") == "s3://bucket/a.b/y.rejected.csv"
    assert scoring.rejected_path("scored.csv") == "scored.rejected.csv"
    source = TELECOM.make_synthetic(20, 1)
    source.to_parquet(tmp_path / "users.parquet", index=False)
    frame, _, kind = scoring.read_table(str(tmp_path / "users.parquet"))
    assert kind == "parquet"
    pd.testing.assert_frame_equal(frame, source)
    assert scoring.table_format("https://example.com/data/users.csv?x=1") == "csv"
    with pytest.raises(scoring.ScoringError, match=r"cannot tell the format of users\.json"):
        scoring.read_table("users.json")
    for kind in scoring.FORMATS:
        scoring.write_table(source, tmp_path / f"out.{kind}", kind)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out.csv"), source)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), source)
    with pytest.raises(scoring.ScoringError, match="output_format must be one of csv, parquet"):
        scoring.write_table(source, tmp_path / "out.json", "json")


def test_shards_are_row_ranges_that_give_back_the_valid_rows(tmp_path: Path) -> None:
    source = with_bad_rows(batch_file(tmp_path, BANKCHURN))
    frame, _, _ = scoring.read_table(str(source))
    valid = scoring.screen(BANKCHURN, frame).valid
    path = tmp_path / "valid.parquet"
    # chunks of 40 rows: the shards of 50 cut across them
    record = scoring.screen_file(
        BANKCHURN, str(source), path, tmp_path / "rejected.csv", "csv", chunk_rows=40
    )
    assert record.valid_rows == scoring.row_count(path) == 117
    assert scoring.shard_indices(117, 50) == [0, 1, 2]
    parts = [pd.concat(list(scoring.read_shard(path, i, 50))) for i in range(3)]
    assert [len(p) for p in parts] == [50, 50, 17]
    together = pd.concat(parts, ignore_index=True)
    assert together["row_number"].tolist() == valid["row_number"].tolist()
    np.testing.assert_array_equal(together["Age"], valid["Age"].astype(float))
    assert together["CustomerId"].tolist() == valid["CustomerId"].astype(str).tolist()
    with pytest.raises(scoring.ScoringError, match="shard_rows must be at least 1"):
        scoring.shard_indices(117, 0)
    with pytest.raises(scoring.ScoringError, match=r"expected each of the 117 valid rows once"):
        scoring.merge(BANKCHURN, parts[:2], len(valid))


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_file_screened_in_chunks_gives_what_screening_it_whole_gives(
    tmp_path: Path, kind: str
) -> None:
    source = with_bad_rows(batch_file(tmp_path, BANKCHURN, rows=300))
    if kind == "parquet":
        parquet = source.with_suffix(".parquet")
        pd.read_csv(source).to_parquet(parquet)
        source = parquet
    whole, record = scoring.screen_source(BANKCHURN, str(source))
    valid, rejected = tmp_path / "valid.parquet", tmp_path / f"rejected.{kind}"
    streamed = scoring.screen_file(BANKCHURN, str(source), valid, rejected, kind, chunk_rows=7)
    assert streamed == record
    read = pd.read_csv if kind == "csv" else pd.read_parquet
    expected = whole.rejected.astype({n: str for n in ("RowNumber", "CustomerId")})
    found = read(rejected).astype({n: str for n in ("RowNumber", "CustomerId")})
    pd.testing.assert_frame_equal(found, expected, check_dtype=False)
    rows = pd.read_parquet(valid)
    assert rows["row_number"].tolist() == whole.valid["row_number"].tolist()
    np.testing.assert_array_equal(rows["Balance"], whole.valid["Balance"].astype(float))


def test_a_batch_streamed_stops_at_the_share_naming_the_first_bad_row(tmp_path: Path) -> None:
    frame = pd.read_csv(batch_file(tmp_path, BANKCHURN, rows=100))
    frame.loc[40:, "Age"] = 7
    frame.to_csv(tmp_path / "young.csv", index=False)
    out = tmp_path / "valid.parquet", tmp_path / "rejected.csv"
    with pytest.raises(
        scoring.ScoringError, match=r"60 of 100 rows \(60.0%\) failed .* the first: row 41"
    ):
        scoring.screen_file(BANKCHURN, str(tmp_path / "young.csv"), *out, "csv", chunk_rows=16)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(IngestError, match=r"empty\.csv is empty"):
        scoring.screen_file(BANKCHURN, str(tmp_path / "empty.csv"), *out, "csv")
    (tmp_path / "header.csv").write_text(",".join(BANKCHURN.input_columns) + "\n")
    with pytest.raises(IngestError, match=r"header\.csv has a header but no data rows"):
        scoring.screen_file(BANKCHURN, str(tmp_path / "header.csv"), *out, "csv")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(IngestError, match=r"broken\.parquet is not a readable Parquet file"):
        scoring.screen_file(BANKCHURN, str(tmp_path / "broken.parquet"), *out, "csv")
    with pytest.raises(IngestError, match="data file not found"):
        scoring.screen_file(BANKCHURN, str(tmp_path / "absent.csv"), *out, "csv")


def test_the_drift_sample_is_every_row_of_a_small_batch_and_uniform_in_a_large_one(
    tmp_path: Path,
) -> None:
    source = batch_file(tmp_path, BANKCHURN, rows=3000)
    valid = tmp_path / "valid.parquet"
    scoring.screen_file(BANKCHURN, str(source), valid, tmp_path / "r.csv", "csv", chunk_rows=500)
    every, total = scoring.drift_sample(valid, 5000)
    assert total == 3000 and every["row_number"].tolist() == list(range(1, 3001))
    sample, total = scoring.drift_sample(valid, 600)
    assert total == 3000 and len(sample) == 600 and sample["row_number"].is_monotonic_increasing
    # drawn across the whole file, not its head: each sixth holds about a sixth
    per_sixth = np.bincount((sample["row_number"].to_numpy() - 1) // 500, minlength=6)
    assert per_sixth.min() > 60, per_sixth
    again, _ = scoring.drift_sample(valid, 600)
    pd.testing.assert_frame_equal(sample, again)


def test_the_drift_gate_warns_stops_naming_the_columns_or_is_off() -> None:
    rows = TELECOM.make_synthetic(1500, 1)
    record = Reference(
        project="telecom",
        rows=len(rows),
        training_rows=len(rows),
        target="is_ultra",
        input_columns=TELECOM.input_columns,
        ignored_columns=[],
        importance={"mb_used": 1.0, "minutes": 0.5, "calls": 0.2, "messages": 0.1},
        test_metrics={},
        threshold=0.5,
        source="synthetic",
        source_sha256="0" * 64,
        synthetic=True,
        seed=1,
        test_size=0.2,
    )
    batch = drift.shift(TELECOM.make_synthetic(600, 2), {"mb_used": 1.6})
    warned = scoring.check_drift(TELECOM, batch, "4", (record, rows), "warn").summary
    assert warned.drift_detected and "mb_used" in warned.drifted_columns
    assert scoring.drift_verdict(warned, "warn").startswith("DRIFT, scored anyway")
    with pytest.raises(scoring.DriftStopped, match=r"drifted column\(s\): .*mb_used.*'stop'"):
        scoring.enforce(TELECOM, warned, "stop")
    scoring.enforce(TELECOM, warned, "warn")
    off = scoring.check_drift(TELECOM, batch, "4", (record, rows), "off").summary
    assert not off.drift_detected and off.reason == "not checked: the drift gate is off"
    none = scoring.check_drift(TELECOM, batch, "4", None, "stop").summary
    assert none.reason == "not checked: telecom v4 has no reference"
    scoring.enforce(TELECOM, none, "stop")
    with pytest.raises(scoring.ScoringError, match="drift_gate must be one of warn, stop, off"):
        scoring.check_drift(TELECOM, batch, "4", None, "maybe")


def test_a_model_version_is_a_number_or_empty_for_the_champion() -> None:
    assert scoring.requested_uri(TELECOM, "") == "models:/telecom@champion"
    assert scoring.requested_uri(TELECOM, " 12 ") == "models:/telecom/12"
    with pytest.raises(scoring.ScoringError, match="model_version must be a version number"):
        scoring.requested_uri(TELECOM, "latest")


def test_the_summary_counts_rows_compares_scores_and_opens_with_the_provenance(
    tmp_path: Path,
) -> None:
    path = with_bad_rows(batch_file(tmp_path, BANKCHURN))
    screened, record = scoring.screen_source(BANKCHURN, str(path))
    out = scored(BANKCHURN, screened)
    pinned = PinnedModel(
        project="bankchurn",
        requested="models:/bankchurn@champion",
        name="bankchurn",
        version="7",
        run_id="r",
        uri="models:/bankchurn/7",
        model_file_sha256="a" * 64,
        verified=True,
    )
    found = drift.no_reference(BANKCHURN, len(out), "not enough data: 117 rows").summary
    reference = fitted(BANKCHURN).predict_proba(small_split(BANKCHURN).test)[:, 1]
    summary = scoring.summarise(
        BANKCHURN,
        pinned,
        record,
        found,
        out,
        reference,
        shards=3,
        with_reasons=False,
        gate="warn",
        output_format="csv",
        threshold=THRESHOLD,
    )
    assert (summary.rows, summary.scored_rows, summary.rejected_rows) == (120, 117, 3)
    assert summary.positive_share == pytest.approx(float((out["churn"] == 1).mean()))
    assert summary.reference_positive_share == pytest.approx(float((reference >= THRESHOLD).mean()))
    assert summary.score_quantiles["max"] <= 1.0 and set(summary.reference_score_quantiles)
    where = scoring.provenance(pinned, summary, "run-1")
    page = scoring.summary_html(
        BANKCHURN, summary, out["churn_probability"].to_numpy(), reference, where
    )
    assert "data-provenance" in page and 'data-field="model-version">7<' in page
    assert "117 of 120 rows scored by bankchurn v7, 3 set aside" in page
    assert "<td>minimum</td>" in page and "share labelled churns" in page


@pytest.mark.real_data
@pytest.mark.parametrize("spec", [BANKCHURN, TELECOM, CARVISION], ids=lambda s: s.name)
def test_every_row_of_the_real_files_passes_the_row_checks(spec: ProjectSpec) -> None:
    """The real files, as a user would bring them (the target is then an ignored column): nothing
    rejected, every identifier carried."""
    _, record = scoring.screen_source(spec, str(real_data_path(spec)))
    assert record.rejected_rows == 0 and record.valid_rows == record.rows
    assert record.identifier_columns == list(spec.identifier_columns)
    assert spec.target in record.ignored_columns


@pytest.mark.parametrize("rows", [1, 2, 7, 1000])
def test_the_summary_figures_and_ranks_come_out_of_core_as_numpy_gives_them(rows: int) -> None:
    rng = np.random.default_rng(rows)
    # ties on purpose: a third of the rows share a handful of scores
    probability = np.where(rng.random(rows) < 0.3, rng.integers(0, 3, rows) / 4, rng.random(rows))
    out = pd.DataFrame(
        {
            "row_number": np.arange(1, rows + 1),
            "churn_probability": probability,
            "churn": (probability >= 0.5).astype(int),
            "risk_band": "low",
        }
    )
    shards = [out.iloc[i : i + 3] for i in range(0, rows, 3)][::-1]
    merged = scoring.merge(BANKCHURN, shards, rows)
    expected = np.lexsort((out["row_number"], -probability))
    assert merged["row_number"].tolist() == out["row_number"].tolist()
    assert merged["risk_rank"].to_numpy()[expected].tolist() == list(range(1, rows + 1))
    with scoring.tempfile.TemporaryDirectory() as folder:
        con = scoring.engine.connect(Path(folder) / "spill")
        con.register("merged", merged)
        figures = scoring.score_figures(BANKCHURN, con, "merged", Path(folder))
    assert figures.quantiles == pytest.approx(scoring.quantiles(probability), rel=0, abs=1e-12)
    assert figures.positive_share == pytest.approx(float(np.mean(probability >= 0.5)))
    assert figures.rows == rows and len(figures.sample) == rows
