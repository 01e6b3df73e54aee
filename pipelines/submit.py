"""Submits a compiled project pipeline (training, or batch scoring with `--pipeline
batch-scoring`) to a Kubeflow Pipelines endpoint with `kfp.Client`.

Every argument is checked before anything is sent: each name against the compiled pipeline, and
the MLflow tracking URI (`--mlflow-tracking-uri`, else `MLFLOW_TRACKING_URI`), which the run
needs and which its pods must be able to reach.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from components.core.deploy import MODES
from components.core.projects import PROJECTS
from components.core.scoring import SUFFIXES
from pipelines.compile import compiled_path, load_compiled
from pipelines.kinds import BATCH_SCORING as BATCH
from pipelines.kinds import TRAINING

SUBMITTED = (TRAINING, BATCH)
"""The kinds of pipeline `make submit` sends (monitoring runs on a schedule: `make schedule`)."""


class ArgumentsError(ValueError):
    """An argument the compiled pipeline would not accept."""


def pipeline_parameters(project: str, kind: str = TRAINING) -> dict[str, Any]:
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


TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
TRACKING_URI_EXAMPLE = "http://mlflow.mlflow.svc:5000"
LOCAL_SCHEMES = ("", "file", "sqlite")
"""Tracking URIs that name a file on the submitting machine, which no pod of the run can reach."""


def tracking_uri_argument(given: str) -> str:
    """The tracking URI to send: `given`, else the `MLFLOW_TRACKING_URI` environment variable
    ("" when neither is set; `check_tracking_uri` then refuses it)."""
    return given or os.environ.get(TRACKING_URI_ENV, "")


def check_tracking_uri(arguments: dict[str, Any]) -> None:
    """Refuses a run whose MLflow tracking URI is missing or names a file on this machine: the
    run would otherwise fail on the cluster, or register into a pod's own disk."""
    uri = str(arguments.get("mlflow_tracking_uri") or "")
    how = (
        "give the MLflow server the pipeline's pods reach with MLFLOW=<uri> (make) or "
        f"--mlflow-tracking-uri <uri>, or set {TRACKING_URI_ENV}, e.g. {TRACKING_URI_EXAMPLE}"
    )
    if not uri:
        raise ArgumentsError(f"no MLflow tracking URI: {how}")
    scheme = urlsplit(uri).scheme.lower()
    if scheme in LOCAL_SCHEMES or len(scheme) == 1:  # one letter: a Windows drive
        raise ArgumentsError(
            f"MLflow tracking URI {uri} is a file on this machine, which the pipeline's pods "
            f"cannot reach: {how}"
        )


def run_arguments(
    project: str,
    source: str,
    mlflow_tracking_uri: str,
    deploy_mode: str,
    params: str,
    kind: str = TRAINING,
) -> dict[str, Any]:
    """The run's arguments, checked against the compiled pipeline of `kind`; the MLflow tracking
    URI (`mlflow_tracking_uri`, else the environment's, unless `params` names one) must be set
    and reachable from the cluster."""
    arguments = {
        "source": source,
        "mlflow_tracking_uri": tracking_uri_argument(mlflow_tracking_uri),
    }
    if kind == TRAINING:
        arguments["deploy_mode"] = deploy_mode
    else:
        _check_batch_source(source)
        if deploy_mode != MODES[0]:
            raise ArgumentsError(
                f"--deploy-mode {deploy_mode} is the training pipeline's; the {kind} pipeline "
                "deploys nothing"
            )
    arguments = checked_arguments(project, kind, arguments, params)
    check_tracking_uri(arguments)
    return arguments


def _check_batch_source(source: str) -> None:
    """The batch scoring pipeline scores a file, read by its pods, with its format named by its
    extension: refused here rather than in the cluster's first step."""
    path = urlsplit(source).path if "://" in source else source
    if not any(path.lower().endswith(suffix) for suffix in SUFFIXES):
        raise ArgumentsError(
            f"the {BATCH} pipeline scores a file: give SOURCE=<path or URL of a "
            f"{' or '.join(SUFFIXES)} file the pipeline's pods can read>, got {source!r}"
        )


