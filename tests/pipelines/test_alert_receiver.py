"""The alert receiver as a real process over HTTP: an Alertmanager payload starts one monitoring
run and its repeat is deduplicated, across a restart too; bad payloads are refused with what is
wrong and change nothing; the token is required when set; the decision log and /metrics say what
happened. In local mode a stand-in of `python -m pipelines.monitor` records what it was given (one
test starts the real monitor); in cluster mode the run goes to the KFP API stand-in."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipelines import alert_receiver
from tests.support.alert_receiver import (
    ENVIRONMENT,
    MLFLOW,
    Receiver,
    alert,
    alertmanager_payload,
    recorded,
    run_receiver,
    stand_in,
)
from tests.support.kfp_api import KfpApi
from tests.support.servers import free_port


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.process.stop()


@pytest.fixture
def local(tmp_path: Path, receivers: list[Receiver]) -> Receiver:
    """A receiver in local mode whose monitoring runs are the stand-in."""
    args, env = stand_in(tmp_path / "runs.jsonl")
    receivers.append(
        run_receiver(
            tmp_path / "state", *args, "--monitor-args=--retrain 1 --trials 2",
            env=ENVIRONMENT | env,
        )
    )  # fmt: skip
    return receivers[-1]


def test_an_alert_starts_one_monitoring_run_and_its_repeat_is_deduplicated(
    local: Receiver, tmp_path: Path, receivers: list[Receiver]
) -> None:
    first = local.post(alertmanager_payload(alert()))
    assert first.status_code == 200, first.text
    [started] = first.json()["decisions"]
    assert started["decision"] == "started"
    run = started["run"]
    assert run.startswith("telecom-") and run.endswith("Z")
    repeat = local.post(alertmanager_payload(alert()))
    [deduplicated] = repeat.json()["decisions"]
    assert (deduplicated["decision"], deduplicated["run"]) == ("deduplicated", run)

    finished = local.wait_for("run-finished")
    log_file = Path(finished["log"])
    assert finished == {
        "time": finished["time"],
        "event": "run-finished",
        "project": "telecom",
        "run": run,
        "returncode": 0,
        "log": str(tmp_path / "state" / "runs" / f"{run}.log"),
    }
    assert log_file.read_text() == "monitoring stand-in ran\n"
    # One run, given the project and --monitor-args, in the receiver's environment.
    [run_given] = recorded(tmp_path / "runs.jsonl")
    assert run_given["argv"] == ["--project", "telecom", "--retrain", "1", "--trials", "2"]
    assert run_given["env"] == ENVIRONMENT
    lines = local.log()
    assert [(line["event"], line.get("decision")) for line in lines] == [
        ("decision", "started"),
        ("decision", "deduplicated"),
        ("run-finished", None),
    ]
    assert {k: lines[0][k] for k in ("project", "alertname", "fingerprint", "status")} == {
        "project": "telecom",
        "alertname": "MLOpsPredictionShift",
        "fingerprint": "5b3c1ab8f0a0e7d2",
        "status": "firing",
    }
    assert local.counter("telecom", "started") == 1
    assert local.counter("telecom", "deduplicated") == 1
    assert local.counter("bankchurn", "started") == 0

    # A restarted receiver reads the gate back: the same alert still starts nothing.
    local.process.stop()
    again = run_receiver(
        local.state, "--command", f"{shlex.quote(sys.executable)} -c 'raise SystemExit(3)'"
    )
    receivers.append(again)
    [decision] = again.post(alertmanager_payload(alert())).json()["decisions"]
    assert (decision["decision"], decision["run"]) == ("deduplicated", run)
    [cooling] = again.post(alertmanager_payload(alert(fingerprint="other"))).json()["decisions"]
    assert cooling["decision"] == "cooling-down"
    assert len(recorded(tmp_path / "runs.jsonl")) == 1


def test_one_payload_decides_each_alert_and_ignores_those_that_call_for_no_run(
    local: Receiver,
) -> None:
    answer = local.post(
        alertmanager_payload(
            alert("MLOpsLiveQualityDrop", "bankchurn", "a1"),
            alert("MLOpsPredictionsAwayFromReference", "bankchurn", "a2"),
            alert("MLOpsDataDrift", "carvision", "a3"),
            alert("MLOpsPredictionShift", "fourth", "a4"),
            alert("MLOpsPredictionShift", "telecom", "a5", status="resolved"),
        )
    )
    assert answer.status_code == 200
    assert [d["decision"] for d in answer.json()["decisions"]] == [
        "started",
        "running",
        "ignored",
        "ignored",
        "ignored",
    ]
    assert local.counter("bankchurn", "running") == 1
    assert local.counter("unknown", "ignored") == 1
    assert local.counter("carvision", "ignored") == 1


def test_a_bad_payload_is_refused_and_changes_nothing(local: Receiver) -> None:
    assert local.post(alertmanager_payload(alert())).status_code == 200
    before = {
        name: (local.state / name).read_bytes()
        for name in (alert_receiver.DECISIONS_FILE, alert_receiver.STATE_FILE)
    }
    bad_json = local.post(b'{"version": "4", "alerts": [')
    assert bad_json.status_code == 400
    assert bad_json.json()["error"].startswith("the body is not JSON")
    no_fingerprint = alertmanager_payload(alert("MLOpsLiveQualityDrop", "bankchurn"), alert())
    del no_fingerprint["alerts"][1]["fingerprint"]
    missing = local.post(no_fingerprint)
    assert (missing.status_code, missing.json()) == (
        400,
        {"error": "alerts[1].fingerprint is missing"},
    )
    assert local.post(alertmanager_payload(alert()) | {"version": "3"}).status_code == 400
    assert httpx.get(f"{local.url}/alerts", timeout=10).status_code == 405
    assert httpx.post(f"{local.url}/other", content=b"{}", timeout=10).status_code == 404
    after = {name: (local.state / name).read_bytes() for name in before}
    assert after == before
    # The first, good alert of the refused payload started nothing either.
    assert local.counter("bankchurn", "started") == 0
    assert "400 POST /alerts: alerts[1].fingerprint is missing" in local.process.log_tail()


def test_with_a_token_only_probes_and_scrapes_go_without_it(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    receiver = run_receiver(
        tmp_path / "state",
        "--token-file", str(token_file),
        "--command", f"{shlex.quote(sys.executable)} -c pass",
    )  # fmt: skip
    receivers.append(receiver)
    body = alertmanager_payload(alert())
    for token in (None, "wrong"):
        refused = receiver.post(body, token=token)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert receiver.log() == []
    assert httpx.get(f"{receiver.url}/healthz", timeout=10).status_code == 200
    assert receiver.counter("telecom", "started") == 0
    accepted = receiver.post(body, token="s3cret-token")
    assert accepted.status_code == 200
    assert accepted.json()["decisions"][0]["decision"] == "started"
    assert "s3cret-token" not in receiver.process.log_tail()


def test_by_default_the_run_is_the_real_monitoring_command(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    """Without the tests' override the receiver starts `python -m pipelines.monitor`; `--help`
    keeps it to printing its usage."""
    receiver = run_receiver(tmp_path / "state", "--monitor-args=--help")
    receivers.append(receiver)
    [started] = receiver.post(alertmanager_payload(alert())).json()["decisions"]
    assert started["decision"] == "started"
    finished = receiver.wait_for("run-finished", timeout=120)
    assert finished["returncode"] == 0
    usage = Path(finished["log"]).read_text()
    assert "usage:" in usage and "--project" in usage
    assert "Runs a project's monitoring pipeline on this machine" in " ".join(usage.split())


# --- Cluster mode --------------------------------------------------------------------------------


@pytest.fixture
def kfp_api() -> Iterator[KfpApi]:
    api = KfpApi()
    yield api
    api.close()


def test_in_cluster_mode_an_alert_creates_one_monitoring_run_on_kfp(
    tmp_path: Path, kfp_api: KfpApi, receivers: list[Receiver]
) -> None:
    receiver = run_receiver(
        tmp_path / "state",
        "--mode", "cluster",
        "--kfp-host", kfp_api.url,
        "--mlflow-tracking-uri", MLFLOW,
        "--pushgateway", "prometheus-pushgateway.monitoring:9091",
        "--log-root", "s3://mlops/inference",
        "--params", '{"window_hours": 6, "retrain": false}',
    )  # fmt: skip
    receivers.append(receiver)
    [started] = receiver.post(alertmanager_payload(alert())).json()["decisions"]
    assert (started["decision"], started["run"]) == ("started", "run-1")
    [repeat] = receiver.post(alertmanager_payload(alert())).json()["decisions"]
    assert repeat["decision"] == "deduplicated"
    # No run is watched in cluster mode: another alert of the project meets the cool-down.
    [other] = receiver.post(alertmanager_payload(alert(fingerprint="other"))).json()["decisions"]
    assert other["decision"] == "cooling-down"

    runs = [body for method, path, body in kfp_api.requests if path == "/apis/v2beta1/runs"]
    assert len(runs) == 1
    [run] = runs
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "telecom-monitoring"
    assert run["runtime_config"]["parameters"] == {
        "mlflow_tracking_uri": MLFLOW,
        "pushgateway": "prometheus-pushgateway.monitoring:9091",
        "log_root": "s3://mlops/inference",
        "window_hours": 6,
        "retrain": False,
    }
    assert run["experiment_id"] == "exp-1"
    assert run["display_name"].startswith("telecom-monitoring ")
    assert run["display_name"].endswith("(MLOpsPredictionShift)")
    assert receiver.counter("telecom", "started") == 1


def test_in_cluster_mode_a_kfp_api_that_fails_is_answered_503_and_retried(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    """Alertmanager retries a notification answered 5xx: the failed launch counted nothing, so
    the retry starts the run once the API is back."""
    port = free_port()
    receiver = run_receiver(
        tmp_path / "state",
        "--mode", "cluster",
        "--kfp-host", f"http://127.0.0.1:{port}",
        "--mlflow-tracking-uri", MLFLOW,
        "--log-root", "s3://mlops/inference",
    )  # fmt: skip
    receivers.append(receiver)
    failed = receiver.post(alertmanager_payload(alert()))
    assert failed.status_code == 503
    [decision] = failed.json()["decisions"]
    assert decision["decision"] == "failed"
    assert decision["reason"].startswith("the run could not be started: ")
    api = KfpApi(port=port)
    try:
        retried = receiver.post(alertmanager_payload(alert()))
        assert retried.status_code == 200
        assert retried.json()["decisions"][0]["decision"] == "started"
    finally:
        api.close()
    assert receiver.counter("telecom", "failed") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mode=cluster"], "--mode cluster needs --kfp-host, the KFP API"),
        (
            ["--mode=cluster", "--kfp-host=http://kfp", "--log-root=s3://mlops/inference"],
            "no MLflow tracking URI",
        ),
        (
            ["--mode=cluster", "--kfp-host=http://kfp", f"--mlflow-tracking-uri={MLFLOW}"],
            "reads the inference log: give its root on the cluster with --log-root",
        ),
        (
            [
                "--mode=cluster",
                "--kfp-host=http://kfp",
                f"--mlflow-tracking-uri={MLFLOW}",
                "--log-root=s3://x",
                '--params={"seeed": 7}',
            ],
            "has no parameter seeed",
        ),
        (
            ["--mode=cluster", "--monitor-args=--retrain 0"],
            "--monitor-args: not for --mode cluster",
        ),
        (["--kfp-host=http://kfp"], "--kfp-host: not for --mode local"),
        (["--pushgateway=x:9091"], "locally the monitor reads MLFLOW_TRACKING_URI"),
        (["--cooldown-s=-1"], "--cooldown-s and --daily-budget must be 0 or more"),
    ],
)
def test_a_receiver_that_could_not_start_runs_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SystemExit) as stopped:
        alert_receiver.main([f"--state-dir={tmp_path}", *argv])
    assert stopped.value.code == 2
    assert message in " ".join(capsys.readouterr().err.split())
    assert not list(tmp_path.iterdir())


def test_a_staged_version_s_alert_rolls_it_back_at_once_and_its_repeat_is_ignored(
    tmp_path: Path, receivers: list[Receiver]
) -> None:
    from components.core import rollout
    from components.core.contracts import CHAMPION
    from tests.support.models import registry_with_a_canary

    uri, client = registry_with_a_canary(tmp_path, "telecom", 0.2)
    args, env = stand_in(tmp_path / "runs.jsonl")
    receiver = run_receiver(tmp_path / "state", *args,
                            env=ENVIRONMENT | env | {"MLFLOW_TRACKING_URI": uri})  # fmt: skip
    receivers.append(receiver)
    failing = alert("MLOpsStagedVersionFailing", fingerprint="a1")
    failing["labels"]["version"] = "2"
    # another version named: not the staged one, nothing moves
    other = alert("MLOpsStagedVersionFailing", fingerprint="a2")
    other["labels"]["version"] = "9"
    answer = receiver.post(alertmanager_payload(other, failing))
    assert answer.status_code == 200, answer.text
    ignored, rolled = answer.json()["decisions"]
    assert (ignored["decision"], ignored["reason"]) == (
        "ignored", "version 9 of telecom is not staged"
    )  # fmt: skip
    assert rolled["decision"] == "rolled-back"
    assert rolled["reason"] == "rolled back version 2 from canary"
    tags = client.get_model_version("telecom", "2").tags
    assert tags[rollout.STAGE_TAG] == "rolled_back"
    assert tags[rollout.REASON_TAG] == (
        "rolled back by the alert MLOpsStagedVersionFailing (fingerprint a1)"
    )
    assert (
        client.get_registered_model("telecom").aliases == {CHAMPION: 1}
        or str(client.get_registered_model("telecom").aliases[CHAMPION]) == "1"
    )
    # the slow alert of the same project, once nothing is staged: ignored; no monitoring run
    slow = receiver.post(alertmanager_payload(alert("MLOpsStagedVersionSlow", fingerprint="a3")))
    [decision] = slow.json()["decisions"]
    assert (decision["decision"], decision["reason"]) == (
        "ignored", "telecom has no staged version"
    )  # fmt: skip
    assert receiver.counter("telecom", "rolled-back") == 1
    assert recorded(tmp_path / "runs.jsonl") == []
