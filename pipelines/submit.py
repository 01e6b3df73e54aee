"""Submits a compiled project pipeline to a Kubeflow Pipelines endpoint with `kfp.Client`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from components.core.deploy import MODES
from components.core.projects import PROJECTS
from pipelines.compile import compiled_path, load_compiled


class ArgumentsError(ValueError):
    """An argument the compiled pipeline would not accept."""


def pipeline_parameters(project: str, kind: str = "training") -> dict[str, Any]:
    """The compiled pipeline's parameters: name -> KFP definition (type, default)."""
    spec, _ = load_compiled(project, kind)
    return spec["root"]["inputDefinitions"]["parameters"]


def checked_arguments(
    project: str, kind: str, arguments: dict[str, Any], params: str
) -> dict[str, Any]:
    """`arguments` updated with `params` (a JSON object of further parameter values), every name
    checked against the compiled pipeline before anything is sent."""
    try:
        extra = json.loads(params)
    except json.JSONDecodeError as error:
        raise ArgumentsError(
            f"--params is not JSON ({error.msg} at char {error.pos}): {params}"
        ) from error
    if not isinstance(extra, dict):
        raise ArgumentsError(f"--params must be a JSON object of parameter values, got {params}")
    arguments = {**arguments, **extra}
    known = pipeline_parameters(project, kind)
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise ArgumentsError(
            f"{project}-{kind} has no parameter {', '.join(unknown)}; "
            f"its parameters are {', '.join(sorted(known))}"
        )
    return arguments


def run_arguments(
    project: str, source: str, mlflow_tracking_uri: str, deploy_mode: str, params: str
) -> dict[str, Any]:
    """The training run's arguments, checked against the compiled pipeline."""
    arguments = {
        "source": source,
        "mlflow_tracking_uri": mlflow_tracking_uri,
        "deploy_mode": deploy_mode,
    }
    return checked_arguments(project, "training", arguments, params)


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
    parser.add_argument(
        "--deploy-mode",
        default="manifest",
        choices=MODES,
        help="'apply' has the deploy step create or patch the InferenceService",
    )
    parser.add_argument("--namespace", default=None)
    parser.add_argument("--params", default="{}", help="extra pipeline parameters as JSON")
    args = parser.parse_args(argv)
    try:
        arguments = run_arguments(
            args.project, args.source, args.mlflow_tracking_uri, args.deploy_mode, args.params
        )
    except ArgumentsError as error:
        parser.error(str(error))

    import kfp

    client = kfp.Client(host=args.host, namespace=args.namespace)
    run = client.create_run_from_pipeline_package(
        str(compiled_path(args.project)),
        arguments=arguments,
        experiment_name=args.experiment or args.project,
    )
    print(f"submitted {args.project}: run {run.run_id}")


if __name__ == "__main__":
    main()
