"""A base for feature engineering that keeps the inputs and may add derived columns.

The work is done on plain numpy columns (`transform_columns`): per call pandas costs about a
millisecond, which is most of a single-row prediction. `transform` wraps the same code for the
sklearn pipeline, so the pipeline and the compiled serving path engineer features with one code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

Columns = dict[str, np.ndarray]


def columns_of(X: pd.DataFrame, names: list[str]) -> Columns:
    return {name: X[name].to_numpy() for name in names}


class ColumnFeatures(TransformerMixin, BaseEstimator):
    """Feature engineering over named numpy columns; `transform` returns a DataFrame of them."""

    input_columns: ClassVar[list[str]] = []

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(
            self.transform_columns(columns_of(X, self.input_columns)), index=X.index
        )

    def transform_columns(self, columns: Mapping[str, np.ndarray]) -> Columns:
        raise NotImplementedError


class DerivedFeatures(ColumnFeatures):
    """Selects the project's input columns and, when `derived` is on, adds `derive(columns)`.

    `derived` is a searched hyperparameter, so derived columns stay only where CV prefers them.
    """

    derived_columns: ClassVar[list[str]] = []

    def __init__(self, derived: bool = True) -> None:
        self.derived = derived

    def fit(self, X: pd.DataFrame, y: object = None) -> DerivedFeatures:
        self.n_features_in_ = len(self.input_columns)
        return self

    def transform_columns(self, columns: Mapping[str, np.ndarray]) -> Columns:
        out = self.select(columns)
        if self.derived:
            out.update(self.derive(out))
        return out

    def select(self, columns: Mapping[str, np.ndarray]) -> Columns:
        return {name: np.asarray(columns[name]) for name in self.input_columns}

    def derive(self, columns: Columns) -> Columns:
        raise NotImplementedError

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(
            self.input_columns + (self.derived_columns if self.derived else []), dtype=object
        )
