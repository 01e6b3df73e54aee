"""Schedules a project's compiled monitoring pipeline as a KFP recurring run with `kfp.Client`.

The run is created with `no_catchup=True`: after a pause or an outage only the latest due run
starts, since each run already reads the last window of the inference log and a replayed hour
would check the same rows again. `--max-concurrency` defaults to 1 so that a run (which may
retrain) never overlaps the previous one.
"""

from __future__ import annotations

import argparse
from typing import Any

from components.core.monitoring import LOG_SOURCE
from components.core.projects import PROJECTS
from pipelines.compile import compiled_path
from pipelines.submit import (
    TRACKING_URI_ENV,
    ArgumentsError,
    check_tracking_uri,
    checked_arguments,
    client,
    pipeline_parameters,
    tracking_uri_argument,
)

KIND = "monitoring"
CRON_EXAMPLE = "0 0 * * * *"


def _kfp_cron(value: str) -> str:
    """`value` as KFP's 6-field cron (seconds first); a standard 5-field cron runs at second 0."""
    fields = value.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ArgumentsError(
            f"--cron needs 6 space-separated fields (second minute hour day-of-month month "
            f"day-of-week), or 5 without the seconds; got {len(fields)} in {value!r}, "
            f"e.g. {CRON_EXAMPLE!r} for hourly"
        )
    return " ".join(fields)


def schedule_arguments(
    project: str, mlflow_tracking_uri: str, pushgateway: str, log_root: str, params: str
) -> dict[str, Any]:
    """The recurring run's arguments, checked against the compiled monitoring pipeline; the MLflow
    tracking URI (`mlflow_tracking_uri`, else the environment's, unless `params` names one) must
    be set and reachable from the cluster."""
    arguments = checked_arguments(
        project,
        KIND,
        {
            "mlflow_tracking_uri": tracking_uri_argument(mlflow_tracking_uri),
            "pushgateway": pushgateway,
            "log_root": log_root,
        },
        params,
    )
    check_tracking_uri(arguments)
    # Reading the inference log without its root fails in the collect step: refuse it here
    # rather than once per scheduled run.
    source = arguments.get("source", pipeline_parameters(project, KIND)["source"]["defaultValue"])
    if source == LOG_SOURCE and not arguments["log_root"]:
        raise ArgumentsError(
            "the monitoring pipeline reads the inference log: give its root on the cluster "
            "with --log-root (e.g. s3://bucket/inference), or a CSV source in --params"
        )
    return arguments


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline"
    )
    parser.add_argument("--project", required=True, choices=sorted(PROJECTS))
    parser.add_argument(
        "--cron",
        required=True,
        help=f"KFP cron, 6 fields with seconds first, e.g. '{CRON_EXAMPLE}' for hourly; a "
        "standard 5-field cron is accepted and gets '0 ' (second 0) prepended",
    )
    parser.add_argument(
        "--experiment", default=None, help="KFP experiment (default: <project>-monitoring)"
    )
    parser.add_argument(
        "--job-name", default=None, help="recurring run's name (default: <project>-monitoring)"
    )
    parser.add_argument("--namespace", default=None, help="KFP namespace (multi-user clusters)")
    parser.add_argument(
        "--mlflow-tracking-uri",
        default="",
        help="MLflow server holding the champion, as the cluster's pods reach it "
        f"(default: ${TRACKING_URI_ENV}; one of the two is required)",
    )
    parser.add_argument(
        "--pushgateway", default="", help="Pushgateway the publish step pushes the figures to"
    )
    parser.add_argument(
        "--log-root",
        default="",
        help="the inference log's root as the cluster's pods see it, e.g. s3://bucket/inference",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=1,
        help="runs at once (default 1: a run never overlaps the previous one)",
    )
    parser.add_argument(
        "--params",
        default="{}",
        help="further pipeline parameters as a JSON object, e.g. '{\"window_hours\": 1}'",
    )
    args = parser.parse_args(argv)
    if args.max_concurrency < 1:
        parser.error(f"--max-concurrency must be at least 1, got {args.max_concurrency}")
    try:
        cron = _kfp_cron(args.cron)
        arguments = schedule_arguments(
            args.project, args.mlflow_tracking_uri, args.pushgateway, args.log_root, args.params
        )
    except ArgumentsError as error:
        parser.error(str(error))
    name = f"{args.project}-{KIND}"
    experiment_name = args.experiment or name

    kfp_client = client(args.host, args.namespace)
    # Gets the experiment when it exists, else creates it.
    experiment = kfp_client.create_experiment(experiment_name, namespace=args.namespace)
    # enable_caching is left unset: the compiled pipeline already keeps collect, check and publish
    # out of the cache, and a run-wide setting would override that.
    recurring_run = kfp_client.create_recurring_run(
        experiment_id=experiment.experiment_id,
        job_name=args.job_name or name,
        cron_expression=cron,
        max_concurrency=args.max_concurrency,
        no_catchup=True,
        params=arguments,
        pipeline_package_path=str(compiled_path(args.project, KIND)),
    )
    print(
        f"scheduled {name}: recurring run {recurring_run.recurring_run_id}, cron '{cron}', "
        f"experiment {experiment_name} ({experiment.experiment_id})"
    )


if __name__ == "__main__":
    main()
