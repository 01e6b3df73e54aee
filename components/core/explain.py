"""SHAP explanations of a fitted project model.

Global importance (the explain step) uses TreeExplainer in the transformed space where the final
estimator is a plain tree model, and folds one-hot columns back onto the column they came from.
Otherwise, and for per-instance explanations, a permutation explainer runs on the raw input
columns against the whole model, so contributions are per input field and, with the base value,
add up exactly to the model output (probability of the positive class, or the price).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shap
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from components.core.contracts import ExplanationSummary
from components.core.outputs import model_output
from components.core.spec import ProjectSpec
from components.core.train import final_pipeline

TREE_MODELS = (
    RandomForestClassifier,
    RandomForestRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)


@dataclass
class Explanation:
    contributions: pd.DataFrame
    """One row per explained instance, one column per feature."""
    base_value: float
    output: np.ndarray
    """What the contributions explain: P(positive) for classifiers, the prediction for regression."""
    method: str

    def importance(self) -> pd.Series:
        return self.contributions.abs().mean().sort_values(ascending=False)

    def summary(self, input_importance: dict[str, float]) -> ExplanationSummary:
        return ExplanationSummary(
            method=self.method,
            base_value=self.base_value,
            importance={str(k): float(v) for k, v in self.importance().items()},
            input_importance=input_importance,
        )


class RawInputExplainer:
    """Permutation SHAP over the raw input columns; reusable across calls (the server keeps one).

    SHAP's masker works on numbers, so text columns travel as codes into a per-column vocabulary
    and are decoded before the model sees them.
    """

    def __init__(
        self,
        spec: ProjectSpec,
        model: BaseEstimator,
        background: pd.DataFrame,
        max_background: int = 50,
        permutations: int = 5,
        seed: int = 0,
    ) -> None:
        self.spec = spec
        self.permutations = permutations
        self.model = model
        self.columns = spec.input_columns
        self.numeric = {c.name for c in spec.columns if c.dtype in ("float", "int")}
        sample = background[self.columns]
        if len(sample) > max_background:
            sample = sample.sample(max_background, random_state=seed)
        self.vocab: dict[str, list[object]] = {c: [] for c in self.columns if c not in self.numeric}
        self.codes: dict[str, dict[object, int]] = {c: {} for c in self.vocab}
        masker = shap.maskers.Independent(self._encode(sample), max_samples=max_background)
        self.explainer = shap.PermutationExplainer(self._predict, masker, seed=seed)

    def _encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.columns)), dtype=float)
        for j, col in enumerate(self.columns):
            if col in self.numeric:
                out[:, j] = pd.to_numeric(frame[col]).to_numpy(dtype=float)
                continue
            codes = self.codes[col]
            for value in frame[col]:
                if value not in codes:
                    codes[value] = len(self.vocab[col])
                    self.vocab[col].append(value)
            out[:, j] = [codes[v] for v in frame[col]]
        return out

    def _decode(self, values: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(values, columns=self.columns)
        for col, vocab in self.vocab.items():
            frame[col] = np.asarray(vocab, dtype=object)[frame[col].to_numpy(dtype=int)]
        return frame

    def _predict(self, values: np.ndarray) -> np.ndarray:
        return model_output(self.spec, self.model, self._decode(values))

    def explain(self, frame: pd.DataFrame) -> Explanation:
        result = self.explainer(
            self._encode(frame[self.columns]),
            max_evals=self.permutations * (2 * len(self.columns) + 1),
            silent=True,
        )
        contributions = pd.DataFrame(
            np.asarray(result.values, dtype=float), columns=self.columns, index=frame.index
        )
        base = float(np.mean(result.base_values))
        return Explanation(
            contributions,
            base,
            base + contributions.sum(axis=1).to_numpy(),
            "permutation (raw inputs)",
        )


def source_column(name: str, sources: list[str]) -> str:
    """The engineered column a transformed feature comes from (`Geography_France` -> `Geography`)."""
    if name in sources:
        return name
    matches = [s for s in sources if name.startswith(s + "_")]
    return max(matches, key=len) if matches else name


def _tree_models(estimator: BaseEstimator) -> list[BaseEstimator] | None:
    """The tree models to explain: the estimator itself, or the fitted trees inside a calibrated
    classifier (one per fold where it keeps an ensemble of folds)."""
    inner = (
        [fold.estimator for fold in estimator.calibrated_classifiers_]
        if isinstance(estimator, CalibratedClassifierCV)
        else [estimator]
    )
    if all(is_tree_model(e) and not has_categorical_splits(e) for e in inner):
        return inner
    return None


def is_tree_model(estimator: BaseEstimator) -> bool:
    return isinstance(estimator, TREE_MODELS) or type(estimator).__module__.startswith("catboost")


def has_categorical_splits(estimator: BaseEstimator) -> bool:
    """SHAP's tree walker reads every split as a threshold and would misread categorical ones."""
    flags = getattr(estimator, "is_categorical_", None)
    return flags is not None and bool(np.any(flags))


