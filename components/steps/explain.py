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
    """SHAP global importance of the fitted pipeline, named by the columns it was engineered from."""
    import json

    import joblib
    import pandas as pd

    from components.core import explain as logic
    from components.core.projects import get_spec

    spec = get_spec(project)
    fitted = joblib.load(model.path)
    result = logic.explain_global(spec, fitted, pd.read_csv(test.path), pd.read_csv(train.path))
    ranked = result.importance()
    for name, value in ranked.items():
        importance.log_metric(f"shap_{name}", round(float(value), 6))
    with open(importance.path, "w") as handle:
        json.dump(importance.metadata, handle)
    with open(source_info.path) as handle:
        notice = json.load(handle).get("notice", "")
    with open(report.path, "w") as handle:
        handle.write(logic.summary_html(spec, result, notice))
    with open(explanation.path, "w") as handle:
        json.dump(
            {
                "method": result.method,
                "base_value": result.base_value,
                "importance": ranked.to_dict(),
            },
            handle,
            indent=2,
        )
