"""SHAP explanations of a fitted project model, one method for every model and every caller.

Permutation SHAP runs on the raw input columns against the whole served model (features,
estimator, calibration): contributions are per input field a request carries, in the model's
output unit (probability of the positive class, or the price), and with the base value they add
up exactly to the output. The explain step's report and the server's `:explain` use the same
explainer with the same background, so a model has one explanation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shap
from sklearn.base import BaseEstimator

from components.core.contracts import ExplanationSummary
from components.core.lineage import Provenance
from components.core.outputs import model_output
from components.core.spec import ProjectSpec


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
        self.seed = seed
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
            "permutation SHAP on the raw inputs",
        )


def explainer_for(
    spec: ProjectSpec, model: BaseEstimator, background: pd.DataFrame
) -> RawInputExplainer:
    """THE explainer of a fitted project model, for the server's :explain, the explain step's
    report and batch scoring's reasons alike (`background`: raw training rows)."""
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
        f"average prediction, {explanation.base_value:,.4f} {unit}. Method: "
        f"{explanation.method}, the same explainer the server's :explain uses."
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
