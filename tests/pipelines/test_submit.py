"""Submitting to a KFP endpoint: arguments are checked against the compiled pipeline first, and a
run without an MLflow tracking URI its pods can reach is refused before anything is sent.

No KFP API server can run here: `kfp.Client` is replaced by a recorder of the one call
submission makes, and `make submit` is run against a stand-in of the KFP REST API on 127.0.0.1
that records every request it receives.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import kfp
import pytest

from pipelines import submit
from pipelines.compile import compiled_path
from tests.support.kfp_api import KfpApi
from tests.support.servers import REPO_ROOT, server_env

MLFLOW = "http://mlflow.mlops:5000"


class RecordingClient:
    calls: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, host: str, namespace: str | None = None) -> None:
        self.host, self.namespace = host, namespace

    def create_run_from_pipeline_package(self, package: str, **kwargs: Any) -> Any:
        RecordingClient.calls.append({"host": self.host, "package": package, **kwargs})
        return type("Run", (), {"run_id": "run-1"})()


@pytest.fixture(autouse=True)
def no_tracking_uri_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says which tracking URI, if any, the environment holds."""
    monkeypatch.delenv(submit.TRACKING_URI_ENV, raising=False)


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> type[RecordingClient]:
    RecordingClient.calls = []
    monkeypatch.setattr(kfp, "Client", RecordingClient)
    return RecordingClient


