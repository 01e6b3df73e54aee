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
    seed: int,
    test_size: float,
    mlflow_tracking_uri: str,
    model_card: Output[Markdown],
    registration: Output[Artifact],
) -> NamedTuple(  # type: ignore[valid-type]
    "RegisterOutputs", [("version", str), ("aliases", str), ("run_id", str)]
):
    """Logs the run (trials as child runs) and the model to MLflow; sets `challenger`, and
    `champion` when the model beats the current champion on the same test split."""
    from collections import namedtuple
    from pathlib import Path

    import joblib
    import pandas as pd

    from components.core import contracts, registry
    from components.core.model_card import render
    from components.core.projects import get_spec
    from components.core.step_io import file_sha256

    spec = get_spec(project)
    record = contracts.RunRecord(
        source=contracts.SourceInfo.read(source_info.path),
        selection=contracts.Selection.read(selection.path),
        evaluation=contracts.EvaluationSummary.read(evaluation.path),
        explanation=contracts.ExplanationSummary.read(explanation.path),
        drift=contracts.DriftSummary.read(drift_summary.path),
        seed=seed,
        test_size=test_size,
        run_name=run_name,
        model_sha256=file_sha256(model.path),
    )
    result = registry.register(
        spec,
        joblib.load(model.path),
        record,
        train_frame=pd.read_csv(train.path),
        test_frame=pd.read_csv(test.path),
        trials=pd.read_csv(trials.path),
        reports={
            "evaluation": evaluation_report.path,
            "explanation": explanation_report.path,
            "drift": drift_report.path,
        },
        uri=mlflow_tracking_uri,
    )
    Path(model_card.path).write_text(render(spec, record, result))
    result.write(registration.path)
    model_card.metadata.update({"version": result.version, "aliases": result.aliases})
    print(result.decision)
    outputs = namedtuple("RegisterOutputs", ["version", "aliases", "run_id"])  # type: ignore[name-match]
    return outputs(result.version, ",".join(result.aliases), result.run_id)
