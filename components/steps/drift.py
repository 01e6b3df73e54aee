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
    from collections import namedtuple
    from pathlib import Path

    import pandas as pd

    from components.core.drift import detect
    from components.core.projects import get_spec
    from components.core.step_io import write_metrics

    spec = get_spec(project)
    result = detect(spec, pd.read_csv(reference.path), pd.read_csv(current.path))
    found = result.summary
    Path(report.path).write_text(result.html)
    figures = {"drift_share": found.drift_share, "drifted_columns": found.drifted_columns}
    write_metrics(scores, figures | {f"drift_score_{k}": v for k, v in found.column_scores.items()})
    found.write(summary.path)
    outputs = namedtuple("DriftOutputs", ["drift_detected", "drift_share"])  # type: ignore[name-match]
    return outputs(found.dataset_drift, found.drift_share)
