"""The first step of a retraining that monitoring called for; the training steps follow."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare_retraining(
    project: str,
    labelled: Input[Dataset],
    mlflow_tracking_uri: str,
    retrain_source: str,
    holdout_share: float,
    min_labelled_rows: int,
    train: Output[Dataset],
    test: Output[Dataset],
    holdout: Output[Dataset],
    source_info: Output[Artifact],
) -> NamedTuple("RetrainingSettings", [("seed", int), ("test_size", float)]):  # type: ignore[valid-type]
    """The champion's training data (and the seed and split it was trained with), re-read from the source its run records (or
    `retrain_source`, when it moved) and checked against the recorded hash, plus the window's
    labelled rows (`labelled`); `holdout_share` of those is held out to judge challenger and
    champion."""
    from collections import namedtuple
    from pathlib import Path

    import mlflow
    import pandas as pd

    from components.core import retraining
    from components.core.projects import get_spec
    from components.core.registry import tracking_uri

    spec = get_spec(project)
    mlflow.set_tracking_uri(tracking_uri(mlflow_tracking_uri))
    champion = retraining.champion_data(spec)
    data = retraining.prepare(
        spec,
        pd.read_parquet(labelled.path).sort_values("_order", kind="stable"),
        champion,
        source=retrain_source,
        window_label=str(labelled.metadata.get("window", labelled.uri)),
        holdout_share=holdout_share,
        min_labelled_rows=min_labelled_rows,
    )
    for artifact, frame in ((train, data.train), (test, data.test), (holdout, data.holdout)):
        Path(artifact.path).write_bytes(retraining.csv_bytes(frame))
        artifact.metadata.update({"rows": len(frame), "synthetic": data.info.synthetic})
    data.info.write(source_info.path)
    source_info.metadata.update({"sha256": data.info.sha256, "rows": data.info.rows})
    print(f"retraining {spec.name} v{champion.version}: {data.info.source}")
    settings = namedtuple("RetrainingSettings", ["seed", "test_size"])  # type: ignore[name-match]
    return settings(champion.seed, champion.test_size)
