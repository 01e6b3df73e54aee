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
    feature engineering, preprocessing, optional SMOTE, estimator, decision threshold."""
    import json

    import joblib
    import pandas as pd

    from components.core import train as logic
    from components.core.projects import get_spec

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
    summary = logic.selection_summary(result) | {"cv_mean": result.cv_mean, "cv_std": result.cv_std}
    with open(selection.path, "w") as handle:
        json.dump(summary, handle, indent=2, default=str)
    for name, value in result.cv_mean.items():
        cv_metrics.log_metric(f"cv_mean_{name}", round(value, 6))
        cv_metrics.log_metric(f"cv_std_{name}", round(result.cv_std[name], 6))
    # Metrics write no file of their own; writing one keeps the task cacheable.
    with open(cv_metrics.path, "w") as handle:
        json.dump(cv_metrics.metadata, handle)
    print("; ".join(result.notes))
