"""The kind of model a project trains, as an object: `Binary` or `Regression`.

A task owns everything that depends on its kind: what the model outputs and how a response,
a batch file and a Prometheus metric read it; which figures measure it and which way is better;
how folds are drawn, how the final model is fitted, what the evaluation report draws; how live
quality is computed. The shared steps ask the project's task and never which kind it is, so a new
task is one class here and a new project is one spec (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from components.core import metrics as metric_functions
from components.core.outputs import risk_bands

if TYPE_CHECKING:
    from sklearn.model_selection import BaseCrossValidator

SMALL_GROUP_ROWS = 100
"""Groups with fewer rows (or, for classifiers, fewer than SMALL_GROUP_CLASS rows of a class)
are listed but not judged: their figures move too much by chance."""
SMALL_GROUP_CLASS = 20


class OutputSink(Protocol):
    """Where a server counts what it answered (serving/metrics.py)."""

    def record_classes(
        self, project: str, labels: tuple[str, str], positive: np.ndarray
    ) -> None: ...

    def record_values(self, project: str, unit: str, values: np.ndarray) -> None: ...


@dataclass(frozen=True)
class Fitted:
    """The final model of a search, and what its task adds to the chosen trial's record."""

    model: Any
    threshold: float | None
    cv_mean: dict[str, float]
    cv_std: dict[str, float]
    notes: list[str]


