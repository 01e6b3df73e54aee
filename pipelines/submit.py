"""Submits a compiled project pipeline to a Kubeflow Pipelines endpoint with `kfp.Client`."""

from __future__ import annotations

import argparse
import json

from components.core.projects import PROJECTS
from pipelines.compile import compiled_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline"
    )
    parser.add_argument("--project", required=True, choices=sorted(PROJECTS))
    parser.add_argument("--source", default="synthetic", help="path or URL the ingest pod can read")
    parser.add_argument(
        "--experiment", default=None, help="KFP experiment (default: the project name)"
    )
    parser.add_argument(
        "--mlflow-tracking-uri", default="", help="MLflow server the register step logs to"
    )
    parser.add_argument("--namespace", default=None)
    parser.add_argument("--params", default="{}", help="extra pipeline parameters as JSON")
    args = parser.parse_args(argv)

    import kfp

    params = {
        "source": args.source,
        "mlflow_tracking_uri": args.mlflow_tracking_uri,
        **json.loads(args.params),
    }
    client = kfp.Client(host=args.host, namespace=args.namespace)
    run = client.create_run_from_pipeline_package(
        str(compiled_path(args.project)),
        arguments=params,
        experiment_name=args.experiment or args.project,
        enable_caching=True,
    )
    print(f"submitted {args.project}: run {run.run_id}")


if __name__ == "__main__":
    main()
