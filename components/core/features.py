"""The feature step: the project's feature engineering fitted on the training split only."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sklearn.base import BaseEstimator

from components.core.spec import ProjectSpec


@dataclass
class FeatureResult:
    transformer: BaseEstimator
    train: pd.DataFrame
    test: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        frame = self.train
        return pd.DataFrame(
            {
                "feature": frame.columns,
                "dtype": [str(t) for t in frame.dtypes],
                "blanks": frame.isna().sum().to_numpy(),
                "distinct": frame.nunique().to_numpy(),
                "mean": [
                    frame[c].mean() if pd.api.types.is_numeric_dtype(frame[c]) else None
                    for c in frame.columns
                ],
            }
        )

    def summary_markdown(self, spec: ProjectSpec) -> str:
        rows = [
            f"| {r['feature']} | {r['dtype']} | {r['blanks']} | {r['distinct']} | "
            + ("" if r["mean"] is None else f"{r['mean']:,.4g}")
            + " |"
            for r in self.summary().to_dict("records")
        ]
        return (
            f"# {spec.name}: engineered features\n\nFitted on {len(self.train)} training rows; "
            f"{self.train.shape[1]} features.\n\n| feature | dtype | blanks | distinct | mean |\n|---|---|---|---|---|\n"
            + "\n".join(rows)
            + "\n"
        )


def fit_features(spec: ProjectSpec, train: pd.DataFrame, test: pd.DataFrame) -> FeatureResult:
    transformer = spec.make_features().fit(train[spec.input_columns], train[spec.target])
    engineered_train = transformer.transform(train[spec.input_columns])
    engineered_test = transformer.transform(test[spec.input_columns])
    engineered_train[spec.target] = train[spec.target].to_numpy()
    engineered_test[spec.target] = test[spec.target].to_numpy()
    return FeatureResult(transformer, engineered_train, engineered_test)
