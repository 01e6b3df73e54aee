import json

import numpy as np
import pytest

from components.core import evaluate as logic
from components.core import metrics
from components.core.contracts import GroupFigures
from components.core.lineage import Provenance
from components.core.projects import PROJECTS
from components.core.spec import Gate, ProjectSpec
from tests.conftest import quick_model, small_split


def test_lift_counts_positives_in_the_top_decile() -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1] * 10)
    score = np.where(y == 1, 0.9, 0.1)
    assert metrics.lift_at(y, score, 0.1) == pytest.approx(1 / 0.2)


def test_binary_metrics_match_hand_counts() -> None:
    y = np.array([0, 0, 1, 1, 1])
    score = np.array([0.1, 0.6, 0.4, 0.7, 0.9])
    m = metrics.binary_metrics(y, score, threshold=0.5)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(3 / 5)


def test_evaluation_is_json_safe_and_has_groups(spec: ProjectSpec) -> None:
    result = quick_model(spec)
    evaluation, score = logic.evaluate(spec, result.model, small_split(spec).test)
    json.dumps(evaluation.curves, allow_nan=False)
    assert len(score) == evaluation.rows
    if spec.task.probabilistic:
        assert max(evaluation.curves["thresholds"]) <= 1.0
        assert np.asarray(evaluation.curves["confusion_matrix"]).sum() == evaluation.rows
        assert {"roc_auc", "pr_auc", "f1", "lift_top10", "threshold"} <= set(evaluation.metrics)
    else:
        assert {"rmse", "mae", "r2", "mape"} <= set(evaluation.metrics)
    if spec.group_columns:
        assert {g.column for g in evaluation.groups} == set(spec.group_columns)
        assert sum(g.rows for g in evaluation.groups) == evaluation.rows * len(spec.group_columns)


def test_failing_gate_names_metric_value_and_threshold() -> None:
    spec = PROJECTS["telecom"]
    gates = spec.with_gate_overrides({"accuracy": 0.99})
    with pytest.raises(logic.GateFailed, match=r"accuracy = 0\.8000 \(gate >= 0\.99\): FAILED"):
        logic.enforce_gates(spec, gates, {"accuracy": 0.8, "roc_auc": 0.9})
    assert logic.enforce_gates(spec, spec.gates, {"accuracy": 0.8, "roc_auc": 0.9})


def test_lower_is_better_gates_and_unknown_gate_names() -> None:
    gate = Gate("mape", 0.3)
    assert gate.passes(0.2) and gate.passes(0.3) and not gate.passes(0.4)
    assert gate.describe(0.4) == "mape = 0.4000 (gate <= 0.3): FAILED"
    with pytest.raises(KeyError, match="unknown metric 'mapee'"):
        Gate("mapee", 0.3)
    passed, lines = logic.check_gates((gate,), {})
    assert not passed and "not measured" in lines[0]
    with pytest.raises(ValueError, match="no gate on \\['nope'\\]"):
        PROJECTS["carvision"].with_gate_overrides({"nope": 1.0})


PROVENANCE = Provenance("x", True, "synthetic (sha256 ab)", "model", "run-1", notice="SYNTHETIC")


def test_the_report_has_what_a_reviewer_of_the_task_looks_for(spec: ProjectSpec) -> None:
    result = quick_model(spec)
    done = logic.assess(spec, result.model, small_split(spec).test, PROVENANCE, resamples=50)
    page = done.html
    assert page.startswith("<!doctype html>") and "data:image/png;base64" in page
    assert "data-provenance" in page and "SYNTHETIC DATA" in page and "run-1" in page
    assert "95% interval" in page and metrics.metric(spec.primary_metric).meaning in page
    assert done.summary.reading and done.summary.reading in page
    if spec.task.probabilistic:
        for section in (
            "precision-recall curve",
            "Calibration and threshold",
            "the served model applies",
        ):
            assert section in page
        assert "Each row is an actual class and adds up to 100%" in page
    else:
        assert "Error by price band" in page and "USD" in page
    low, high = done.summary.intervals[spec.primary_metric]
    assert low <= done.summary.metrics[spec.primary_metric] <= high


