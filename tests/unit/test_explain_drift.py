import numpy as np
import pytest
from sklearn.model_selection import FixedThresholdClassifier

from components.core import drift, explain
from components.core.outputs import model_output
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from components.core.train import build_pipeline, calibrated
from tests.conftest import quick_model, small_split


def test_raw_input_contributions_add_up_to_the_model_output(spec: ProjectSpec) -> None:
    result = quick_model(spec)
    parts = small_split(spec)
    explainer = explain.RawInputExplainer(
        spec, result.model, parts.train, max_background=20, permutations=2
    )
    rows = parts.test.head(5)
    explanation = explainer.explain(rows)
    assert list(explanation.contributions.columns) == spec.input_columns
    expected = model_output(spec, result.model, rows[spec.input_columns])
    np.testing.assert_allclose(
        explanation.base_value + explanation.contributions.sum(axis=1), expected, atol=1e-6
    )


def test_global_importance_is_named_by_engineered_columns(spec: ProjectSpec) -> None:
    result = quick_model(spec)
    parts = small_split(spec)
    explanation = explain.explain_global(spec, result.model, parts.test, parts.train, rows=60)
    names = set(explain.final_pipeline(result.model).steps[0][1].get_feature_names_out())
    assert set(explanation.importance().index) <= names | set(spec.input_columns)
    assert explanation.importance().iloc[0] > 0
    assert "<img" in explain.summary_html(spec, explanation)


def test_one_hot_names_fold_back_to_their_column() -> None:
    sources = ["Geography", "Gender", "Age", "age_band"]
    assert explain.source_column("Geography_Germany", sources) == "Geography"
    assert explain.source_column("age_band_30-39", sources) == "age_band"
    assert explain.source_column("Age", sources) == "Age"


IMPORTANCE = {"mb_used": 0.12, "minutes": 0.05, "messages": 0.04, "calls": 0.0}


def test_an_iid_batch_shows_no_drift_and_a_shifted_important_column_does() -> None:
    spec = PROJECTS["telecom"]
    reference = spec.make_synthetic(3000, 1)
    same = drift.detect(spec, reference, spec.make_synthetic(800, 2), IMPORTANCE).summary
    assert same.enough_data and not same.drift_detected
    assert same.important_columns == ["mb_used", "minutes", "messages"]
    moved = drift.detect(
        spec, reference, drift.shift(spec.make_synthetic(800, 2), {"mb_used": 1.5}), IMPORTANCE
    )
    found = moved.summary
    assert found.drift_detected and found.drifted_important_columns == ["mb_used"]
    assert found.drifted_columns == ["mb_used"] and found.drift_share == pytest.approx(0.25)
    assert found.reason == "drift in important column(s) mb_used"
    assert "<html" in moved.html[:500].lower() or moved.html.lstrip().lower().startswith("<!doc")


def test_a_lone_minor_column_does_not_cry_wolf() -> None:
    spec = PROJECTS["telecom"]
    reference = spec.make_synthetic(3000, 1)
    batch = drift.shift(spec.make_synthetic(800, 2), {"calls": 3.0})
    found = drift.detect(spec, reference, batch, IMPORTANCE).summary
    assert found.drifted_columns == ["calls"] and not found.drift_detected
    assert found.reason.startswith("no drift: calls moved, but none is among the top 3")
    unweighted = drift.detect(spec, reference, batch, None, drift.DriftPolicy(important_columns=0))
    assert not unweighted.summary.drift_detected  # one column of four carries 25% < 50%
    everything = drift.shift(batch, {"minutes": 3.0, "messages": 3.0})
    assert drift.detect(spec, reference, everything, None).summary.drift_detected


def test_a_small_window_is_not_judged_and_a_policy_is_checked() -> None:
    spec = PROJECTS["telecom"]
    found = drift.detect(spec, spec.make_synthetic(2000, 1), spec.make_synthetic(120, 2)).summary
    assert not found.enough_data and not found.drift_detected
    assert found.reason == "not enough data: 120 rows, at least 500 needed"
    with pytest.raises(ValueError, match="weighted_share 0"):
        drift.DriftPolicy(weighted_share=0)
    with pytest.raises(KeyError, match="cannot shift 'nope'"):
        drift.shift(spec.make_synthetic(10, 1), {"nope": 2.0})


