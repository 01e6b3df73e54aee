"""Scheduling the monitoring pipeline on a KFP endpoint: the cron and every argument, the MLflow
tracking URI included, are checked before anything is sent.

No KFP API server can run here: `kfp.Client` is replaced by a recorder of the calls scheduling
makes, and `make schedule` is run against the stand-in KFP REST API of the submission tests.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, ClassVar

import kfp
import pytest

from pipelines import schedule
from pipelines.compile import compiled_path
from tests.pipelines.test_submit import make
from tests.support.kfp_api import KfpApi

HOST = "--host=https://kfp.example.com/pipeline"
LOG_ROOT = "--log-root=s3://mlops/inference"
MLFLOW = "http://mlflow.mlops:5000"
TRACKING = f"--mlflow-tracking-uri={MLFLOW}"
REAL_CLIENT = kfp.Client


def bound(method: Any, *args: Any, **kwargs: Any) -> None:
    """Fails as the real client would on a misspelt or missing argument."""
    inspect.signature(method).bind(None, *args, **kwargs)


class RecordingClient:
    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def __init__(self, host: str, namespace: str | None = None) -> None:
        RecordingClient.calls.append(("client", {"host": host, "namespace": namespace}))

    def create_experiment(self, name: str, **kwargs: Any) -> Any:
        bound(REAL_CLIENT.create_experiment, name, **kwargs)
        RecordingClient.calls.append(("create_experiment", {"name": name, **kwargs}))
        return SimpleNamespace(experiment_id="exp-1")

    def create_recurring_run(self, **kwargs: Any) -> Any:
        bound(REAL_CLIENT.create_recurring_run, **kwargs)
        RecordingClient.calls.append(("create_recurring_run", kwargs))
        return SimpleNamespace(recurring_run_id="rr-1")


@pytest.fixture(autouse=True)
def no_tracking_uri_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says which tracking URI, if any, the environment holds."""
    monkeypatch.delenv(schedule.TRACKING_URI_ENV, raising=False)


@pytest.fixture
def kfp_api() -> Iterator[KfpApi]:
    api = KfpApi()
    yield api
    api.close()


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> type[RecordingClient]:
    RecordingClient.calls = []
    monkeypatch.setattr(kfp, "Client", RecordingClient)
    return RecordingClient


def recurring_run(client: type[RecordingClient]) -> dict[str, Any]:
    [call] = [kwargs for name, kwargs in client.calls if name == "create_recurring_run"]
    return call


def test_a_recurring_run_gets_the_monitoring_package_the_cron_and_every_argument(
    client: type[RecordingClient], capsys: pytest.CaptureFixture[str]
) -> None:
    schedule.main(
        [
            HOST,
            "--project=telecom",
            "--cron=0 0 * * * *",
            "--namespace=team-a",
            TRACKING,
            "--pushgateway=pushgateway.monitoring:9091",
            LOG_ROOT,
            '--params={"window_hours": 1, "retrain": false}',
        ]
    )
    assert client.calls[0] == (
        "client",
        {"host": "https://kfp.example.com/pipeline", "namespace": "team-a"},
    )
    assert client.calls[1] == (
        "create_experiment",
        {"name": "telecom-monitoring", "namespace": "team-a"},
    )
    # Exactly these: no run-wide `enable_caching`, which would put collect and check back in the
    # cache.
    assert recurring_run(client) == {
        "experiment_id": "exp-1",
        "job_name": "telecom-monitoring",
        "cron_expression": "0 0 * * * *",
        "max_concurrency": 1,
        "no_catchup": True,
        "params": {
            "mlflow_tracking_uri": MLFLOW,
            "pushgateway": "pushgateway.monitoring:9091",
            "log_root": "s3://mlops/inference",
            "window_hours": 1,
            "retrain": False,
        },
        "pipeline_package_path": str(compiled_path("telecom", "monitoring")),
    }
    assert len(client.calls) == 3
    out = capsys.readouterr().out
    assert (
        "scheduled telecom-monitoring: recurring run rr-1, cron '0 0 * * * *', "
        "experiment telecom-monitoring (exp-1)"
    ) in out


def test_names_and_concurrency_can_be_chosen(client: type[RecordingClient]) -> None:
    schedule.main(
        [
            HOST,
            "--project=bankchurn",
            "--cron=0 */15 * * * *",
            LOG_ROOT,
            TRACKING,
            "--experiment=monitoring",
            "--job-name=bankchurn-quarter-hourly",
            "--max-concurrency=2",
        ]
    )
    assert ("create_experiment", {"name": "monitoring", "namespace": None}) in client.calls
    call = recurring_run(client)
    assert call["job_name"] == "bankchurn-quarter-hourly"
    assert call["max_concurrency"] == 2
    assert call["pipeline_package_path"] == str(compiled_path("bankchurn", "monitoring"))
    assert call["params"] == {
        "mlflow_tracking_uri": MLFLOW,
        "pushgateway": "",
        "log_root": "s3://mlops/inference",
    }


@pytest.mark.parametrize(
    ("cron", "sent"),
    [("0 * * * *", "0 0 * * * *"), ("30  2 * * 1-5", "0 30 2 * * 1-5")],
)
def test_a_standard_five_field_cron_runs_at_second_zero(
    client: type[RecordingClient], cron: str, sent: str
) -> None:
    schedule.main([HOST, "--project=carvision", f"--cron={cron}", LOG_ROOT, TRACKING])
    assert recurring_run(client)["cron_expression"] == sent