DEPLOYER_ACCOUNT = "mlops-deployer"
"""The account manifests/deployer creates: KFP sets no account per task, so a run that deploys
runs as it as a whole."""


def run_account(deploy_mode: str, explicit: str | None) -> str | None:
    """The account a run runs as: `explicit`, else the deployer's for a run that deploys, else
    KFP's default (None)."""
    if explicit:
        return explicit
    return DEPLOYER_ACCOUNT if deploy_mode == "apply" else None


def client(host: str, namespace: str | None) -> Any:
    """A `kfp.Client` of the KFP API at `host`. In a pod that has KFP's projected
    service-account token (audience `pipelines.kubeflow.org`, at `$KF_PIPELINES_SA_TOKEN_PATH`
    or KFP's default path), the client sends it: with a host given, kfp would not look for it."""
    import kfp
    from kfp.client import (
        KF_PIPELINES_SA_TOKEN_ENV,
        KF_PIPELINES_SA_TOKEN_PATH,
        ServiceAccountTokenVolumeCredentials,
    )

    token = Path(os.environ.get(KF_PIPELINES_SA_TOKEN_ENV) or KF_PIPELINES_SA_TOKEN_PATH)
    if token.is_file():
        credentials = ServiceAccountTokenVolumeCredentials(str(token))
        return kfp.Client(host=host, namespace=namespace, credentials=credentials)
    return kfp.Client(host=host, namespace=namespace)


def submit_run(
    host: str,
    namespace: str | None,
    project: str,
    kind: str,
    arguments: dict[str, Any],
    experiment: str,
    service_account: str | None,
    run_name: str | None = None,
) -> str:
    """Creates a run of the project's compiled pipeline of `kind` with `arguments` (already
    checked) in `experiment`; returns its run id."""
    named = {"run_name": run_name} if run_name else {}
    run = client(host, namespace).create_run_from_pipeline_package(
        str(compiled_path(project, kind)),
        arguments=arguments,
        experiment_name=experiment,
        service_account=service_account,
        **named,
    )
    return str(run.run_id)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline"
    )
    parser.add_argument("--project", required=True, choices=sorted(PROJECTS))
    parser.add_argument(
        "--pipeline",
        default=TRAINING,
        choices=SUBMITTED,
        help=f"which of the project's pipelines to run ({BATCH}: score a file with the champion)",
    )
    parser.add_argument(
        "--source",
        default="synthetic",
        help="path or URL the first step's pod can read (the batch pipeline: a .csv or .parquet file)",
    )
    parser.add_argument(
        "--experiment", default=None, help="KFP experiment (default: the project name)"
    )
    parser.add_argument(
        "--mlflow-tracking-uri",
        default="",
        help=f"MLflow server the drift and register steps use, as the cluster's pods reach it "
        f"(default: ${TRACKING_URI_ENV}; one of the two is required)",
    )
    parser.add_argument(
        "--deploy-mode",
        default="manifest",
        choices=MODES,
        help="'apply' has the deploy step create or patch the InferenceService",
    )
    parser.add_argument("--namespace", default=None)
    parser.add_argument(
        "--service-account",
        default=None,
        help=f"the run's Kubernetes service account (default: {DEPLOYER_ACCOUNT} with "
        "--deploy-mode apply, the only account allowed to change InferenceServices; else KFP's)",
    )
    parser.add_argument(
        "--params",
        default="{}",
        help="further pipeline parameters as a JSON object, e.g. '{\"seed\": 7}'",
    )
    args = parser.parse_args(argv)
    try:
        arguments = run_arguments(
            args.project,
            args.source,
            args.mlflow_tracking_uri,
            args.deploy_mode,
            args.params,
            args.pipeline,
        )
    except ArgumentsError as error:
        parser.error(str(error))

    run_id = submit_run(
        args.host,
        args.namespace,
        args.project,
        args.pipeline,
        arguments,
        args.experiment or args.project,
        run_account(args.deploy_mode, args.service_account),
    )
    which = "" if args.pipeline == TRAINING else f" {args.pipeline}"
    print(f"submitted {args.project}{which}: run {run_id}")


if __name__ == "__main__":
    main()