def test_the_business_reading_counts_what_it_says() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    score = np.array([0.9, 0.8, 0.2, 0.1, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1])
    facts = logic.reading_facts(PROJECTS["telecom"], y, score, 0.5)
    assert (facts["positives"], facts["found"], facts["flagged"]) == (4, 2, 3)
    reading = logic.business_reading(PROJECTS["telecom"], y, score, 0.5)
    assert reading.startswith("Of the 4 Ultra users in the test split, the model finds 2 (50%)")
    assert "of the 3 subscribers it would offer Ultra, 2 (67%) chose Ultra" in reading
    prices = np.array([10_000.0, 20_000.0, 30_000.0, 40_000.0])
    estimates = prices * np.array([1.05, 0.7, 1.0, 1.1])
    carvision = logic.reading_facts(PROJECTS["carvision"], prices, estimates, 0.5)
    assert carvision["median_abs_error"] == 2_250.0 and carvision["within_20pct"] == 0.75


def test_small_groups_are_not_judged_and_gaps_are_called_out() -> None:
    spec = PROJECTS["bankchurn"]

    def group(name: str, rows: int, recall: float, positive_rate: float = 0.2) -> GroupFigures:
        figures = {"recall": recall, "positive_rate": positive_rate}
        return GroupFigures(column="Geography", group=name, rows=rows, figures=figures)

    groups = [
        group("France", 1000, 0.55),
        group("Germany", 500, 0.78),
        group("Spain", 90, 0.1),
        group("Mars", 400, 0.99, positive_rate=0.01),
    ]
    assert [logic.small_group(spec, g) for g in groups] == [False, False, True, True]
    assert logic.group_gaps(spec, groups) == [
        "Geography: recall ranges from 0.55 (France, 1,000 rows) to 0.78 (Germany, 500 rows), "
        "a gap of 0.23"
    ]
    assert logic.group_gaps(spec, groups[:1]) == []


def _noisy_scores(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype(int)
    return y, np.clip(0.3 * y + rng.normal(0.35, 0.2, rows), 0, 1)


def test_bootstrap_interval_holds_the_test_figure_and_narrows_with_more_rows() -> None:
    spec = PROJECTS["telecom"]
    widths = []
    for rows in (200, 5000):
        y, score = _noisy_scores(rows, 3)
        point = metrics.binary_metrics(y, score, 0.5)
        intervals = logic.bootstrap_intervals(spec, y, score, 0.5, ["roc_auc", "f1"], 300)
        for metric, (low, high) in intervals.items():
            assert low < point[metric] < high
        widths.append(intervals["roc_auc"][1] - intervals["roc_auc"][0])
    assert widths[1] < widths[0] / 3


def test_bootstrap_interval_of_a_perfect_ranking_is_a_point() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 1, 0] * 10)
    intervals = logic.bootstrap_intervals(PROJECTS["bankchurn"], y, y * 0.8 + 0.1, 0.5, ["roc_auc"])
    assert intervals["roc_auc"] == (1.0, 1.0)


def test_bootstrap_interval_for_regression_figures() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(10_000, 3_000, 1000)
    pred = y + rng.normal(0, 1_000, 1000)
    rmse = metrics.regression_metrics(y, pred)["rmse"]
    low, high = logic.bootstrap_intervals(PROJECTS["carvision"], y, pred, 0.5, ["rmse"], 300)[
        "rmse"
    ]
    assert 900 < low < rmse < high < 1100


def test_assess_checks_overridden_gates_and_names_a_bad_override() -> None:
    spec = PROJECTS["telecom"]
    result = quick_model(spec)
    test = small_split(spec).test
    done = logic.assess(spec, result.model, test, PROVENANCE, '{"accuracy": 0.01}', resamples=20)
    assert done.summary.passed and done.summary.rows == len(test)
    assert (
        done.summary.gates[0].startswith("accuracy = ")
        and "(gate >= 0.01): passed" in done.summary.gates[0]
    )
    assert "SYNTHETIC" in done.html
    with pytest.raises(ValueError, match="gate_overrides '\\[1\\]': expected a JSON object"):
        logic.assess(spec, result.model, test, PROVENANCE, "[1]")
    with pytest.raises(ValueError, match="gate_overrides 'nope'"):
        logic.assess(spec, result.model, test, PROVENANCE, "nope")
