"""The evaluation report's figures of each task, drawn from the test split's outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, roc_curve

from components.core import report
from components.core.metrics import binary_metrics


def binary_figures(
    labels: tuple[str, str], y: np.ndarray, score: np.ndarray, threshold: float
) -> list[tuple[str, str]]:
    """The report's curves of a classifier: ROC and precision-recall, calibration and the
    threshold, the confusion matrix."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve

    plt = report.pyplot()
    negative, positive = labels
    sections = []

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    fpr, tpr, _ = roc_curve(y, score)
    axes[0].plot(fpr, tpr, color="#2563eb")
    axes[0].plot([0, 1], [0, 1], "--", color="grey", label="guessing")
    axes[0].set(
        title="ROC curve", xlabel="false positive rate", ylabel="true positive rate (recall)"
    )
    axes[0].legend(loc="lower right")
    precision, recall, _ = precision_recall_curve(y, score)
    axes[1].plot(recall, precision, color="#2563eb")
    axes[1].axhline(y.mean(), ls="--", color="grey", label=f"guessing ({y.mean():.0%} {positive})")
    flagged = score >= threshold
    at = (
        np.sum(flagged & (y == 1)) / max(y.sum(), 1),
        np.sum(flagged & (y == 1)) / max(flagged.sum(), 1),
    )
    axes[1].plot(*at, "o", color="#dc2626", label=f"threshold {threshold:.2f}")
    axes[1].set(title="Precision-recall curve", xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    axes[1].legend(loc="lower left")
    sections.append(
        (
            "ROC and precision-recall curves",
            report.figure_to_html(fig, "ROC and precision-recall curves")
            + report.paragraph(
                f"The precision-recall curve matters most when the class '{positive}' is the "
                f"rarer one: guessing scores its share of the rows ({y.mean():.0%}). The red dot "
                "is the stored decision threshold."
            ),
        )
    )

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    observed, predicted = calibration_curve(y, score, n_bins=10, strategy="quantile")
    axes[0].plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    axes[0].plot(predicted, observed, "o-", color="#2563eb", label="model")
    axes[0].set(
        title="Calibration (10 bins of equal size)",
        xlabel=f"mean predicted P({positive})",
        ylabel=f"observed share of {positive}",
    )
    axes[0].legend(loc="upper left")
    grid = np.linspace(0.01, 0.99, 99)
    curves = {
        name: [binary_metrics(y, score, t)[name] for t in grid]
        for name in ("precision", "recall", "f1")
    }
    for name, values in curves.items():
        axes[1].plot(grid, values, label=name)
    axes[1].axvline(threshold, color="#dc2626", ls="--", label=f"stored threshold {threshold:.2f}")
    axes[1].set(title="Figures against the threshold", xlabel="threshold", ylim=(0, 1.02))
    axes[1].legend(loc="best")
    sections.append(
        (
            "Calibration and threshold",
            report.figure_to_html(fig, "Calibration and threshold")
            + report.paragraph(
                "Left: where the dots sit on the diagonal, a predicted probability can be read "
                f"as the share of {positive} among similar rows. Right: precision, recall and F1 "
                "if the label were drawn at another threshold; the dashed line is the one the "
                "served model applies."
            ),
        )
    )

    cm = confusion_matrix(y, flagged.astype(int), labels=[0, 1])
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(share):
        ax.text(
            j,
            i,
            f"{value:.0%}\n({cm[i, j]:,})",
            ha="center",
            va="center",
            color="white" if value > 0.5 else "#111827",
            fontsize=12,
        )
    ax.set(
        title="Confusion matrix (share of each actual class)",
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=[negative, positive],
        yticklabels=[negative, positive],
        xlabel="predicted",
        ylabel="actual",
    )
    sections.append(
        (
            "Confusion matrix",
            report.figure_to_html(fig, "Confusion matrix")
            + report.paragraph(
                f"Each row is an actual class and adds up to 100%; counts in brackets. Threshold "
                f"{threshold:.2f}."
            ),
        )
    )
    return sections


def regression_figures(
    target: str, unit: str, y: np.ndarray, score: np.ndarray
) -> list[tuple[str, str]]:
    """The report's figures of a regression: predictions against actuals, residuals, and the
    error by band of the target."""
    plt = report.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    axes[0].scatter(y, score, s=3, alpha=0.3)
    top = float(max(y.max(), score.max()))
    axes[0].plot([0, top], [0, top], "--", color="grey")
    axes[0].set(
        title="Predicted against actual", xlabel=f"actual ({unit})", ylabel=f"predicted ({unit})"
    )
    axes[1].hist(score - y, bins=60, color="#2563eb")
    axes[1].set(title="Residuals", xlabel=f"predicted - actual ({unit})", ylabel="rows")
    bands = pd.qcut(pd.Series(y), 5, duplicates="drop")
    error = pd.Series(np.abs(score - y) / np.maximum(np.abs(y), 1e-9))
    by_band = error.groupby(bands, observed=True).median()
    fig2, ax = plt.subplots(figsize=(11, 3.6))
    labels = [f"{band.left:,.0f} to {band.right:,.0f}" for band in by_band.index]
    ax.bar(labels, by_band.to_numpy(), color="#2563eb")
    ax.set(
        title=f"Median absolute percentage error by actual {target} (fifths of the test rows)",
        xlabel=unit,
        ylabel="median |error| / actual",
    )
    return [
        (
            "Predictions and residuals",
            report.figure_to_html(fig, "Predicted against actual")
            + report.paragraph(
                "Left: each dot is one test row; on the dashed line the estimate equals the "
                f"actual value. Right: how far estimates miss, in {unit}."
            ),
        ),
        (
            f"Error by {target} band",
            report.figure_to_html(fig2, "Error by band")
            + report.paragraph(
                f"Relative errors by fifths of the actual value ({unit}): where the estimate is "
                "least to be trusted."
            ),
        ),
    ]
