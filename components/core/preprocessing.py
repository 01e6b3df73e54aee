"""Preprocessing after feature engineering, chosen by the kind of estimator it feeds."""

from __future__ import annotations

import numpy as np
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from components.core.spec import Preprocessing

NUMERIC = make_column_selector(dtype_include=np.number)
CATEGORICAL = make_column_selector(dtype_exclude=np.number)
MAX_CODES = 255


def make_preprocessor(kind: Preprocessing) -> ColumnTransformer:
    """`linear`: impute, scale, one-hot. `tree`: impute, ordinal codes, for native categorical
    splits. `tree_onehot`: impute, one-hot, for trees that test one value per split (an ordinal
    code puts a category's rows between its neighbours'). Numeric throughout, so SHAP's
    TreeExplainer reads the fitted trees."""
    # Categories: blanks become their own value "missing", then one-hot or ordinal codes.
    blank_as_value = SimpleImputer(strategy="constant", fill_value="missing")
    if kind == "linear":
        numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    elif kind in ("tree", "tree_onehot"):
        numeric = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True))
    else:
        raise ValueError(
            f"unknown preprocessing {kind!r}; expected 'linear', 'tree' or 'tree_onehot'"
        )
    if kind == "tree":
        # Rare values beyond 254 share one code, so gradient boosting's native categorical
        # splits (at most 255 values) accept any column; unseen values become -1 (missing).
        encoder: OneHotEncoder | OrdinalEncoder = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, max_categories=MAX_CODES
        )
    else:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    categorical = make_pipeline(blank_as_value, encoder)
    transformer = ColumnTransformer(
        [("num", numeric, NUMERIC), ("cat", categorical, CATEGORICAL)],
        verbose_feature_names_out=False,
    )
    return transformer.set_output(transform="pandas")