def test_the_help_says_how_a_five_field_cron_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        schedule.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "5-field cron is accepted and gets '0 ' (second 0) prepended" in help_text
    assert "no_catchup=True" in help_text


def test_a_csv_source_needs_no_log_root(client: type[RecordingClient]) -> None:
    schedule.main(
        [
            HOST,
            "--project=telecom",
            "--cron=0 0 * * * *",
            TRACKING,
            '--params={"source": "s3://mlops/served.csv"}',
        ]
    )
    assert recurring_run(client)["params"]["source"] == "s3://mlops/served.csv"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cron=@hourly", LOG_ROOT], "--cron needs 6 space-separated fields"),
        (["--cron=0 * * *", LOG_ROOT], "got 4 in '0 * * *', e.g. '0 0 * * * *' for hourly"),
        (["--cron=0 0 0 * * * 2030", LOG_ROOT], "got 7 in '0 0 0 * * * 2030'"),
        (
            ["--cron=0 0 * * * *", LOG_ROOT, '--params={"seeed": 7}'],
            "telecom-monitoring has no parameter seeed; its parameters are",
        ),
        (
            ["--cron=0 0 * * * *", LOG_ROOT, '--params={"test_size": 0.2}'],
            "telecom-monitoring has no parameter test_size",
        ),
        (["--cron=0 0 * * * *", LOG_ROOT, "--params={seed: 7}"], "--params is not JSON"),
        (["--cron=0 0 * * * *", LOG_ROOT, "--params=[1, 2]"], "--params must be a JSON object"),
        (["--cron=0 0 * * * *"], "reads the inference log: give its root on the cluster"),
        (
            ["--cron=0 0 * * * *", LOG_ROOT, "--mlflow-tracking-uri="],
            "no MLflow tracking URI: give the MLflow server the pipeline's pods reach with",
        ),
        (
            ["--cron=0 0 * * * *", LOG_ROOT, "--mlflow-tracking-uri=sqlite:///mlflow.db"],
            "sqlite:///mlflow.db is a file on this machine, which the pipeline's pods cannot",
        ),
        (
            ["--cron=0 0 * * * *", LOG_ROOT, "--max-concurrency=0"],
            "--max-concurrency must be at least 1, got 0",
        ),
    ],
)
def test_bad_schedules_are_named_and_nothing_is_sent(
    client: type[RecordingClient],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    given = [] if any(a.startswith("--mlflow-tracking-uri") for a in argv) else [TRACKING]
    with pytest.raises(SystemExit) as stopped:
        schedule.main([HOST, "--project=telecom", *given, *argv])
    assert stopped.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert client.calls == []


def test_the_tracking_uri_may_come_from_the_environment(
    client: type[RecordingClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(schedule.TRACKING_URI_ENV, MLFLOW)
    schedule.main([HOST, "--project=telecom", "--cron=0 0 * * * *", LOG_ROOT])
    assert recurring_run(client)["params"]["mlflow_tracking_uri"] == MLFLOW


def test_make_schedule_without_an_mlflow_uri_stops_before_contacting_the_host(
    kfp_api: KfpApi,
) -> None:
    done = make(
        "schedule",
        f"HOST={kfp_api.url}",
        "PROJECT=telecom",
        "CRON=0 * * * *",
        "LOG_ROOT=s3://mlops/inference",
    )
    assert done.returncode != 0
    error = " ".join(done.stderr.split())
    assert "no MLflow tracking URI" in error
    assert "MLFLOW=<uri>" in error and "MLFLOW_TRACKING_URI" in error
    assert kfp_api.requests == []


def test_make_schedule_sends_mlflow_and_params_as_the_recurring_runs_arguments(
    kfp_api: KfpApi,
) -> None:
    done = make(
        "schedule",
        f"HOST={kfp_api.url}",
        "PROJECT=telecom",
        "CRON=0 * * * *",
        "LOG_ROOT=s3://mlops/inference",
        f"MLFLOW={MLFLOW}",
        'PARAMS={"window_hours": 1, "retrain": false}',
    )
    assert done.returncode == 0, done.stderr
    recurring = kfp_api.sent("POST", "/apis/v2beta1/recurringruns")
    assert recurring["trigger"] == {"cron_schedule": {"cron": "0 0 * * * *"}}
    assert recurring["runtime_config"]["parameters"] == {
        "mlflow_tracking_uri": MLFLOW,
        "pushgateway": "",
        "log_root": "s3://mlops/inference",
        "window_hours": 1,
        "retrain": False,
    }


def test_every_parameter_the_scheduler_sets_exists_in_each_compiled_monitoring_pipeline() -> None:
    for project in ("bankchurn", "carvision", "telecom"):
        arguments = schedule.schedule_arguments(project, MLFLOW, "", "s3://mlops/inference", "{}")
        known = schedule.pipeline_parameters(project, "monitoring")
        assert arguments.keys() == {"mlflow_tracking_uri", "pushgateway", "log_root"}
        assert arguments.keys() <= known.keys()
        assert known["source"]["defaultValue"] == schedule.LOG_SOURCE
