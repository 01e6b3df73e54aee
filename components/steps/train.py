from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    project: str,
    train: Input[Dataset],
    seed: int,
    trials_per_candidate: int,
    time_budget_s: float,
    model: Output[Model],
    trials: Output[Dataset],
    selection: Output[Artifact],
    cv_metrics: Output[Metrics],
):
    """Searches the candidates by 5-fold CV on the training split and fits ONE pipeline:
    feature engineering, preprocessing, optional SMOTE, estimator, decision threshold.
    `cv_metrics` shows the chosen model's CV figures in the KFP UI; no later step reads it
    (register logs the same figures to MLflow from `selection`)."""
    import joblib
    import pandas as pd

    from components.core import train as logic
    from components.core.projects import get_spec
    from components.core.step_io import write_metrics

    spec = get_spec(project)
    result = logic.train(spec, pd.read_csv(train.path), seed, trials_per_candidate, time_budget_s)
    joblib.dump(result.model, model.path)
    model.metadata.update(
        {
            "framework": "scikit-learn",
            "candidate": result.best.candidate,
            "threshold": result.threshold,
        }
    )
    result.trials_frame().to_csv(trials.path, index=False)
    logic.selection_summary(result).write(selection.path)
    spreads = {f"cv_std_{name}": value for name, value in result.cv_std.items()}
    write_metrics(cv_metrics, {f"cv_mean_{k}": v for k, v in result.cv_mean.items()} | spreads)
    print("; ".join(result.notes))