@dataclass(frozen=True)
class Binary:
    """A classifier of two classes whose output is P(positive class), decided at a threshold."""

    probability: str
    """Field holding P(positive class)."""
    decision: str
    """Field holding the decision at the model's threshold."""
    labels: tuple[str, str] = ("0", "1")
    """Names of the negative and positive class."""
    decision_as_label: bool = False
    """The decision as the class label (e.g. "Ultra") rather than 0/1."""
    with_risk_band: bool = False
    rank: str = ""
    """Field of a batch output holding each row's rank by probability (1: the highest, ties in
    input order); "" for none."""
    with_reasons: bool = False
    """Batch scoring explains each row with its top reasons unless told otherwise."""
    tune_threshold: bool = False
    """Choose the decision threshold that maximises F1 on out-of-fold training predictions."""
    calibrate: bool = False
    """Wrap the estimator in sigmoid calibration, fitted on out-of-fold predictions."""

    name: ClassVar[str] = "binary"
    probabilistic: ClassVar[bool] = True
    """The output is a probability (ONNX graphs without zipmap, predict_proba required)."""
    stratified: ClassVar[bool] = True
    """Splits and samples keep the class shares."""
    target_values: ClassVar[tuple[int, ...] | None] = (0, 1)
    cv_metrics: ClassVar[tuple[str, ...]] = ("roc_auc", "pr_auc", "accuracy", "f1")
    group_figures: ClassVar[tuple[str, ...]] = ("roc_auc", "precision", "recall", "f1")
    interval_figures: ClassVar[tuple[str, ...]] = (
        "roc_auc",
        "pr_auc",
        "accuracy",
        "precision",
        "recall",
        "f1",
    )
    gap_figure: ClassVar[str] = "recall"
    """The figure whose spread across groups the card and the report call out."""
    small_group_rule: ClassVar[str] = (
        f"under {SMALL_GROUP_ROWS} rows or under {SMALL_GROUP_CLASS} of a class"
    )

    # -- the output --------------------------------------------------------------------------

    @property
    def explained_field(self) -> str:
        """The field that explanations (contributions plus base value) add up to."""
        return self.probability

    def output_unit(self, target: str) -> str:
        """What a prediction and its explanation are measured in."""
        return f"P({self.labels[1]})"

    def fields(self) -> dict[str, str]:
        """The response's fields and their kinds (float, int or string), in response order."""
        kinds = {
            self.probability: "float",
            self.decision: "string" if self.decision_as_label else "int",
        }
        return kinds | ({"risk_band": "string"} if self.with_risk_band else {})

    def batch_fields(self) -> list[str]:
        """The fields a batch output adds to its rows, in order."""
        return [*self.fields(), *([self.rank] if self.rank else [])]

    def model_output(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_proba(frame))[:, 1]

    def columns(self, output: np.ndarray, threshold: float | None) -> dict[str, np.ndarray]:
        """The response's fields for the model's outputs."""
        threshold = 0.5 if threshold is None else threshold
        positive = output >= threshold
        decision = (
            np.where(positive, self.labels[1], self.labels[0]).astype(object)
            if self.decision_as_label
            else positive.astype(np.int64)
        )
        columns = {self.probability: output, self.decision: decision}
        if self.with_risk_band:
            columns["risk_band"] = risk_bands(output, threshold)
        return columns

    def record_served(
        self, sink: OutputSink, project: str, output: np.ndarray, threshold: float | None
    ) -> None:
        sink.record_classes(
            project, self.labels, output >= (0.5 if threshold is None else threshold)
        )

    @property
    def positive_label(self) -> str:
        return self.labels[1]

    @property
    def positive_decision(self) -> str | int:
        """The decision field's value for the positive class."""
        return self.labels[1] if self.decision_as_label else 1

    def positive_of(self, decided: pd.Series) -> np.ndarray:
        """Which logged decisions are the positive class (labels or 0/1, as the log holds them)."""
        if decided.dtype == object:
            return (decided.astype(str) == self.labels[1]).to_numpy()
        return decided.to_numpy(dtype=float) == 1

    def contribution_text(self, value: float) -> str:
        """A contribution to the output, in the output's unit."""
        return f"{value:+.2f}"

    def class_shares(self, predicted: np.ndarray) -> dict[str, float]:
        """Share of each class among 0/1 predictions."""
        positive = float(np.mean(np.asarray(predicted) == 1))
        return {self.labels[0]: round(1.0 - positive, 6), self.labels[1]: round(positive, 6)}

    def target_balance(self, target: pd.Series) -> dict[str, float]:
        shares = target.astype(int).value_counts(normalize=True)
        return {f"{self.labels[k]} ({k})": float(shares.get(k, 0.0)) for k in (0, 1)}

    # -- training ----------------------------------------------------------------------------

    def target(self, values: pd.Series) -> pd.Series:
        return values.astype(int)

    def folds(self, count: int, seed: int) -> BaseCrossValidator:
        from sklearn.model_selection import StratifiedKFold

        return StratifiedKFold(count, shuffle=True, random_state=seed)

    def fit(self, pipeline: Any, X: pd.DataFrame, y: pd.Series, cv: BaseCrossValidator) -> Fitted:
        """Calibrates when asked, draws the threshold from out-of-fold predictions over `cv`,
        and fits the model that applies it."""
        from sklearn.model_selection import FixedThresholdClassifier, cross_val_predict

        notes = []
        if self.calibrate:
            pipeline = calibrated(pipeline, cv)
            notes.append(
                f"probabilities calibrated (sigmoid on {cv.get_n_splits()}-fold out-of-fold "
                "predictions, inside the pipeline)"
            )
        oof = cross_val_predict(pipeline, X, y, cv=cv, method="predict_proba")[:, 1]
        threshold = best_f1_threshold(y.to_numpy(), oof) if self.tune_threshold else 0.5
        if self.tune_threshold:
            notes.append(
                f"threshold {threshold:.4f} maximises F1 on out-of-fold training predictions"
            )
        per_fold = [
            self.metrics(y.to_numpy()[idx], oof[idx], threshold) for _, idx in cv.split(X, y)
        ]
        cv_mean = {k: float(np.mean([f[k] for f in per_fold])) for k in self.interval_figures}
        cv_std = {k: float(np.std([f[k] for f in per_fold])) for k in self.interval_figures}
        model = FixedThresholdClassifier(
            pipeline, threshold=threshold, response_method="predict_proba"
        ).fit(X, y)
        return Fitted(model, threshold, cv_mean, cv_std, notes)

    def protocol(self, folds: int, threshold: float | None) -> str:
        """How the decision threshold was chosen, for the model card."""
        if threshold is None:
            return ""
        if self.tune_threshold:
            text = (
                f"; decision threshold {threshold:.4f} chosen to maximise F1 on out-of-fold "
                "training predictions"
            )
        else:
            text = f"; decision threshold {threshold:g} (fixed, not tuned)"
        if self.calibrate:
            text += f"; probabilities calibrated (sigmoid, {folds} folds)"
        return text

    # -- figures -----------------------------------------------------------------------------

    def threshold_of(self, model: Any) -> float:
        return float(getattr(model, "threshold", 0.5))

    def metrics(self, y: np.ndarray, output: np.ndarray, threshold: float) -> dict[str, float]:
        return metric_functions.binary_metrics(y, output, threshold)

    def metrics_sql(self, con: object, table: str, threshold: float) -> dict[str, float]:
        return metric_functions.binary_metrics_sql(con, table, threshold)

    def group_extra(self, y: np.ndarray) -> dict[str, float]:
        """Figures of a group beyond the task's metrics."""
        return {"positive_rate": float(y.mean())}

    def small_group(self, rows: int, figures: Mapping[str, float]) -> bool:
        if rows < SMALL_GROUP_ROWS:
            return True
        positives = rows * figures.get("positive_rate", 0.0)
        return min(positives, rows - positives) < SMALL_GROUP_CLASS

    def curves(self, y: np.ndarray, output: np.ndarray, threshold: float) -> dict[str, Any]:
        """ROC curve points and the confusion matrix, JSON-safe, for the KFP UI's viewers."""
        from sklearn.metrics import confusion_matrix, roc_curve

        fpr, tpr, thr = roc_curve(y, output)
        # The first ROC threshold is +inf, which JSON cannot carry: cap it at 1.
        thr = np.minimum(thr, 1.0)
        matrix = confusion_matrix(y, (output >= threshold).astype(int), labels=[0, 1])
        return {
            "fpr": fpr.tolist(),
            "tpr": tpr.tolist(),
            "thresholds": thr.tolist(),
            "confusion_matrix": matrix.tolist(),
            "labels": list(self.labels),
        }

    def reading_facts(
        self, y: np.ndarray, output: np.ndarray, threshold: float
    ) -> dict[str, float]:
        """The counts a business reading is written from (the fields `spec.reading` may use)."""
        flagged = output >= threshold
        found = int(np.sum(flagged & (y == 1)))
        return {
            "rows": len(y),
            "positives": int(np.sum(y == 1)),
            "flagged": int(np.sum(flagged)),
            "found": found,
            "precision": found / max(int(np.sum(flagged)), 1),
            "recall": found / max(int(np.sum(y == 1)), 1),
            "accuracy": float(np.mean(flagged == (y == 1))),
            "threshold": threshold,
        }

    def report_sections(
        self, target: str, y: np.ndarray, output: np.ndarray, threshold: float
    ) -> list[tuple[str, str]]:
        """The evaluation report's figures: curves, calibration, confusion matrix."""
        from components.core.figures import binary_figures

        return binary_figures(self.labels, y.astype(int), output, threshold)


