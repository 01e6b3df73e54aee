"""SHAP explanations of a fitted project model, one method per model for every caller.

Contributions are always per raw input field (the fields a request carries), in the model's
output unit (probability of the positive class, or the price), and with the base value they add
up exactly to the output. The explain step's report, the server's `:explain` and batch scoring's
reasons all get their explainer from `explainer_for`, so a model has one explanation.

Two methods, chosen by the model:
- `TreeInputExplainer`, for tree ensembles (scikit-learn forests and histogram boosting without
  native categorical splits, CatBoost) and linear models: exact SHAP of the estimator in its own
  input space (path-dependent tree SHAP, or linear SHAP), each engineered column's contribution
  summed onto the raw fields it is built from, then scaled from the estimator's margin to the
  output unit. Microseconds to a few milliseconds per row.
- `RawInputExplainer`, for everything else: permutation SHAP on the raw inputs against the whole
  model. Tenths of a second per row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shap
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from components.core.contracts import ExplanationSummary
from components.core.lineage import Provenance
from components.core.spec import ProjectSpec
from components.core.train import BACKGROUND_ROWS, background_sample

logger = logging.getLogger(__name__)

ADDITIVITY_TOLERANCE = 1e-6
"""How far base value plus contributions may be from the model's output, relative to the
output's scale, before the fast method is refused for a model."""


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

    def summary(self, input_importance: dict[str, float], unit: str) -> ExplanationSummary:
        return ExplanationSummary(
            method=self.method,
            base_value=self.base_value,
            importance={str(k): float(v) for k, v in self.importance().items()},
            input_importance=input_importance,
            unit=unit,
            rows=len(self.contributions),
        )