def test_free_text_and_dates_are_compared_as_counts_and_days() -> None:
    spec = PROJECTS["carvision"]
    reference = spec.make_synthetic(3000, 1)
    found = drift.detect(spec, reference, spec.make_synthetic(1000, 2)).summary
    assert found.column_methods["model"].startswith("Jensen-Shannon")
    assert found.column_methods["date_posted"].startswith("Wasserstein")
    assert not found.drift_detected


def test_input_importance_names_every_raw_column_largest_first(spec: ProjectSpec) -> None:
    result = quick_model(spec)
    importance = explain.input_importance(spec, result.model, small_split(spec).test, rows=300)
    assert set(importance) == set(spec.input_columns)
    values = list(importance.values())
    assert values == sorted(values, reverse=True) and min(values) >= 0 and max(values) > 0


def test_a_calibrated_forest_is_explained_by_its_trees() -> None:
    spec = PROJECTS["telecom"]
    parts = small_split(spec)

    pipeline = calibrated(
        build_pipeline(spec, spec.candidate("random_forest"), 7, {"model__n_estimators": 20}), 7
    )
    X, y = parts.train[spec.input_columns], parts.train[spec.target]
    model = FixedThresholdClassifier(pipeline, threshold=0.5).fit(X, y)
    explanation = explain.tree_explanation(spec, model, parts.test.head(30))
    assert explanation is not None and explanation.method.endswith("before calibration)")
    assert explanation.importance().iloc[0] > 0
    # One forest, refitted on all the rows: its tree SHAP adds up to its own probability.
    forest = model.estimator_.steps[-1][1].calibrated_classifiers_[0].estimator
    transformed = model.estimator_[:-1].transform(parts.test.head(30)[spec.input_columns])
    np.testing.assert_allclose(
        explanation.base_value + explanation.contributions.sum(axis=1),
        forest.predict_proba(transformed)[:, 1],
        atol=1e-6,
    )


def test_categorical_splits_take_the_model_agnostic_path() -> None:
    # SHAP's tree walker would read carvision's native categorical splits as thresholds.
    spec = PROJECTS["carvision"]
    parts = small_split(spec)
    pipeline = build_pipeline(spec, spec.candidate("gradient_boosting"), 7, {"model__max_iter": 30})
    model = pipeline.fit(parts.train[spec.input_columns], parts.train[spec.target])
    assert explain.has_categorical_splits(model.steps[-1][1])
    assert explain.tree_explanation(spec, model, parts.test.head(10)) is None
    explanation = explain.explain_global(spec, model, parts.test, parts.train, rows=10)
    assert explanation.method == "permutation (raw inputs)"
    explained = parts.test.loc[explanation.contributions.index, spec.input_columns]
    expected = model_output(spec, model, explained)
    np.testing.assert_allclose(
        explanation.base_value + explanation.contributions.sum(axis=1), expected, rtol=1e-6
    )


def test_a_catboost_model_is_explained_by_its_trees_in_log_odds() -> None:
    spec = PROJECTS["bankchurn"]
    parts = small_split(spec)
    pipeline = build_pipeline(spec, spec.candidate("catboost"), 7, {"model__iterations": 40})
    model = pipeline.fit(parts.train[spec.input_columns], parts.train[spec.target])
    rows = parts.test.head(20)
    explanation = explain.tree_explanation(spec, model, rows)
    assert explanation is not None and explanation.method.startswith("tree")
    transformed = model[:-1].transform(rows[spec.input_columns])
    margin = model.steps[-1][1].predict(transformed, prediction_type="RawFormulaVal")
    np.testing.assert_allclose(
        explanation.base_value + explanation.contributions.sum(axis=1), margin, atol=1e-6
    )
