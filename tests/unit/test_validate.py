import numpy as np
import pandas as pd
import pytest

from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from components.core.validate import DataValidationError, column_violations, validate


def test_synthetic_data_passes_with_a_report(spec: ProjectSpec) -> None:
    frame = spec.make_synthetic(600, 2)
    report = validate(spec, frame, "train")
    assert report.rows == 600
    assert set(report.missing_by_column) == set(frame.columns)
    assert "rows: 600" in report.to_markdown("train")


def broken(mutate):  # type: ignore[no-untyped-def]
    spec = PROJECTS["bankchurn"]
    frame = spec.make_synthetic(400, 3)
    mutate(frame)
    with pytest.raises(DataValidationError) as caught:
        validate(spec, frame, "train")
    return str(caught.value)


def test_missing_column_is_named() -> None:
    message = broken(lambda f: f.drop(columns=["Age"], inplace=True))
    assert "column 'Age': missing column" in message


def test_wrong_type_names_column_row_and_value() -> None:
    def mutate(frame: pd.DataFrame) -> None:
        frame["Balance"] = frame["Balance"].astype(object)
        frame.loc[17, "Balance"] = "lots"

    message = broken(mutate)
    assert (
        "column 'Balance': not a number" in message and "row 17" in message and "'lots'" in message
    )


def test_range_category_and_blank_rules_are_each_reported() -> None:
    def mutate(frame: pd.DataFrame) -> None:
        frame.loc[3, "Age"] = 250
        frame.loc[4, "Geography"] = "Mars"
        frame.loc[5, "CreditScore"] = np.nan

    message = broken(mutate)
    assert "column 'Age': above the maximum 100" in message
    assert "column 'Geography': not one of the allowed values" in message and "'Mars'" in message
    assert "column 'CreditScore': blank value where one is required" in message
    assert "3 problem(s)" in message


def test_single_class_and_non_binary_targets_fail() -> None:
    assert "single class [0]" in broken(lambda f: f.__setitem__("Exited", 0))
    assert "target is not 0 or 1" in broken(lambda f: f.loc.__setitem__((0, "Exited"), 2))


def test_too_few_rows_fail() -> None:
    spec = PROJECTS["telecom"]
    with pytest.raises(DataValidationError, match="only 50 rows; at least 100"):
        validate(spec, spec.make_synthetic(50, 1), "train")


def test_unlabelled_batch_is_checked_without_target() -> None:
    spec = PROJECTS["telecom"]
    current = spec.make_synthetic(30, 1).drop(columns=["is_ultra"])
    assert validate(spec, current, "current", with_target=False).rows == 30


@pytest.mark.parametrize(
    ("column", "values", "rule"),
    [
        ("minutes", [1.0, -5.0], "below the minimum 0"),
        ("minutes", [1.0, float("inf")], "not a finite number"),
        ("calls", [3.0, True], "not a number"),
    ],
)
def test_column_rules_give_row_positions(column: str, values: list, rule: str) -> None:
    spec = PROJECTS["telecom"]
    (violation,) = column_violations(spec.column(column), pd.Series(values, dtype=object))
    assert violation.rule.startswith(rule) and violation.rows == (1,)


def test_dates_and_free_text_are_checked() -> None:
    spec = PROJECTS["carvision"]
    (bad_date,) = column_violations(
        spec.column("date_posted"), pd.Series(["2018-06-23", "yesterday"])
    )
    assert bad_date.rows == (1,) and "ISO date" in bad_date.rule
    (bad_model,) = column_violations(spec.column("model"), pd.Series(["ford f-150", "  "]))
    assert bad_model.rows == (1,)