@dataclass(frozen=True)
class Regression:
    """A model of a number (a price): its output is the prediction itself."""

    value: str
    """Field holding the prediction: a point estimate, with no interval (see docs/batch.md)."""
    unit: str = ""
    """Unit of the target (e.g. USD): the unit of its errors and explanations."""
    with_reasons: bool = False
    """Batch scoring explains each row with its top reasons unless told otherwise."""

    name: ClassVar[str] = "regression"
    probabilistic: ClassVar[bool] = False
    stratified: ClassVar[bool] = False
    target_values: ClassVar[tuple[int, ...] | None] = None
    decision: ClassVar[str] = ""
    rank: ClassVar[str] = ""
    with_risk_band: ClassVar[bool] = False
    tune_threshold: ClassVar[bool] = False
    calibrate: ClassVar[bool] = False
    positive_decision: ClassVar[None] = None
    positive_label: ClassVar[None] = None
    cv_metrics: ClassVar[tuple[str, ...]] = ("r2", "rmse", "mae")
    group_figures: ClassVar[tuple[str, ...]] = ("rmse", "mae", "mape")
    interval_figures: ClassVar[tuple[str, ...]] = ("r2", "rmse", "mae", "mape")
    gap_figure: ClassVar[str] = "mape"
    small_group_rule: ClassVar[str] = f"under {SMALL_GROUP_ROWS} rows"

    @property
    def explained_field(self) -> str:
        return self.value

    def output_unit(self, target: str) -> str:
        return self.unit or target

    def fields(self) -> dict[str, str]:
        return {self.value: "float"}

    def batch_fields(self) -> list[str]:
        return [self.value]

    def model_output(self, model: Any, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict(frame), dtype=float)

    def columns(self, output: np.ndarray, threshold: float | None) -> dict[str, np.ndarray]:
        return {self.value: output.astype(float)}

    def record_served(
        self, sink: OutputSink, project: str, output: np.ndarray, threshold: float | None
    ) -> None:
        sink.record_values(project, self.unit, output)

    def positive_of(self, decided: pd.Series) -> np.ndarray:
        raise TypeError("a regression output has no decision")

    def contribution_text(self, value: float) -> str:
        return f"{value:+,.0f}" + (f" {self.unit}" if self.unit else "")

    def class_shares(self, predicted: np.ndarray) -> None:
        return None

    def target_balance(self, target: pd.Series) -> dict[str, float]:
        return {}

    def target(self, values: pd.Series) -> pd.Series:
        return values.astype(float)

    def folds(self, count: int, seed: int) -> BaseCrossValidator:
        from sklearn.model_selection import KFold

        return KFold(count, shuffle=True, random_state=seed)

    def fit(self, pipeline: Any, X: pd.DataFrame, y: pd.Series, cv: BaseCrossValidator) -> Fitted:
        """The chosen pipeline on all the training rows; its CV figures are the trial's."""
        return Fitted(pipeline.fit(X, y), None, {}, {}, [])

    def protocol(self, folds: int, threshold: float | None) -> str:
        return ""

    def threshold_of(self, model: Any) -> float:
        return 0.5  # unused by regression figures; one signature for both tasks

    def metrics(self, y: np.ndarray, output: np.ndarray, threshold: float) -> dict[str, float]:
        return metric_functions.regression_metrics(y, output)

    def metrics_sql(self, con: object, table: str, threshold: float) -> dict[str, float]:
        return metric_functions.regression_metrics_sql(con, table)

    def group_extra(self, y: np.ndarray) -> dict[str, float]:
        return {}

    def small_group(self, rows: int, figures: Mapping[str, float]) -> bool:
        return rows < SMALL_GROUP_ROWS

    def curves(self, y: np.ndarray, output: np.ndarray, threshold: float) -> dict[str, Any]:
        return {}

    def reading_facts(
        self, y: np.ndarray, output: np.ndarray, threshold: float
    ) -> dict[str, float]:
        error = np.abs(output - y)
        share = error / np.maximum(np.abs(y), 1e-9)
        return {
            "rows": len(y),
            "median_abs_error": float(np.median(error)),
            "p90_abs_error": float(np.quantile(error, 0.9)),
            "within_10pct": float(np.mean(share <= 0.10)),
            "within_20pct": float(np.mean(share <= 0.20)),
            "mape": float(np.mean(share)),
        }

    def report_sections(
        self, target: str, y: np.ndarray, output: np.ndarray, threshold: float
    ) -> list[tuple[str, str]]:
        """The evaluation report's figures: predictions, residuals, error by band."""
        from components.core.figures import regression_figures

        return regression_figures(target, self.output_unit(target), y, output)


