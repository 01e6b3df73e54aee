from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def features(
    project: str,
    train: Input[Dataset],
    test: Input[Dataset],
    transformer: Output[Model],
    train_features: Output[Dataset],
    test_features: Output[Dataset],
    summary: Output[Markdown],
):
    """Fits the project's feature engineering on the training split, for inspection. Training
    refits the same transformer inside its pipeline, so the served model carries it."""
    import joblib
    import pandas as pd

    from components.core.features import fit_features
    from components.core.projects import get_spec

    spec = get_spec(project)
    result = fit_features(spec, pd.read_csv(train.path), pd.read_csv(test.path))
    joblib.dump(result.transformer, transformer.path)
    result.train.to_csv(train_features.path, index=False)
    result.test.to_csv(test_features.path, index=False)
    train_features.metadata["columns"] = list(result.train.columns)
    with open(summary.path, "w") as handle:
        handle.write(result.summary_markdown(spec))
