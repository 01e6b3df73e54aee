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
    import hashlib
    import json
    from collections import namedtuple
    from dataclasses import asdict
    from pathlib import Path

    import joblib
    import pandas as pd

    from components.core import model_card as card
    from components.core.projects import get_spec
    from components.core.registry import register as log_and_register

    def read(artifact):
        with open(artifact.path) as handle:
            return json.load(handle)

    spec = get_spec(project)
    source, chosen, scored = read(source_info), read(selection), read(evaluation)
    explained, drifted = read(explanation), read(drift_summary)
    metrics = {f"test_{k}": v for k, v in scored["metrics"].items()}
    metrics |= {f"cv_mean_{k}": v for k, v in chosen["cv_mean"].items()}
    metrics |= {f"cv_std_{k}": v for k, v in chosen["cv_std"].items()}
    metrics |= {
        "drift_share": drifted["drift_share"],
        "drifted_columns": drifted["drifted_columns"],
    }
    params = {
        "source": source["source"],
        "source_sha256": source["sha256"],
        "rows": source["rows"],
        "seed": seed,
        "test_size": test_size,
        "candidate": chosen["candidate"],
        "threshold": chosen["threshold"],
        "trials": chosen["trials"],
        **{f"model.{k}": v for k, v in chosen["params"].items()},
    }

    def render(result):
        return card.render(
            spec,
            source=source,
            selection=chosen,
            test_metrics=scored["metrics"],
            cv_mean=chosen["cv_mean"],
            cv_std=chosen["cv_std"],
            gate_lines=scored["gates"],
            groups=scored["groups"],
            importance=explained["importance"],
            drift=drifted,
            registry=asdict(result),
            seed=seed,
            test_size=test_size,
        )

    result = log_and_register(
        spec,
        joblib.load(model.path),
        train_frame=pd.read_csv(train.path),
        test_frame=pd.read_csv(test.path),
        run_name=run_name,
        params=params,
        metrics=metrics,
        trials=pd.read_csv(trials.path),
        artifacts={
            "evaluation": evaluation_report.path,
            "explanation": explanation_report.path,
            "drift": drift_report.path,
        },
        tags={
            "kfp.run_name": run_name,
            "model_sha256": hashlib.sha256(Path(model.path).read_bytes()).hexdigest(),
            "synthetic_data": str(source["synthetic"]).lower(),
            "source": source["source"],
        },
        uri=mlflow_tracking_uri,
        card=render,
    )
    with open(model_card.path, "w") as handle:
        handle.write(render(result))
    with open(registration.path, "w") as handle:
        json.dump(asdict(result), handle, indent=2)
    model_card.metadata.update({"version": result.version, "aliases": result.aliases})
    print(result.decision)
    outputs = namedtuple("RegisterOutputs", ["version", "aliases", "run_id"])  # type: ignore[name-match]
    return outputs(result.version, ",".join(result.aliases), result.run_id)
