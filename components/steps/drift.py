from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def drift(
    project: str,
    reference: Input[Dataset],
    current: Input[Dataset],
    report: Output[HTML],
    scores: Output[Metrics],
    summary: Output[Artifact],
) -> NamedTuple(  # type: ignore[valid-type]
    "DriftOutputs", [("drift_detected", bool), ("drift_share", float)]
):
    """Evidently data drift of the current batch against the training data."""
    import json
    from collections import namedtuple

    import pandas as pd

    from components.core.drift import detect
    from components.core.projects import get_spec

    spec = get_spec(project)
    result = detect(spec, pd.read_csv(reference.path), pd.read_csv(current.path))
    with open(report.path, "w") as handle:
        handle.write(result.html)
    scores.log_metric("drift_share", result.drift_share)
    scores.log_metric("drifted_columns", result.drifted_columns)
    for name, value in result.column_scores.items():
        scores.log_metric(f"drift_score_{name}", round(value, 6))
    with open(scores.path, "w") as handle:
        json.dump(scores.metadata, handle)
    with open(summary.path, "w") as handle:
        json.dump(
            {
                "drifted_columns": result.drifted_columns,
                "drift_share": result.drift_share,
                "dataset_drift": result.dataset_drift,
                "column_scores": result.column_scores,
                "column_methods": result.column_methods,
                "column_drifted": result.column_drifted,
            },
            handle,
            indent=2,
        )
    outputs = namedtuple("DriftOutputs", ["drift_detected", "drift_share"])  # type: ignore[name-match]
    return outputs(result.dataset_drift, result.drift_share)
