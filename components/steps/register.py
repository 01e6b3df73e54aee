from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(
    project: str,
    model: Input[Model],
    train: Input[Dataset],
    test: Input[Dataset],
    source_info: Input[Artifact],
    selection: Input[Artifact],
    trials: Input[Dataset],
    evaluation: Input[Artifact],
    explanation: Input[Artifact],
    drift_summary: Input[Artifact],
    evaluation_report: Input[HTML],
    explanation_report: Input[HTML],
    drift_report: Input[HTML],
    run_name: str,
    kfp_run_id: str,
    seed: int,
    test_size: float,
    mlflow_tracking_uri: str,
    promotion: str,
    model_card: Output[Markdown],
    registration: Output[Artifact],
    holdout: Input[Dataset] = None,
    monitoring: Input[Artifact] = None,
    market_report: Input[HTML] = None,
) -> NamedTuple(  # type: ignore[valid-type]
    "RegisterOutputs", [("version", str), ("aliases", str), ("run_id", str)]
):
    """Logs the run (trials as child runs) and the model to MLflow; sets `challenger`, and
    `champion` when the model beats the current champion on the same test split (and, in a
    retraining, on the `holdout` of new labelled rows that `monitoring` collected), or with
    `promotion` "staged" puts it in shadow beside the champion for the rollout judge. The output
    parameters `version`, `aliases` and `run_id` (MLflow's) repeat `registration` for the KFP
    UI's run view and for pipelines built on this one; deploy reads the record. `kfp_run_id`
    tags the run and the version, so that the run's notice finds what it registered. `market_report`, when the
    project's pipeline analyses its market, is logged with the other reports."""
    from collections import namedtuple

    import joblib
    import pandas as pd

    from components.core import contracts, registry
    from components.core.lineage import file_sha256
    from components.core.projects import get_spec
    from components.core.step_io import write_document

    record = contracts.RunRecord.read(
        source=source_info.path,
        selection=selection.path,
        evaluation=evaluation.path,
        explanation=explanation.path,
        drift=drift_summary.path,
        seed=seed,
        test_size=test_size,
        run_name=run_name,
        run_id=kfp_run_id,
        model_sha256=file_sha256(model.path),
    )
    result = registry.register(
        get_spec(project),
        joblib.load(model.path),
        record,
        train_frame=pd.read_csv(train.path),
        test_frame=pd.read_csv(test.path),
        trials=pd.read_csv(trials.path),
        reports=dict(
            evaluation=evaluation_report.path,
            explanation=explanation_report.path,
            drift=drift_report.path,
            **({} if market_report is None else {"market": market_report.path}),
        ),
        uri=mlflow_tracking_uri,
        retraining=registry.Retraining.read(holdout, monitoring, train.path, test.path),
        on_card=lambda card: write_document(model_card, card, suffix=".md"),
        promotion=promotion,
    )
    result.write(registration.path)
    model_card.metadata.update({"version": result.version, "aliases": result.aliases})
    print(result.decision)
    outputs = namedtuple("RegisterOutputs", ["version", "aliases", "run_id"])  # type: ignore[name-match]
    return outputs(result.version, ",".join(result.aliases), result.run_id)