Task = Binary | Regression


def calibrated(pipeline: Any, cv: BaseCrossValidator) -> Any:
    """The same pipeline with its estimator wrapped in sigmoid calibration (ranking unchanged).

    The sigmoid is fitted on out-of-fold predictions and the estimator refitted on all the rows
    (`ensemble=False`), rather than averaging fold models that each saw part of them: on the
    telecom training folds that scored higher in CV on accuracy, ROC-AUC and log loss alike.
    """
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV

    out = clone(pipeline)
    estimator = out.steps[-1][1]
    out.steps[-1] = (
        "model",
        CalibratedClassifierCV(estimator, method="sigmoid", cv=cv, ensemble=False),
    )
    return out


def best_f1_threshold(y: np.ndarray, proba: np.ndarray) -> float:
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y, proba)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def cv_scoring(task: Task) -> dict[str, str]:
    """Metric name -> scikit-learn scorer, for `cross_validate`."""
    return {name: str(metric_functions.metric(name).scorer) for name in task.cv_metrics}


def fields_of(task: Task, columns: Sequence[str]) -> list[str]:
    """`columns` in order, with the task's rank moved after its decision (and risk band)."""
    found = [c for c in columns if not (task.rank and c == task.rank)]
    if task.rank:
        after = found.index("risk_band" if task.with_risk_band else task.decision)
        found.insert(after + 1, task.rank)
    return found
