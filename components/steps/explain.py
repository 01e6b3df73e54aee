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
    importance: Output[Metrics],
    report: Output[HTML],
    explanation: Output[Artifact],
):
    """SHAP global importance of the fitted pipeline, named by the columns it was engineered from,
    and each raw input column's permutation importance on the test split."""
    from pathlib import Path

    import joblib
    import pandas as pd

    from components.core import explain as logic
    from components.core.projects import get_spec
    from components.core.step_io import synthetic_notice, write_metrics

    spec = get_spec(project)
    fitted = joblib.load(model.path)
    held_out = pd.read_csv(test.path)
    result = logic.explain_global(spec, fitted, held_out, pd.read_csv(train.path))
    summary = result.summary(logic.input_importance(spec, fitted, held_out))
    write_metrics(importance, summary.importance, prefix="shap_")
    notice = synthetic_notice(source_info.path)
    Path(report.path).write_text(logic.summary_html(spec, result, notice))
    summary.write(explanation.path)