class RawInputExplainer:
    """Permutation SHAP over the raw input columns; reusable across calls (the server keeps one).

    SHAP's masker works on numbers, so text columns travel as codes into a per-column vocabulary
    and are decoded before the model sees them.
    """

    method = "permutation SHAP on the raw inputs"

    def __init__(
        self,
        spec: ProjectSpec,
        model: BaseEstimator,
        background: pd.DataFrame,
        max_background: int = BACKGROUND_ROWS,
        permutations: int = 5,
        seed: int = 0,
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.permutations = permutations
        self.model = model
        self.columns = spec.input_columns
        self.numeric = {c.name for c in spec.columns if c.dtype in ("float", "int")}
        sample = background_sample(spec, background, max_background, seed)
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
        return self.spec.task.model_output(self.model, self._decode(values))

    def vocabulary_size(self) -> int:
        """Distinct text values collected so far (the server rebuilds past a limit)."""
        return sum(len(v) for v in self.vocab.values())

    def explain(self, frame: pd.DataFrame) -> Explanation:
        """Contributions per row. Each row is explained from the same seed, so a row gets the
        same answer alone (the server) as in a batch (the reports)."""
        encoded = self._encode(frame[self.columns])
        values, bases = [], []
        # SHAP draws its permutations from NumPy's global generator: seed it per row, and
        # leave it as it was for everyone else.
        state = np.random.get_state()
        try:
            for row in encoded:
                np.random.seed(self.seed)
                result = self.explainer(
                    row[np.newaxis, :],
                    max_evals=self.permutations * (2 * len(self.columns) + 1),
                    silent=True,
                )
                values.append(np.asarray(result.values, dtype=float)[0])
                bases.append(float(np.ravel(result.base_values)[0]))
        finally:
            np.random.set_state(state)
        contributions = pd.DataFrame(values, columns=self.columns, index=frame.index)
        base = float(np.mean(bases))
        return Explanation(
            contributions,
            base,
            base + contributions.sum(axis=1).to_numpy(),
            self.method,
        )


class UnsupportedModel(ValueError):
    """The fast method does not apply to this model; the message says why."""


FOREST_CLASSIFIERS = (
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "DecisionTreeClassifier",
)
"""Tree SHAP explains these in probability (their leaves hold class shares)."""
LOG_ODDS_CLASSIFIERS = ("HistGradientBoostingClassifier", "CatBoostClassifier")
TREE_REGRESSORS = (
    "RandomForestRegressor",
    "ExtraTreesRegressor",
    "DecisionTreeRegressor",
    "HistGradientBoostingRegressor",
    "CatBoostRegressor",
)
LINEAR = (LogisticRegression, LinearRegression, Ridge)


def _identity(values: np.ndarray) -> np.ndarray:
    return values


@dataclass(frozen=True)
class _Model:
    """A project model taken apart: what turns raw rows into the estimator's inputs, the
    estimator, and how its margin becomes the project's output."""

    front: list[Any]
    estimator: Any
    to_output: Callable[[np.ndarray], np.ndarray]
    output_is_margin: bool
    """The output is the margin itself (no scaling needed)."""


def _take_apart(spec: ProjectSpec, model: Any) -> _Model:
    from sklearn.model_selection import FixedThresholdClassifier

    inner = model.estimator_ if isinstance(model, FixedThresholdClassifier) else model
    if not isinstance(inner, Pipeline):
        raise UnsupportedModel(f"{type(inner).__name__} is not a fitted pipeline")
    # Samplers (SMOTE) act at fit time only and have no transform.
    front = [step for _, step in inner.steps[:-1] if hasattr(step, "transform")]
    last = inner.steps[-1][1]
    calibrator = None
    if isinstance(last, CalibratedClassifierCV):
        if len(last.calibrated_classifiers_) != 1:
            raise UnsupportedModel("a calibrated ensemble of several fold models")
        fitted = last.calibrated_classifiers_[0]
        last, calibrator = fitted.estimator, fitted.calibrators[0]
    name = type(last).__name__
    categorical = getattr(last, "is_categorical_", None)
    if name.startswith("HistGradientBoosting") and categorical is not None and categorical.any():
        raise UnsupportedModel(
            f"{name} with native categorical splits, which tree SHAP's implementation does "
            "not follow"
        )
    if not spec.task.probabilistic:
        if name not in TREE_REGRESSORS and not isinstance(last, LINEAR):
            raise UnsupportedModel(f"no exact method for {name}")
        return _Model(front, last, _identity, True)
    if name in FOREST_CLASSIFIERS:
        margin_to_response: Callable[[np.ndarray], np.ndarray] = _identity
    elif name in LOG_ODDS_CLASSIFIERS or isinstance(last, LogisticRegression):
        # A calibrator reads decision_function where the estimator has one, else
        # predict_proba: the margin's own scale, or its sigmoid.
        has_decision = hasattr(last, "decision_function")
        margin_to_response = _identity if calibrator is not None and has_decision else expit
    else:
        raise UnsupportedModel(f"no exact method for {name}")
    if calibrator is None:
        return _Model(front, last, margin_to_response, margin_to_response is _identity)
    calibrate = calibrator.predict
    return _Model(front, last, lambda m: np.asarray(calibrate(margin_to_response(m))), False)


def _engineered(front: list[Any], frame: pd.DataFrame) -> pd.DataFrame:
    out: Any = frame
    for step in front:
        out = step.transform(out)
    if not isinstance(out, pd.DataFrame):
        raise UnsupportedModel("the preprocessing does not name its output columns")
    return out


def _probes(spec: ProjectSpec, column: str, values: pd.Series) -> list[np.ndarray]:
    """Ways to move one raw column: its values shifted across rows, and each edge of its range
    and each allowed category for the whole column (a band or category absent from the sample
    still shows which engineered columns it feeds)."""
    raw = values.to_numpy(dtype=object)
    moved = [np.roll(raw, 1), np.roll(raw, max(2, len(raw) // 3))]
    col = spec.column(column)
    for value in (col.minimum, col.maximum, *(col.categories or ())):
        if value is not None:
            moved.append(np.full(len(raw), value, dtype=object))
    return moved


def _changed(before: pd.DataFrame, after: pd.DataFrame) -> np.ndarray:
    a = before.to_numpy(dtype=float)
    b = after.to_numpy(dtype=float)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return np.asarray(~same.all(axis=0))


def _attribution(
    spec: ProjectSpec, front: list[Any], background: pd.DataFrame
) -> tuple[list[str], np.ndarray]:
    """Which raw fields each engineered column is built from, found by moving each raw field
    and watching what changes; returns the engineered names and a (engineered x raw) matrix whose
    rows share each column's contribution equally among its fields (each row sums to 1)."""
    columns = spec.input_columns
    sample = background[columns].reset_index(drop=True)
    base = _engineered(front, sample)
    names = [str(c) for c in base.columns]
    depends = np.zeros((len(names), len(columns)), dtype=bool)
    for j, column in enumerate(columns):
        for moved in _probes(spec, column, sample[column]):
            changed = sample.copy()
            changed[column] = pd.Series(moved, index=sample.index).astype(sample[column].dtype)
            depends[:, j] |= _changed(base, _engineered(front, changed))
    unsourced = [n for n, row in zip(names, depends, strict=True) if not row.any()]
    if unsourced:
        raise UnsupportedModel(f"cannot tell which raw fields {unsourced} are built from")
    return names, depends / depends.sum(axis=1, keepdims=True)


class TreeInputExplainer:
    """Exact SHAP of the estimator in its own input space, attributed to the raw fields.

    Path-dependent tree SHAP (or linear SHAP) gives each engineered column's contribution to the
    estimator's margin (log-odds, class share or price); each is shared among the raw fields the
    column is built from; and a row's contributions are scaled by one factor, (output - base) /
    (margin - base margin), so that they add up to the output in its unit. Signs and ranking
    within a row are those of the margin.
    """

    method = "tree SHAP on the model's inputs, attributed to the raw fields"

    def __init__(self, spec: ProjectSpec, model: BaseEstimator, background: pd.DataFrame) -> None:
        self.spec = spec
        self.model = model
        self.parts = _take_apart(spec, model)
        sample = background_sample(spec, background)
        self.names, self.weights = _attribution(spec, self.parts.front, sample)
        estimator = self.parts.estimator
        if isinstance(estimator, LINEAR):
            self.method = "linear SHAP on the model's inputs, attributed to the raw fields"
            engineered = _engineered(self.parts.front, sample)
            self.mean = engineered.to_numpy(dtype=float).mean(axis=0)
            self.coef = np.ravel(estimator.coef_)
            self.base_margin = float(np.ravel(estimator.intercept_)[0] + self.mean @ self.coef)
        else:
            self.tree = shap.TreeExplainer(estimator, feature_perturbation="tree_path_dependent")
            expected = np.ravel(self.tree.expected_value)
            self.base_margin = float(expected[-1])
        self.base_value = float(self.parts.to_output(np.array([self.base_margin]))[0])
        self._check(sample)

    def _margin_contributions(self, engineered: pd.DataFrame) -> np.ndarray:
        if hasattr(self, "coef"):
            return (engineered.to_numpy(dtype=float) - self.mean) * self.coef
        values = self.tree.shap_values(engineered, check_additivity=False)
        values = np.asarray(values, dtype=float)
        if values.ndim == 3:  # one slice per class: the positive class's
            values = values[:, :, -1]
        return values

    def _check(self, rows: pd.DataFrame) -> None:
        explained = self.explain(rows).output
        served = self.spec.task.model_output(self.model, rows)
        scale = np.maximum(1.0, np.abs(served))
        worst = float(np.max(np.abs(explained - served) / scale))
        if worst > ADDITIVITY_TOLERANCE:
            raise UnsupportedModel(
                f"contributions miss the model's output by up to {worst:.2e} (relative) on "
                "its training rows"
            )

    def vocabulary_size(self) -> int:
        return 0

    def explain(self, frame: pd.DataFrame) -> Explanation:
        engineered = _engineered(self.parts.front, frame[self.spec.input_columns])
        phi = self._margin_contributions(engineered)
        margin = self.base_margin + phi.sum(axis=1)
        output = self.parts.to_output(margin)
        if not self.parts.output_is_margin:
            moved = margin - self.base_margin
            steady = np.abs(moved) < 1e-9
            step = 1e-6
            slope = (
                self.parts.to_output(np.array([self.base_margin + step]))[0]
                - self.parts.to_output(np.array([self.base_margin - step]))[0]
            ) / (2 * step)
            factor = np.where(
                steady, slope, (output - self.base_value) / np.where(steady, 1, moved)
            )
            phi = phi * factor[:, np.newaxis]
        contributions = pd.DataFrame(
            phi @ self.weights, columns=self.spec.input_columns, index=frame.index
        )
        return Explanation(contributions, self.base_value, np.asarray(output), self.method)


Explainer = TreeInputExplainer | RawInputExplainer


def explainer_for(spec: ProjectSpec, model: BaseEstimator, background: pd.DataFrame) -> Explainer:
    """THE explainer of a fitted project model, for the server's :explain, the explain step's
    report and batch scoring's reasons alike (`background`: raw training rows): the exact fast
    method where the model allows it, else permutation SHAP."""
    try:
        return TreeInputExplainer(spec, model, background)
    except UnsupportedModel as why:
        logger.info("%s: permutation SHAP on the raw inputs (%s)", spec.name, why)
        return RawInputExplainer(spec, model, background)


def explain_test_rows(
    spec: ProjectSpec,
    model: BaseEstimator,
    frame: pd.DataFrame,
    background: pd.DataFrame,
    rows: int | None = None,
    seed: int = 0,
) -> Explanation:
    """The server's explainer (same background sample, same settings) on `rows` test rows
    (default: the spec's `explained_rows`)."""
    count = min(rows or spec.explained_rows, len(frame))
    sample = frame.sample(count, random_state=seed)
    return explainer_for(spec, model, background).explain(sample)


def direction(values: pd.Series, contributions: pd.Series) -> str:
    """How a numeric field's value moves its contribution (rank correlation), in words."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.nunique() < 2 or contributions.nunique() < 2:
        return ""
    rho = numeric.corr(contributions, method="spearman")
    if pd.isna(rho) or abs(rho) < 0.2:
        return "no steady direction"
    return "higher value raises it" if rho > 0 else "higher value lowers it"


def summary_html(
    spec: ProjectSpec, explanation: Explanation, inputs: pd.DataFrame, provenance: Provenance
) -> str:
    """A beeswarm of the contributions (one dot per explained row and field, coloured by the
    field's value), the table behind it, and a caption saying how to read them."""
    from components.core import report

    plt = report.pyplot()
    unit = spec.output_unit
    importance = explanation.importance()
    order = list(importance.index)
    numeric = {c.name for c in spec.columns if c.dtype in ("float", "int")}
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(order) + 1.5))
    rng = np.random.default_rng(0)
    for position, column in enumerate(reversed(order)):
        values = explanation.contributions[column].to_numpy()
        jitter = rng.uniform(-0.3, 0.3, len(values))
        if column in numeric:
            raw = pd.to_numeric(
                inputs.loc[explanation.contributions.index, column], errors="coerce"
            )
            colours = raw.rank(pct=True).fillna(0.5).to_numpy()
            ax.scatter(values, position + jitter, c=colours, cmap="coolwarm", s=10, vmin=0, vmax=1)
        else:
            ax.scatter(values, position + jitter, color="#9ca3af", s=10)
    if numeric & set(order):
        scale = plt.cm.ScalarMappable(cmap="coolwarm", norm=plt.Normalize(0, 1))
        bar = fig.colorbar(scale, ax=ax, pad=0.01, ticks=[0, 1])
        bar.ax.set_yticklabels(["low", "high"])
        bar.set_label("input value (rank)")
    ax.axvline(0, color="#374151", lw=0.8)
    ax.set_yticks(range(len(order)), list(reversed(order)))
    ax.set(
        title=f"Contribution of each input to {unit}",
        xlabel=f"contribution to {unit} (SHAP value)",
    )
    table = pd.DataFrame(
        {
            "input": order,
            f"mean |contribution| ({unit})": importance.to_numpy(),
            f"mean contribution ({unit})": explanation.contributions[order].mean().to_numpy(),
            "direction": [
                direction(
                    inputs.loc[explanation.contributions.index, c], explanation.contributions[c]
                )
                if c in numeric
                else "categorical"
                for c in order
            ],
        }
    )
    rows = len(explanation.contributions)
    caption = report.paragraph(
        f"Each dot is one of {rows:,} rows of the test split. A dot right of zero means that "
        f"input raised this row's {unit} by the amount on the axis; left of zero, lowered it. "
        "Colour is the input's value within the explained rows (blue low, red high; grey for "
        "text inputs). For every row the contributions add up to its prediction minus the "
        f"base value, {explanation.base_value:,.4f} {unit}. Method: {explanation.method}, the "
        "same explainer the server's :explain and batch scoring's reasons use."
    )
    sections = [
        ("How each input moves the prediction", report.figure_to_html(fig, "beeswarm") + caption),
        ("Values", report.table_html(table)),
    ]
    return report.page(
        f"{spec.title} ({spec.name}): what drives the model's answers", provenance, sections
    )


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
