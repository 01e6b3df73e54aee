from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def explain(
    project: str,
    model: Input[Model],
    train: Input[Dataset],
    test: Input[Dataset],
    source_info: Input[Artifact],
    run_name: str,
    rows: int,
    importance: Output[Metrics],
    report: Output[HTML],
    explanation: Output[Artifact],
):
    """SHAP contributions of each raw input to the model's output on test rows, with the
    explainer and background the server's :explain uses; and each input's permutation importance
    on the test split, which drift monitoring weighs columns by. `rows` test rows are explained
    (0: the project's default)."""
    import joblib
    import pandas as pd

    from components.core import explain as logic
    from components.core.projects import get_spec
    from components.core.step_io import training_provenance, write_document, write_metrics

    spec = get_spec(project)
    fitted = joblib.load(model.path)
    held_out = pd.read_csv(test.path)
    result = logic.explain_test_rows(spec, fitted, held_out, pd.read_csv(train.path), rows)
    summary = result.summary(logic.input_importance(spec, fitted, held_out), spec.output_unit)
    write_metrics(importance, summary.importance, prefix="shap_")
    provenance = training_provenance(project, source_info.path, run_name, model.path)
    write_document(report, logic.summary_html(spec, result, held_out, provenance))
    summary.write(explanation.path)
