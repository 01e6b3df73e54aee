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


def test_drift_is_found_when_the_batch_shifts_and_not_otherwise() -> None:
    spec = PROJECTS["telecom"]
    reference = spec.make_synthetic(1500, 1)
    same = drift.detect(spec, reference, spec.make_synthetic(400, 2))
    assert same.summary.drift_share < 0.5 and not same.summary.dataset_drift
    shifted = spec.make_synthetic(400, 2)
    for col in ("calls", "minutes", "messages", "mb_used"):
        shifted[col] = shifted[col] * 3
    moved = drift.detect(spec, reference, shifted)
    assert moved.summary.dataset_drift and moved.summary.drift_share == pytest.approx(1.0)
    assert all(moved.summary.column_drifted.values())
    assert (
        moved.html.lstrip().lower().startswith("<!doctype html")
        or "<html" in moved.html[:500].lower()
    )


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
