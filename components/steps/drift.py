from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def drift(
    project: str,
    current: Input[Dataset],
    source_info: Input[Artifact],
    run_name: str,
    mlflow_tracking_uri: str,
    report: Output[HTML],
    scores: Output[Metrics],
    summary: Output[Artifact],
) -> NamedTuple(  # type: ignore[valid-type]
    "DriftOutputs", [("drift_detected", bool), ("drift_share", float)]
):
    """Evidently data drift of `current` (this run's training split) against the champion's
    reference (the sample of its training data registered with it), weighed by each column's
    importance to the champion. `drift_detected` and `drift_share` repeat the summary's verdict
    as parameters, for the KFP UI's run view and for a condition in a pipeline built on this
    one; nothing in the project's pipelines reads them."""
    from collections import namedtuple
    from dataclasses import replace

    import mlflow
    import pandas as pd

    from components.core.drift import against_champion, report_html
    from components.core.projects import get_spec
    from components.core.registry import tracking_uri
    from components.core.step_io import training_provenance, write_document, write_metrics

    spec = get_spec(project)
    mlflow.set_tracking_uri(tracking_uri(mlflow_tracking_uri))
    result = against_champion(spec, pd.read_csv(current.path))
    found = result.summary
    print(found.reason)
    provenance = replace(
        training_provenance(project, source_info.path, run_name),
        model=f"none: the data is compared with {found.reference}",
    )
    write_document(report, report_html(spec, result, provenance, "this run's training split"))
    figures = {"drift_share": found.drift_share, "drifted_columns": len(found.drifted_columns)}
    write_metrics(scores, figures | {f"drift_score_{k}": v for k, v in found.column_scores.items()})
    found.write(summary.path)
    outputs = namedtuple("DriftOutputs", ["drift_detected", "drift_share"])  # type: ignore[name-match]
    return outputs(found.drift_detected, found.drift_share)
