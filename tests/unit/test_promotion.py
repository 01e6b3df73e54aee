"""Promotion: who becomes champion, decided by a pure function, then the same rules through a real
MLflow store."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from components.core import drift, metrics, reference, registry, report
from components.core.contracts import (
    EvaluationSummary,
    ExplanationSummary,
    RunRecord,
    SourceInfo,
)
from components.core.evaluate import evaluate
from components.core.lineage import Provenance
from components.core.projects import PROJECTS
from components.core.registry import Incumbent
from components.core.tasks import cv_scoring
from components.core.train import selection_summary
from tests.conftest import quick_model, small_split

TELECOM = PROJECTS["telecom"]
TEST = registry.TEST_SPLIT
HOLDOUT = registry.HOLDOUT_SPLIT
REAL_CHAMPION = Incumbent("3", {TEST: 0.82}, "champion v3", synthetic=False)


def test_a_better_challenger_wins() -> None:
    decision = registry.decide(TELECOM, {TEST: 0.85}, False, REAL_CHAMPION)
    assert decision.promote
    assert decision.reason == (
        "promoted to champion over champion v3: accuracy test split 0.8500 vs 0.8200"
    )


def test_a_worse_challenger_keeps_the_champion() -> None:
    decision = registry.decide(TELECOM, {TEST: 0.80}, False, REAL_CHAMPION)
    assert not decision.promote
    assert decision.reason == (
        "kept champion v3: the challenger does not beat it on the test split "
        "(accuracy challenger vs champion: test split 0.8000 vs 0.8200)"
    )


def test_a_tie_keeps_the_champion() -> None:
    assert not registry.decide(TELECOM, {TEST: 0.82}, False, REAL_CHAMPION).promote


def test_a_lower_is_better_primary_metric_promotes_the_smaller_error() -> None:
    by_rmse = dataclasses.replace(PROJECTS["carvision"], primary_metric="rmse")
    champion = Incumbent("1", {TEST: 3000.0}, "champion v1", synthetic=False)
    assert registry.decide(by_rmse, {TEST: 2900.0}, False, champion).promote
    assert not registry.decide(by_rmse, {TEST: 3100.0}, False, champion).promote
    assert not registry.decide(by_rmse, {TEST: 3000.0}, False, champion).promote


def test_after_monitoring_the_challenger_must_win_on_the_old_test_split_and_the_new_rows() -> None:
    champion = Incumbent("3", {TEST: 0.82, HOLDOUT: 0.70}, "champion v3", synthetic=False)
    both = registry.decide(TELECOM, {TEST: 0.83, HOLDOUT: 0.75}, False, champion)
    assert both.promote
    assert "test split 0.8300 vs 0.8200; new labelled holdout 0.7500 vs 0.7000" in both.reason
    better_on_new_only = registry.decide(TELECOM, {TEST: 0.81, HOLDOUT: 0.90}, False, champion)
    assert not better_on_new_only.promote
    assert "does not beat it on the test split (" in better_on_new_only.reason
    better_on_old_only = registry.decide(TELECOM, {TEST: 0.90, HOLDOUT: 0.70}, False, champion)
    assert not better_on_old_only.promote
    assert "does not beat it on the new labelled holdout (" in better_on_old_only.reason
    neither = registry.decide(TELECOM, {TEST: 0.5, HOLDOUT: 0.5}, False, champion)
    assert "on the test split and the new labelled holdout" in neither.reason


def test_the_first_model_and_an_unscorable_champion_are_replaced() -> None:
    first = registry.decide(TELECOM, {TEST: 0.5}, False, registry.NO_CHAMPION)
    assert first.promote and first.reason.endswith("vs no champion yet")
    broken = Incumbent("2", {}, "champion v2 could not be scored", synthetic=False)
    assert registry.decide(TELECOM, {TEST: 0.5}, False, broken).promote
    assert registry.beats(TELECOM, 0.5, math.nan)


def test_a_synthetic_model_never_displaces_a_real_champion() -> None:
    decision = registry.decide(TELECOM, {TEST: 0.99}, True, REAL_CHAMPION)
    assert not decision.promote and "synthetic" in decision.reason
    retrained = registry.decide(TELECOM, {TEST: 0.99, HOLDOUT: 0.99}, True, REAL_CHAMPION)
    assert not retrained.promote and "synthetic" in retrained.reason
    synthetic_champion = dataclasses.replace(REAL_CHAMPION, synthetic=True)
    assert registry.decide(TELECOM, {TEST: 0.99}, True, synthetic_champion).promote
    assert registry.decide(TELECOM, {TEST: 0.99}, False, synthetic_champion).promote


def test_every_metric_direction_agrees_with_its_cv_scorer() -> None:
    for name, scorer in cv_scoring(PROJECTS["carvision"].task).items():
        assert scorer.startswith("neg_") == (not metrics.metric(name).higher_is_better)
    assert metrics.metric("rmse").from_cv(-3.0) == 3.0
    assert metrics.metric("r2").from_cv(0.5) == 0.5


@pytest.fixture
def tracking(mlflow_uri: str) -> Iterator[str]:
    mlflow.set_tracking_uri(mlflow_uri)
    yield mlflow_uri


def record_for(synthetic: bool, digest: str, accuracy: float) -> RunRecord:
    trained = quick_model(TELECOM)
    split = small_split(TELECOM)
    evaluation, _ = evaluate(TELECOM, trained.model, split.test)
    return RunRecord(
        source=SourceInfo(
            source="synthetic:1200" if synthetic else "users_behavior.csv",
            synthetic=synthetic,
            rows=1200,
            columns=5,
            sha256="0" * 64,
            removed_rows={},
            notice="SYNTHETIC" if synthetic else "",
            stratified=True,
            train_rows=len(split.train),
            test_rows=len(split.test),
        ),
        selection=selection_summary(trained),
        evaluation=EvaluationSummary(
            rows=evaluation.rows,
            metrics=evaluation.metrics | {"accuracy": accuracy},
            groups=[],
            gates=[],
            passed=True,
        ),
        explanation=ExplanationSummary(
            method="none", base_value=0.0, importance={}, input_importance={"mb_used": 1.0}
        ),
        drift=drift.no_reference(TELECOM, len(split.train), "no champion yet").summary,
        seed=7,
        test_size=0.25,
        run_name=f"promotion-{digest}",
        model_sha256=digest,
    )


def test_promotion_through_a_real_registry(tracking: str, tmp_path: Path) -> None:
    """A real champion, then a synthetic challenger that scores higher (kept out), then the same
    bytes again (not registered twice), each decision recorded on its version with its lineage."""
    spec = dataclasses.replace(TELECOM, name="promotion-telecom")
    split = small_split(TELECOM)
    model = quick_model(TELECOM).model
    frames = {
        "train_frame": split.train,
        "test_frame": split.test,
        "trials": quick_model(TELECOM).trials_frame(),
    }

    evaluation_report = tmp_path / "report.html"
    provenance = Provenance(spec.name, False, "users.csv", "fitted pipeline", "run")
    evaluation_report.write_text(report.page("Evaluation", provenance, []))
    reports = {"evaluation": str(evaluation_report)}

    def register(record: RunRecord) -> registry.Registration:
        return registry.register(spec, model, record, reports=reports, uri=tracking, **frames)

    first = register(record_for(False, "real-1", 0.80))
    assert first.is_champion and first.champion_before is None
    second = register(record_for(True, "synthetic-1", 0.99))
    assert not second.is_champion and second.champion_before == first.version
    assert "synthetic" in second.decision
    card = mlflow.artifacts.load_text(f"runs:/{second.run_id}/model_card/model_card.md")
    assert (
        "**SYNTHETIC DATA.**" in card and "never promoted over a champion trained on real" in card
    )
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(spec.name, "champion").version) == first.version
    tags = client.get_model_version(spec.name, second.version).tags
    assert tags["synthetic_data"] == "true" and tags["decision"] == second.decision
    again = register(record_for(True, "synthetic-1", 0.99))
    assert again.version == second.version and again.decision.startswith("already registered")
    # the model file's sha256, as a server downloads it: on the record and as a version tag
    for done in (first, second):
        assert len(done.model_file_sha256) == 64
        tags = client.get_model_version(spec.name, done.version).tags
        assert tags[registry.MODEL_FILE_DIGEST_TAG] == done.model_file_sha256
        # how it is compiled, and its graph's digest, on the record as in the tags
        assert done.compiled_model == tags[registry.COMPILED_TAG]
        assert done.compiled_model_sha256 == tags.get(registry.COMPILED_DIGEST_TAG, "")
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{spec.name}/{done.version}"))
        assert hashlib.sha256((local / "model.pkl").read_bytes()).hexdigest() == (
            done.model_file_sha256
        )
    assert again.model_file_sha256 == second.model_file_sha256
    assert again.compiled_model_sha256 == second.compiled_model_sha256
    kept, rows = reference.load(first.run_id)
    assert kept.importance == {"mb_used": 1.0} and kept.rows == len(rows) == len(split.train)
    assert rows[TELECOM.target].mean() == pytest.approx(split.train[TELECOM.target].mean())
    assert reference.load_alias(spec.name)[0] == first.version
    with pytest.raises(reference.NoReference, match="no champion yet"):
        reference.load_alias("no-such-model")
    assert mlflow.artifacts.load_text(f"runs:/{first.run_id}/model_card/model_card.md").startswith(
        "# Model card: promotion-telecom"
    )
    assert_lineage_is_recorded(spec.name, first, frames["trials"])


def test_a_staged_promotion_puts_the_better_model_in_shadow_and_keeps_the_champion(
    tracking: str,
) -> None:
    """promotion "staged": the first model is the champion (nothing to compare with); a better
    one goes to shadow beside it for the rollout judge, and the servers' alias stays put."""
    from components.core import rollout

    spec = dataclasses.replace(TELECOM, name="staged-telecom")
    split = small_split(TELECOM)
    model = quick_model(TELECOM).model
    frames = {"train_frame": split.train, "test_frame": split.test,
              "trials": quick_model(TELECOM).trials_frame()}  # fmt: skip

    def register(digest: str, accuracy: float, promotion: str) -> registry.Registration:
        return registry.register(spec, model, record_for(False, digest, accuracy), reports={},
                                 uri=tracking, promotion=promotion, **frames)  # fmt: skip

    first = register("staged-1", 0.80, "staged")
    assert first.is_champion and rollout.current(spec.name) is None
    second = register("staged-2", 0.99, "staged")
    assert not second.is_champion and second.aliases == ["challenger", rollout.STAGED]
    assert second.decision.startswith(
        f"staged in shadow beside champion v{first.version} for the rollout judge"
    )
    staged = rollout.current(spec.name)
    assert staged is not None and (staged.version, staged.stage) == (
        second.version, rollout.Stage.SHADOW,
    )  # fmt: skip
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(spec.name, "champion").version) == first.version
    assert client.get_model_version(spec.name, second.version).tags["decision"] == second.decision
    with pytest.raises(ValueError, match="promotion is one of direct, staged, not 'canary'"):
        register("staged-3", 0.99, "canary")
    assert len(client.search_model_versions(f"name = '{spec.name}'")) == 2  # nothing logged


