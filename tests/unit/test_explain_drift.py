import numpy as np
import pandas as pd
import pytest

from components.core import drift, explain, registry
from components.core.lineage import Provenance
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from components.core.train import build_pipeline, split_xy
from tests.conftest import fitted_candidate, quick_model, quick_spec, small_split


def test_raw_input_contributions_add_up_to_the_model_output(spec: ProjectSpec) -> None:
    result = quick_model(spec)
    parts = small_split(spec)
    explainer = explain.RawInputExplainer(
        spec, result.model, parts.train, max_background=20, permutations=2
    )
    rows = parts.test.head(5)
    explanation = explainer.explain(rows)
    assert list(explanation.contributions.columns) == spec.input_columns
    expected = spec.task.model_output(result.model, rows[spec.input_columns])
    np.testing.assert_allclose(
        explanation.base_value + explanation.contributions.sum(axis=1), expected, atol=1e-6
    )


FAST = {
    ("bankchurn", "logistic_regression"): "linear SHAP",
    ("bankchurn", "random_forest"): "tree SHAP",
    ("bankchurn", "catboost"): "tree SHAP",
    ("bankchurn", "gradient_boosting_smote"): "tree SHAP",
    ("telecom", "logistic_regression"): "linear SHAP",
    ("telecom", "random_forest"): "tree SHAP",
    ("telecom", "gradient_boosting"): "tree SHAP",
    ("carvision", "random_forest"): "tree SHAP",
    # Native categorical splits, and a constant: permutation SHAP on the raw inputs.
    ("carvision", "gradient_boosting"): "permutation SHAP",
    ("carvision", "median_baseline"): "permutation SHAP",
}


@pytest.mark.parametrize(("project", "candidate"), sorted(FAST))
def test_each_candidate_is_explained_in_raw_fields_adding_up_to_its_output(
    project: str, candidate: str
) -> None:
    spec, model = fitted_candidate(project, candidate)
    parts = small_split(spec)
    explainer = explain.explainer_for(spec, model, parts.train)
    assert explainer.method.startswith(FAST[(project, candidate)])
    rows = parts.test.head(30 if isinstance(explainer, explain.TreeInputExplainer) else 3)
    explanation = explainer.explain(rows)
    assert list(explanation.contributions.columns) == spec.input_columns
    served = spec.task.model_output(model, rows[spec.input_columns])
    np.testing.assert_allclose(explanation.output, served, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        explanation.base_value + explanation.contributions.sum(axis=1), served, rtol=1e-6
    )


def test_engineered_columns_are_credited_to_the_fields_they_are_built_from() -> None:
    spec = quick_spec(PROJECTS["bankchurn"])
    parts = small_split(spec)
    X, y = split_xy(spec, parts.train)
    model = build_pipeline(spec, spec.candidate("catboost"), seed=7).fit(X, y)
    explainer = explain.TreeInputExplainer(spec, model, parts.train)
    shares = pd.DataFrame(explainer.weights, index=explainer.names, columns=spec.input_columns)
    assert shares.loc["balance_to_salary", ["Balance", "EstimatedSalary"]].tolist() == [0.5, 0.5]
    assert shares.loc["zero_balance", "Balance"] == 1.0
    # Bands and one-hot columns, including the band of the oldest customers.
    assert shares.loc["age_band_60+", "Age"] == 1.0
    assert shares.loc["Geography_Germany", "Geography"] == 1.0
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    # A row alone gets what it gets in a batch, and the method is fast enough for batches.
    batch = explainer.explain(parts.test.head(50))
    alone = explainer.explain(parts.test.iloc[[7]])
    np.testing.assert_allclose(alone.contributions, batch.contributions.iloc[[7]], atol=1e-12)


def test_the_report_and_the_server_give_a_row_one_explanation(spec: ProjectSpec) -> None:
    result = quick_model(spec)
    parts = small_split(spec)
    report = explain.explain_test_rows(spec, result.model, parts.test, parts.train, rows=4)
    assert list(report.contributions.columns) == spec.input_columns
    # The server builds its explainer on the background logged with the model.
    background = registry.model_files(spec, result.model, parts.train)["input_example"]
    server = explain.explainer_for(spec, result.model, background)
    assert report.method == server.method
    row = report.contributions.index[2]
    alone = server.explain(parts.test.loc[[row]])
    np.testing.assert_allclose(
        alone.contributions.to_numpy(), report.contributions.loc[[row]], rtol=1e-12, atol=1e-15
    )
    assert alone.base_value == report.base_value


def test_the_explanation_report_names_its_unit_direction_and_provenance() -> None:
    spec = PROJECTS["bankchurn"]
    result = quick_model(spec)
    parts = small_split(spec)
    explanation = explain.explain_test_rows(spec, result.model, parts.test, parts.train, rows=8)
    provenance = Provenance("bankchurn", True, "synthetic (sha256 x)", "model", "run-1")
    page = explain.summary_html(spec, explanation, parts.test, provenance)
    assert "mean |contribution| (P(churns))" in page and "add up to its prediction" in page
    assert "data-provenance" in page and "SYNTHETIC DATA" in page and "run-1" in page
    assert any(
        explain.direction(
            parts.test.loc[explanation.contributions.index, c], explanation.contributions[c]
        )
        for c in ("Age", "Balance")
    )
    summary = explanation.summary({}, spec.output_unit)
    assert summary.unit == "P(churns)" and summary.rows == 8
    assert list(summary.importance) == list(explanation.importance().index)


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


def test_the_drift_report_says_what_it_compares_under_its_provenance() -> None:
    spec = PROJECTS["telecom"]
    reference = spec.make_synthetic(1000, 1)
    moved = drift.shift(spec.make_synthetic(600, 2), {"mb_used": 1.5})
    result = drift.detect(spec, reference, moved, IMPORTANCE, reference_label="telecom v3 sample")
    provenance = Provenance("telecom", False, "users.csv (sha256 ab)", "none", "run-7")
    page = drift.report_html(spec, result, provenance, "this run's training split")
    assert "<title>Telecom plan recommendation (telecom): data drift of this run&#x27;s" in page
    assert "current = this run&#x27;s training split (600 rows)" in page
    assert "reference = telecom v3 sample (1,000 rows)" in page
    assert "Verdict: drift in important column(s) mb_used" in page
    assert page.count("data-provenance") == 1 and "REAL DATA" in page and "run-7" in page
    nothing = drift.no_reference(spec, 10, "no champion yet")
    assert "Verdict: no champion yet." in drift.report_html(spec, nothing, provenance, "x")
