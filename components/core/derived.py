"""A base for feature engineering that keeps the inputs and may add derived columns."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


class DerivedFeatures(TransformerMixin, BaseEstimator):
    """Selects the project's input columns and, when `derived` is on, adds `derive(frame)`.

    `derived` is a searched hyperparameter, so derived columns stay only where CV prefers them.
    """

    input_columns: ClassVar[list[str]] = []
    derived_columns: ClassVar[list[str]] = []

    def __init__(self, derived: bool = True) -> None:
        self.derived = derived

    def fit(self, X: pd.DataFrame, y: object = None) -> DerivedFeatures:
        self.n_features_in_ = len(self.input_columns)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        out = self.select(X)
        return self.derive(out) if self.derived else out

    def select(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[self.input_columns].copy()

    def derive(self, frame: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        return np.asarray(
            self.input_columns + (self.derived_columns if self.derived else []), dtype=object
        )
