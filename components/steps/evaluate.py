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
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[HTML],
    evaluation: Output[Artifact],
):
    """Scores the test split once and enforces the quality gate: a failing model stops the run.
    `gate_overrides` is JSON such as {"roc_auc": 0.8}; unnamed gates keep the project's thresholds."""
    import json

    import joblib
    import pandas as pd

    from components.core import evaluate as logic
    from components.core.projects import get_spec

    spec = get_spec(project)
    fitted = joblib.load(model.path)
    frame = pd.read_csv(test.path)
    result, score = logic.evaluate(spec, fitted, frame)
    gates = spec.with_gate_overrides(
        {k: float(v) for k, v in json.loads(gate_overrides or "{}").items()}
    )
    passed, gate_lines = logic.check_gates(gates, result.metrics)
    with open(source_info.path) as handle:
        notice = json.load(handle).get("notice", "")
    with open(report.path, "w") as handle:
        handle.write(logic.html_report(spec, result, frame, score, gate_lines, notice))
    for name, value in result.metrics.items():
        metrics.log_metric(name, round(value, 6))
    with open(metrics.path, "w") as handle:
        json.dump(metrics.metadata, handle)
    if spec.task == "binary":
        curves = result.curves
        classification.log_roc_curve(curves["fpr"], curves["tpr"], curves["thresholds"])
        classification.log_confusion_matrix(list(spec.label_names), curves["confusion_matrix"])
    with open(classification.path, "w") as handle:
        json.dump(classification.metadata, handle)
    with open(evaluation.path, "w") as handle:
        json.dump(
            {
                "metrics": result.metrics,
                "groups": result.groups.to_dict("records"),
                "gates": gate_lines,
                "passed": passed,
            },
            handle,
            indent=2,
            default=str,
        )
    print("\n".join(gate_lines))
    logic.enforce_gates(spec, gates, result.metrics)
