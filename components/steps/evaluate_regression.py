from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components.image import IMAGE

# Named `evaluate` like the classifiers' step, so both pipelines have an `evaluate` task; a
# regression has no classification metrics to show.


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    project: str,
    model: Input[Model],
    test: Input[Dataset],
    source_info: Input[Artifact],
    gate_overrides: str,
    run_name: str,
    metrics: Output[Metrics],
    report: Output[HTML],
    evaluation: Output[Artifact],
):
    """Scores the test split once, with 95% bootstrap intervals, and enforces the quality gate:
    a failing model stops the run. `gate_overrides` is JSON such as {"r2": 0.8}; unnamed gates
    keep the project's thresholds."""
    import joblib
    import pandas as pd

    from components.core import evaluate as logic
    from components.core.projects import get_spec
    from components.core.step_io import training_provenance, write_document, write_metrics

    spec = get_spec(project)
    provenance = training_provenance(project, source_info.path, run_name, model.path)
    done = logic.assess(
        spec, joblib.load(model.path), pd.read_csv(test.path), provenance, gate_overrides
    )
    write_metrics(metrics, done.summary.metrics)
    write_document(report, done.html)
    done.summary.write(evaluation.path)
    print("\n".join(done.summary.gates))
    logic.enforce_gates(spec, done.gates, done.summary.metrics)
