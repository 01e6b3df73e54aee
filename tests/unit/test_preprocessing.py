import numpy as np
import pandas as pd
import pytest

from components.core.preprocessing import make_preprocessor

FRAME = pd.DataFrame(
    {
        "Tenure": [1.0, np.nan, 3.0, 5.0],
        "Geography": ["France", "Germany", "Spain", np.nan],
    }
)


def test_tree_onehot_gives_one_indicator_per_category_and_imputes_numbers() -> None:
    out = make_preprocessor("tree_onehot").fit(FRAME).transform(FRAME)
    assert list(out.columns) == [
        "Tenure",
        "Geography_France",
        "Geography_Germany",
        "Geography_Spain",
        "Geography_missing",
    ]
    assert out["Tenure"].tolist() == [1.0, 3.0, 3.0, 5.0]  # the median of the seen values
    assert out.filter(like="Geography_").sum(axis=1).tolist() == [1.0] * 4
    assert all(pd.api.types.is_numeric_dtype(t) for t in out.dtypes)


def test_tree_onehot_maps_an_unseen_category_to_no_indicator() -> None:
    fitted = make_preprocessor("tree_onehot").fit(FRAME)
    unseen = fitted.transform(pd.DataFrame({"Tenure": [2.0], "Geography": ["Italy"]}))
    assert unseen.filter(like="Geography_").to_numpy().sum() == 0


def test_tree_keeps_one_ordinal_code_per_column() -> None:
    out = make_preprocessor("tree").fit(FRAME).transform(FRAME)
    assert list(out.columns) == ["Tenure", "Geography"]
    assert sorted(out["Geography"].tolist()) == [0.0, 1.0, 2.0, 3.0]


def test_an_unknown_preprocessing_kind_is_named() -> None:
    with pytest.raises(ValueError, match="unknown preprocessing 'forest'"):
        make_preprocessor("forest")  # type: ignore[arg-type]
