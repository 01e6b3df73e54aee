from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def features(
    project: str,
    train: Input[Dataset],
    test: Input[Dataset],
    summary: Output[Markdown],
):
    """Fits the project's feature engineering on the training split and writes `summary`, a
    table of the engineered features (type, blanks, distinct values, mean), for a reader of the
    run in the KFP UI. No later step reads it, and the step writes no engineered data: train fits
    the same feature engineering inside the one pipeline it registers, which the predictor
    serves as it is."""
    import pandas as pd

    from components.core.features import fit_features
    from components.core.projects import get_spec

    spec = get_spec(project)
    result = fit_features(spec, pd.read_csv(train.path), pd.read_csv(test.path))
    summary.metadata["columns"] = list(result.train.columns)
    with open(summary.path, "w") as handle:
        handle.write(result.summary_markdown(spec))