@pytest.fixture
def kfp_api() -> Iterator[KfpApi]:
    api = KfpApi()
    yield api
    api.close()


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`make` in the repository, with no MLflow URI nor make variable of ours from the caller's
    environment (make reads environment variables as its own)."""
    clean = server_env()
    ours = (
        "MLFLOW",
        "PARAMS",
        "SOURCE",
        "DEPLOY_MODE",
        "CRON",
        "LOG_ROOT",
        "PUSHGATEWAY",
        "PIPELINE",
    )
    for name in (submit.TRACKING_URI_ENV, *ours):
        clean.pop(name, None)
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO_ROOT,
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_run_gets_the_compiled_package_and_every_argument(
    client: type[RecordingClient], capsys: pytest.CaptureFixture[str]
) -> None:
    submit.main(
        [
            "--host=https://kfp.example.com/pipeline",
            "--project=telecom",
            "--source=https://example.com/users.csv",
            f"--mlflow-tracking-uri={MLFLOW}",
            "--deploy-mode=apply",
            '--params={"seed": 7, "deploy_namespace": "team-a"}',
        ]
    )
    [call] = client.calls
    assert call["package"] == str(compiled_path("telecom"))
    assert call["arguments"] == {
        "source": "https://example.com/users.csv",
        "mlflow_tracking_uri": MLFLOW,
        "deploy_mode": "apply",
        "seed": 7,
        "deploy_namespace": "team-a",
    }
    assert call["experiment_name"] == "telecom"
    # Caching stays as compiled: a run-wide setting would cache drift, which must see the
    # champion of the day.
    assert "enable_caching" not in call
    assert "submitted telecom: run run-1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("environment", "flag", "params", "sent"),
    [
        (MLFLOW, None, "{}", MLFLOW),
        ("http://other:5000", MLFLOW, "{}", MLFLOW),
        (None, None, json.dumps({"mlflow_tracking_uri": MLFLOW}), MLFLOW),
    ],
    ids=["from-the-environment", "the-flag-wins", "in-params"],
)
def test_the_tracking_uri_comes_from_the_flag_else_the_environment(
    client: type[RecordingClient],
    monkeypatch: pytest.MonkeyPatch,
    environment: str | None,
    flag: str | None,
    params: str,
    sent: str,
) -> None:
    if environment:
        monkeypatch.setenv(submit.TRACKING_URI_ENV, environment)
    given = [f"--mlflow-tracking-uri={flag}"] if flag else []
    submit.main(["--host=https://kfp", "--project=bankchurn", *given, f"--params={params}"])
    [call] = client.calls
    assert call["arguments"]["mlflow_tracking_uri"] == sent


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no MLflow tracking URI: give the MLflow server the pipeline's pods reach with"),
        (
            ['--params={"mlflow_tracking_uri": ""}', f"--mlflow-tracking-uri={MLFLOW}"],
            "no MLflow tracking URI",
        ),
        (
            ["--mlflow-tracking-uri=sqlite:///.state/mlflow/mlflow.db"],
            "MLflow tracking URI sqlite:///.state/mlflow/mlflow.db is a file on this machine",
        ),
        (["--mlflow-tracking-uri=/srv/mlruns"], "/srv/mlruns is a file on this machine"),
        (["--mlflow-tracking-uri=file:///srv/mlruns"], "is a file on this machine"),
        (['--params={"seeed": 7}'], "telecom-training has no parameter seeed; its parameters are"),
        (["--params={seed: 7}"], "--params is not JSON"),
        (["--params=[1, 2]"], "--params must be a JSON object"),
    ],
)
def test_bad_arguments_are_named_and_nothing_is_sent(
    client: type[RecordingClient],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    with pytest.raises(SystemExit) as stopped:
        submit.main(["--host=https://kfp", "--project=telecom", *argv])
    assert stopped.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert client.calls == []


def test_make_submit_without_an_mlflow_uri_stops_before_contacting_the_host(
    kfp_api: KfpApi,
) -> None:
    done = make("submit", f"HOST={kfp_api.url}", "PROJECT=telecom")
    assert done.returncode != 0
    error = " ".join(done.stderr.split())
    assert "no MLflow tracking URI" in error
    assert "MLFLOW=<uri>" in error and "MLFLOW_TRACKING_URI" in error
    assert kfp_api.requests == []


def test_make_submit_sends_mlflow_and_params_as_the_runs_arguments(kfp_api: KfpApi) -> None:
    """The same stand-in server receives the run once MLFLOW is given: the refusal above is not
    an unreachable host."""
    done = make(
        "submit",
        f"HOST={kfp_api.url}",
        "PROJECT=telecom",
        f"MLFLOW={MLFLOW}",
        'PARAMS={"seed": 7, "trials_per_candidate": 1}',
    )
    assert done.returncode == 0, done.stderr
    assert "submitted telecom: run run-1" in done.stdout
    run = kfp_api.sent("POST", "/apis/v2beta1/runs")
    assert run["experiment_id"] == "exp-1"
    # kfp sends the pipeline and its Kubernetes bindings together.
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "telecom-training"
    assert run["runtime_config"]["parameters"] == {
        "source": "synthetic",
        "mlflow_tracking_uri": MLFLOW,
        "deploy_mode": "manifest",
        "seed": 7,
        "trials_per_candidate": 1,
    }


def test_a_deploying_run_is_submitted_as_the_deployer_account(kfp_api: KfpApi) -> None:
    done = make(
        "submit", f"HOST={kfp_api.url}", "PROJECT=telecom", f"MLFLOW={MLFLOW}", "DEPLOY_MODE=apply"
    )
    assert done.returncode == 0, done.stderr
    run = kfp_api.sent("POST", "/apis/v2beta1/runs")
    assert run["service_account"] == "mlops-deployer"
    assert run["runtime_config"]["parameters"]["deploy_mode"] == "apply"


def test_make_submit_refuses_an_unknown_parameter_in_params(kfp_api: KfpApi) -> None:
    done = make(
        "submit", f"HOST={kfp_api.url}", "PROJECT=telecom", f"MLFLOW={MLFLOW}", 'PARAMS={"sed": 7}'
    )
    assert done.returncode != 0
    assert "telecom-training has no parameter sed" in done.stderr
    assert kfp_api.requests == []


def test_every_parameter_the_submitter_sets_exists_in_each_compiled_pipeline() -> None:
    for project in ("bankchurn", "carvision", "telecom"):
        arguments = submit.run_arguments(project, "synthetic", MLFLOW, "manifest", "{}")
        assert set(arguments) <= set(submit.pipeline_parameters(project))


def test_make_submit_sends_the_batch_scoring_pipeline_with_its_file(kfp_api: KfpApi) -> None:
    done = make(
        "submit",
        f"HOST={kfp_api.url}",
        "PROJECT=bankchurn",
        "PIPELINE=batch-scoring",
        f"MLFLOW={MLFLOW}",
        "SOURCE=https://example.com/customers.parquet",
        'PARAMS={"shard_rows": 2000, "drift_gate": "stop"}',
    )
    assert done.returncode == 0, done.stderr
    assert "submitted bankchurn batch-scoring: run run-1" in done.stdout
    run = kfp_api.sent("POST", "/apis/v2beta1/runs")
    name = run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"]
    assert name == "bankchurn-batch-scoring"
    # no deploy_mode: the batch pipeline has no such parameter
    assert run["runtime_config"]["parameters"] == {
        "source": "https://example.com/customers.parquet",
        "mlflow_tracking_uri": MLFLOW,
        "shard_rows": 2000,
        "drift_gate": "stop",
    }
    assert "service_account" not in run or not run["service_account"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the batch-scoring pipeline scores a file: give SOURCE=<path or URL of a .csv"),
        (
            ["--source=s3://bucket/x.csv", "--deploy-mode=apply"],
            "--deploy-mode apply is the training pipeline's",
        ),
        (
            ["--source=/data/x.csv", '--params={"seed": 7}'],
            "telecom-batch-scoring has no parameter seed; its parameters are",
        ),
    ],
)
def test_a_batch_run_without_a_file_or_with_training_arguments_is_refused(
    client: type[RecordingClient],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    with pytest.raises(SystemExit) as stopped:
        submit.main(
            [
                "--host=https://kfp",
                "--project=telecom",
                "--pipeline=batch-scoring",
                f"--mlflow-tracking-uri={MLFLOW}",
                *argv,
            ]
        )
    assert stopped.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert client.calls == []


def test_in_a_pod_the_client_sends_kfps_projected_token(
    kfp_api: KfpApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multi-user KFP API admits a pod by its projected service-account token; with a host
    given, kfp would send none of its own accord."""
    token = tmp_path / "token"
    token.write_text("projected-token\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    submit.main([f"--host={kfp_api.url}", "--project=telecom", f"--mlflow-tracking-uri={MLFLOW}"])
    assert kfp_api.sent("POST", "/apis/v2beta1/runs")
    assert kfp_api.authorizations and set(kfp_api.authorizations) == {"Bearer projected-token"}


def test_outside_a_pod_the_client_sends_no_token(
    kfp_api: KfpApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "absent"))
    submit.main([f"--host={kfp_api.url}", "--project=telecom", f"--mlflow-tracking-uri={MLFLOW}"])
    assert kfp_api.sent("POST", "/apis/v2beta1/runs")
    assert set(kfp_api.authorizations) == {None}
