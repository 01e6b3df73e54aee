"""The records that cross step boundaries: round trips, older versions, refusals that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.core import contracts
from components.core.contracts import (
    ContractError,
    DriftSummary,
    EvaluationSummary,
    ExplanationSummary,
    GroupFigures,
    Registration,
    Selection,
    SourceInfo,
)

SOURCE = SourceInfo(
    source="data/users_behavior.csv",
    synthetic=False,
    rows=3214,
    columns=5,
    sha256="fa08",
    removed_rows={"junk": 2},
    notice="",
    stratified=True,
    train_rows=2571,
    test_rows=643,
)
SELECTION = Selection(
    candidate="random_forest",
    params={"model__max_depth": 10, "model__max_features": "sqrt", "features__derived": False},
    threshold=0.5,
    trials=9,
    seconds=12.5,
    notes=["9 trials"],
    cv_mean={"accuracy": 0.81},
    cv_std={"accuracy": 0.01},
)
EVALUATION = EvaluationSummary(
    rows=643,
    metrics={"accuracy": 0.8212, "roc_auc": float("nan")},
    groups=[GroupFigures(column="Gender", group="Male", rows=300, figures={"f1": 0.6})],
    gates=["accuracy = 0.8212 (gate >= 0.75): passed"],
    passed=True,
)
EXPLANATION = ExplanationSummary(
    method="tree", base_value=0.3, importance={"mb_used": 0.1}, input_importance={"mb_used": 0.2}
)
DRIFT = DriftSummary(
    rows=600,
    reference_rows=2571,
    reference="telecom v3 training sample (2571 rows)",
    enough_data=True,
    drift_detected=False,
    drifted_columns=["calls"],
    drift_share=0.25,
    weighted_drift_share=0.0,
    important_columns=["mb_used"],
    drifted_important_columns=[],
    column_scores={"calls": 0.31},
    column_methods={"calls": "Wasserstein distance (normed)"},
    column_drifted={"calls": True},
    reason="no drift: calls moved, but none is among the top 3",
)
REGISTRATION = Registration(
    run_id="abc",
    version="3",
    aliases=["challenger"],
    champion_before="2",
    decision="kept",
    metrics={},
)
RECORDS = [SOURCE, SELECTION, EVALUATION, EXPLANATION, DRIFT, REGISTRATION]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.SCHEMA)
def test_every_record_round_trips_through_its_file(
    record: contracts.Contract, tmp_path: Path
) -> None:
    path = tmp_path / "artifact"
    record.write(path)
    written = json.loads(path.read_text())
    assert (written["schema"], written["schema_version"]) == (record.SCHEMA, record.VERSION)
    again = type(record).read(path)
    assert again.to_json() == record.to_json()


def test_types_survive_the_round_trip() -> None:
    again = Selection.from_json(SELECTION.to_json())
    assert again.params == SELECTION.params
    assert [type(v) for v in again.params.values()] == [int, str, bool]


def test_a_record_written_before_versions_were_stamped_is_read() -> None:
    legacy = {
        k: v for k, v in json.loads(REGISTRATION.to_json()).items() if not k.startswith("schema")
    }
    assert Registration.from_json(json.dumps(legacy)) == REGISTRATION


def test_a_missing_or_mistyped_field_is_named() -> None:
    data = json.loads(SOURCE.to_json())
    del data["sha256"]
    data["rows"] = "many"
    with pytest.raises(ContractError) as error:
        SourceInfo.from_json(json.dumps(data), "ingest/source_info")
    message = str(error.value)
    assert message.startswith("source_info (ingest/source_info) (schema_version 1):")
    assert "field 'sha256': field required" in message and "field 'rows':" in message


def test_a_newer_version_another_schema_or_no_object_is_refused() -> None:
    data = json.loads(DRIFT.to_json())
    with pytest.raises(
        ContractError, match="field 'schema_version' is 3; this code reads versions up to 2"
    ):
        DriftSummary.from_json(json.dumps(data | {"schema_version": 3}))
    with pytest.raises(ContractError, match="field 'schema' is 'drift'"):
        Registration.from_json(json.dumps(data))
    with pytest.raises(ContractError, match="expected a JSON object"):
        DriftSummary.from_json("[1, 2]")
    with pytest.raises(ContractError, match="is not JSON"):
        DriftSummary.from_json("{")


def test_registration_knows_whether_it_made_a_champion() -> None:
    assert not REGISTRATION.is_champion
    assert REGISTRATION.model_copy(update={"aliases": ["challenger", "champion"]}).is_champion


def test_the_run_record_names_mlflow_figures_from_the_records() -> None:
    record = contracts.RunRecord(
        SOURCE, SELECTION, EVALUATION, EXPLANATION, DRIFT, 42, 0.2, "run-1", "d1gest"
    )
    figures = record.metrics()
    assert figures["test_accuracy"] == 0.8212 and figures["cv_mean_accuracy"] == 0.81
    assert figures["cv_std_accuracy"] == 0.01 and figures["drifted_columns"] == 1.0
    assert record.params()["model.model__max_depth"] == 10
    assert record.tags() == {
        "kfp.run_name": "run-1",
        "model_sha256": "d1gest",
        "synthetic_data": "false",
        "source": "data/users_behavior.csv",
    }


def test_a_record_of_an_older_version_missing_a_new_field_is_refused_by_name() -> None:
    older = json.loads(EXPLANATION.to_json()) | {"schema_version": 1}
    del older["input_importance"]
    with pytest.raises(
        ContractError,
        match="explanation \\(schema_version 1\\): field 'input_importance': field required",
    ):
        ExplanationSummary.from_json(json.dumps(older))


def test_a_monitoring_record_of_version_2_is_read_with_its_drift_fields(tmp_path: Path) -> None:
    from tests.support.records import monitoring_summary

    now = monitoring_summary()
    flat = json.loads(now.to_json())
    drift = flat.pop("drift")
    flat |= {
        "schema_version": 2,
        "enough_data": drift["enough_data"],
        "drift_detected": drift["drift_detected"],
        "drifted_columns": drift["drifted_columns"],
        "drifted_important_columns": drift["drifted_important_columns"],
        "drift_share": drift["drift_share"],
        "weighted_drift_share": drift["weighted_drift_share"],
        "drift_reason": drift["reason"],
        "reference": drift["reference"],
    }
    (tmp_path / "old.json").write_text(json.dumps(flat))
    old = contracts.MonitoringSummary.read(tmp_path / "old.json")
    kept = ("drift_detected", "drifted_columns", "drifted_important_columns", "drift_share")
    assert {k: getattr(old.drift, k) for k in kept} == {k: drift[k] for k in kept}
    assert (old.drift.reason, old.drift.reference) == (drift["reason"], drift["reference"])
    assert old.drift.column_drifted == {"mb_used": True}
    assert old.live_metrics == now.live_metrics and old.rows == now.rows
