from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    project: str,
    model: Input[Model],
    test: Input[Dataset],
    source_info: Input[Artifact],
    gate_overrides: str,
    run_name: str,
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[HTML],
    evaluation: Output[Artifact],
):
    """Scores the test split once, with 95% bootstrap intervals, and enforces the quality gate:
    a failing model stops the run. `gate_overrides` is JSON such as {"roc_auc": 0.8}; unnamed
    gates keep the project's thresholds. For a classifier, `classification` holds the ROC curve
    and the confusion matrix for the KFP UI's viewers; a regression leaves it empty."""
    from components.core.evaluate import enforce_gates
    from components.core.projects import get_spec
    from components.core.step_io import evaluate_step, write_metadata

    done = evaluate_step(
        project, model, test, source_info, gate_overrides, run_name, metrics, report, evaluation
    )
    curves = done.curves
    if curves:
        classification.log_roc_curve(curves["fpr"], curves["tpr"], curves["thresholds"])
        classification.log_confusion_matrix(curves["labels"], curves["confusion_matrix"])
    write_metadata(classification)
    enforce_gates(get_spec(project), done.gates, done.summary.metrics)
