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
    from components.core.evaluate import enforce_gates
    from components.core.projects import get_spec
    from components.core.step_io import evaluate_step

    done = evaluate_step(
        project, model, test, source_info, gate_overrides, run_name, metrics, report, evaluation
    )
    enforce_gates(get_spec(project), done.gates, done.summary.metrics)