def test_a_registration_failing_before_its_alias_withdraws_its_version(
    tracking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version exists once the model is logged; a failure after that (here: the decision's
    tags cannot be written) deletes it, so no version without digest, decision or alias stays,
    and the next registration of the same bytes is a whole one."""
    spec = dataclasses.replace(TELECOM, name="withdrawn-telecom")
    split = small_split(TELECOM)
    trained = quick_model(TELECOM)
    frames = {
        "train_frame": split.train,
        "test_frame": split.test,
        "trials": trained.trials_frame(),
    }
    client = mlflow.MlflowClient()
    writes = client.set_model_version_tag

    def fails_on_the_decision(name: str, version: str, key: str, value: str) -> None:
        if key == "decision":
            raise mlflow.exceptions.MlflowException("the registry went away")
        writes(name, version, key, value)

    monkeypatch.setattr(
        mlflow.MlflowClient, "set_model_version_tag", staticmethod(fails_on_the_decision)
    )
    with pytest.raises(mlflow.exceptions.MlflowException, match="went away"):
        registry.register(spec, trained.model, record_for(False, "whole-1", 0.8), reports={},
                          uri=tracking, **frames)  # fmt: skip
    assert client.search_model_versions(f"name = '{spec.name}'") == []
    monkeypatch.undo()
    done = registry.register(spec, trained.model, record_for(False, "whole-1", 0.8), reports={},
                             uri=tracking, **frames)  # fmt: skip
    assert done.is_champion and not done.decision.startswith("already registered")
    assert client.get_model_version(spec.name, done.version).tags["decision"] == done.decision


def assert_lineage_is_recorded(
    name: str, registration: registry.Registration, trials_frame: pd.DataFrame
) -> None:
    """What a reviewer finds in MLflow: the version's description and lineage tags, the data
    inputs, typed trial parameters with their threshold, the chosen trial, stamped reports."""
    client = mlflow.MlflowClient()
    version = client.get_model_version(name, registration.version)
    assert version.description.startswith(f"Telecom plan recommendation ({name} v1)")
    assert "REAL DATA" in version.description and "Test accuracy 0.8000" in version.description
    tags = version.tags
    assert tags["source_sha256"] == "0" * 64 and tags["model_sha256"] == "real-1"
    assert tags["kfp_run"] == "promotion-real-1"
    assert tags["code_version"] and tags["synthetic_data"] == "false"
    run = client.get_run(registration.run_id)
    contexts = {
        i.tags[0].value if i.tags else "": i.dataset.name for i in run.inputs.dataset_inputs
    }
    assert contexts == {"training": f"{name}-training", "testing": f"{name}-testing"}
    assert run.data.params["cv_threshold"] == run.data.params["threshold"]
    trials = mlflow.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{registration.run_id}'",
        output_format="list",
    )
    assert [t.data.tags["chosen"] for t in trials].count("true") == 1
    logged = {t.info.run_name: t.data.params for t in trials}
    for row in trials_frame.itertuples():
        params = logged[f"trial-{row.trial}-{row.candidate}"]
        assert params["cv_threshold"] == "0.5"
        # Each parameter as the search set it: 200 stays "200", not "200.0".
        assert {k: params[k] for k in json.loads(row.params)} == {
            k: str(v) for k, v in json.loads(row.params).items()
        }
    logged = mlflow.artifacts.load_text(f"runs:/{registration.run_id}/reports/evaluation.html")
    assert f'data-field="model-version">{name} v{registration.version}<' in logged