def tree_explanation(
    spec: ProjectSpec, model: BaseEstimator, frame: pd.DataFrame
) -> Explanation | None:
    """TreeExplainer in the transformed space, or None where it does not apply. For a calibrated
    model the trees are explained before the calibration map (averaged over folds if it keeps them)."""
    pipeline = final_pipeline(model)
    trees = _tree_models(pipeline.steps[-1][1])
    if trees is None:
        return None
    transformed = frame[spec.input_columns]
    for _, step in pipeline.steps[:-1]:
        if hasattr(step, "transform"):  # samplers such as SMOTE only act while fitting
            transformed = step.transform(transformed)
    if not all(pd.api.types.is_numeric_dtype(t) for t in transformed.dtypes):
        return None  # SHAP's tree walker reads numbers only
    all_values, all_bases = [], []
    try:
        for tree in trees:
            explainer = shap.TreeExplainer(tree)
            values = np.asarray(
                explainer.shap_values(transformed.to_numpy(dtype=float), check_additivity=False)
            )
            base = np.asarray(explainer.expected_value, dtype=float).ravel()
            if values.ndim == 3:  # one slice per class: keep the positive class
                values, base = values[..., 1], base[1:]
            all_values.append(values)
            all_bases.append(float(base[-1]))
    except (shap.utils._exceptions.InvalidModelError, ValueError, TypeError):
        return None
    sources = list(pipeline.steps[0][1].get_feature_names_out())
    columns = [source_column(str(n), sources) for n in transformed.columns]
    contributions = (
        pd.DataFrame(np.mean(all_values, axis=0), columns=columns, index=frame.index)
        .T.groupby(level=0, sort=False)
        .sum()
        .T
    )
    base_value = float(np.mean(all_bases))
    method = "tree (transformed space, margin)"
    if isinstance(pipeline.steps[-1][1], CalibratedClassifierCV):
        folds = f"mean of {len(trees)} calibration folds, " if len(trees) > 1 else ""
        method = f"tree (transformed space, {folds}before calibration)"
    return Explanation(
        contributions, base_value, base_value + contributions.sum(axis=1).to_numpy(), method
    )


def explain_global(
    spec: ProjectSpec,
    model: BaseEstimator,
    frame: pd.DataFrame,
    background: pd.DataFrame,
    rows: int = 500,
    seed: int = 0,
) -> Explanation:
    """Tree SHAP on `rows` test rows, or, where it does not apply, permutation SHAP on fewer rows
    (it costs a few thousand model calls per row)."""
    sample = frame.sample(min(rows, len(frame)), random_state=seed)
    tree = tree_explanation(spec, model, sample)
    if tree is not None:
        return tree
    explainer = RawInputExplainer(
        spec, model, background, max_background=25, permutations=2, seed=seed
    )
    return explainer.explain(sample.head(50))


def summary_html(spec: ProjectSpec, explanation: Explanation, notice: str = "") -> str:
    from components.core import report

    plt = report.pyplot()

    importance = explanation.importance()
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(importance) + 1))
    ax.barh(importance.index[::-1], importance.to_numpy()[::-1])
    ax.set(title=f"Mean |SHAP| ({explanation.method})", xlabel="mean absolute contribution")
    table = pd.DataFrame({"feature": importance.index, "mean_abs_shap": importance.to_numpy()})
    sections = [
        ("Global importance", report.figure_to_html(fig)),
        ("Values", report.table_html(table)),
    ]
    return report.page(f"{spec.title}: SHAP explanation", sections, notice)


def input_importance(
    spec: ProjectSpec,
    model: BaseEstimator,
    frame: pd.DataFrame,
    rows: int = 2000,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Each raw input column's importance: how much the primary metric worsens when the column's
    values are shuffled (permutation importance on held-out rows), floored at 0, largest first.

    It answers what monitoring asks ("does this input matter to the served model?") in the
    columns a request carries, whatever the model engineers from them."""
    from sklearn.inspection import permutation_importance

    from components.core.train import split_xy

    sample = frame.sample(min(rows, len(frame)), random_state=seed)
    X, y = split_xy(spec, sample)
    scorer = spec.primary.scorer
    if scorer is None:
        raise ValueError(f"{spec.name}: primary metric {spec.primary_metric} has no scorer")
    result = permutation_importance(
        model, X, y, scoring=scorer, n_repeats=repeats, random_state=seed, n_jobs=1
    )
    values = {
        c: max(float(v), 0.0) for c, v in zip(X.columns, result.importances_mean, strict=True)
    }
    return dict(sorted(values.items(), key=lambda item: -item[1]))
