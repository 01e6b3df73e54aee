"""The run's notice: its body, the URL's checks, delivery to a real HTTP receiver on this
machine (retries, then a clear failure), and the failure record a step leaves for it."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.core import failure, notice
from components.core.notice import Failure, NoticeError, Outcome, RegistryDecision
from tests.support.servers import REPO_ROOT, free_port
from tests.support.webhook import SECRET_PATH, Receiver

SUCCEEDED = Outcome("telecom-training", "telecom", "8f2c", "telecom-training-x7", "SUCCEEDED")
FAILED = Outcome(
    "telecom-training", "telecom", "8f2d", "telecom-training-x8", "FAILED", "Task failed."
)
PROMOTED = RegistryDecision(
    "telecom", "3", True, "3", "promoted to champion over champion v2: accuracy 0.81 vs 0.79"
)
KEPT = RegistryDecision("telecom", "4", False, "3", "kept champion v3: ...")
SECRET = SECRET_PATH.rsplit("/", 1)[1]


def test_a_successful_run_says_what_the_registry_decided_on_one_line() -> None:
    body = notice.body(SUCCEEDED, None, PROMOTED)
    assert body == {
        "pipeline": "telecom-training",
        "project": "telecom",
        "run": "8f2c",
        "run_name": "telecom-training-x7",
        "status": "SUCCEEDED",
        "failed_step": "",
        "error": "",
        "registry": {
            "model": "telecom",
            "version": "3",
            "promoted": True,
            "champion_version": "3",
            "decision": PROMOTED.decision,
        },
        "text": "telecom-training SUCCEEDED (run telecom-training-x7): "
        "telecom v3 registered and promoted to champion",
    }
    assert json.loads(json.dumps(body)) == body
    kept = notice.body(SUCCEEDED, None, KEPT)["text"]
    assert kept.endswith("telecom v4 registered; champion stays v3")
    none = RegistryDecision("telecom", None, False, None, "no version registered by this run")
    assert notice.body(SUCCEEDED, None, none)["text"].endswith(
        "no new telecom version registered; champion none"
    )


def test_a_failed_run_names_the_step_and_keeps_the_tail_of_its_error() -> None:
    trace = "Traceback (most recent call last):\n" + "  a frame\n" * 500 + "GateFailed: no"
    found = Failure("evaluate", "GateFailed: telecom model failed its quality gate", trace)
    body = notice.body(FAILED, found, RegistryDecision("telecom", None, False, "3", "none"))
    assert body["status"] == "FAILED" and body["failed_step"] == "evaluate"
    assert len(body["error"]) == failure.ERROR_CHARS and body["error"].endswith("GateFailed: no")
    assert body["text"] == (
        "telecom-training FAILED in evaluate (run telecom-training-x8): "
        "GateFailed: telecom model failed its quality gate"
    )
    assert "\n" not in body["text"]


def test_without_a_failure_record_the_notice_says_what_kfp_said() -> None:
    body = notice.body(FAILED, None, None)
    assert body["failed_step"] == "" and body["error"] == "Task failed."
    assert body["text"] == "telecom-training FAILED (run telecom-training-x8): Task failed."
    assert body["registry"] is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "must be an http:// or https:// URL"),
        ("ftp://hooks.example/services/T0000/B0000/s3cr3t-t0ken", "must be an http://"),
        ("hooks.example/services/T0000/B0000/s3cr3t-t0ken", "must be an http://"),
        ("https:///services/T0000/B0000/s3cr3t-t0ken", "has no host"),
        ("https://hooks.example:port/services/s3cr3t-t0ken", "is not a valid URL"),
        ("https://hooks.example/services/s3cr3t-t0ken two", "whitespace or control"),
        ("https://hooks.example/services/s3cr3t-t0ken\n", "whitespace or control"),
    ],
)
def test_an_unusable_url_is_refused_without_showing_it(url: str, problem: str) -> None:
    with pytest.raises(NoticeError, match=problem) as refused:
        notice.check_url(url)
    assert SECRET not in str(refused.value) and "services" not in str(refused.value)


def test_only_the_scheme_and_host_of_a_url_are_shown() -> None:
    url = "https://user:pw@Hooks.Example:8443/services/T0000/s3cr3t-t0ken?token=abc"
    assert notice.check_url(url) == "https://hooks.example:8443"
    assert notice.where("http://[::1]:9000/x") == "http://[::1]:9000"


def test_a_notice_arrives_as_json_at_the_url() -> None:
    body = notice.body(SUCCEEDED, None, PROMOTED)
    with Receiver() as receiver:
        assert notice.post(receiver.url, body) == 200
        [found] = receiver.received
    assert found.path == SECRET_PATH
    assert found.content_type == "application/json"
    assert found.body == body


def test_a_server_error_is_tried_again_and_the_notice_still_arrives() -> None:
    with Receiver(answers=[503, 502]) as receiver:
        assert notice.post(receiver.url, {"text": "x"}, backoff_s=0.01) == 200
        assert len(receiver.received) == 3


def test_an_answer_that_will_not_change_fails_at_once_naming_host_and_status() -> None:
    with Receiver(answers=[404]) as receiver:
        with pytest.raises(NoticeError) as failed:
            notice.post(receiver.url, {"text": "x"}, backoff_s=0.01)
        assert len(receiver.received) == 1
    host = receiver.url.removesuffix(SECRET_PATH)
    assert str(failed.value) == (f"the notice was not delivered to {host} (1 attempt(s)): HTTP 404")


def test_a_closed_port_is_tried_three_times_then_fails_clearly() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}{SECRET_PATH}?token=abc"
    start = time.perf_counter()
    with pytest.raises(NoticeError) as failed:
        notice.post(url, {"text": "x"}, backoff_s=0.05)
    assert time.perf_counter() - start < 5
    message = str(failed.value)
    assert message.startswith(
        f"the notice was not delivered to http://127.0.0.1:{port} ({notice.ATTEMPTS} attempt(s)): "
    )
    assert "ConnectionRefusedError" in message
    assert SECRET not in message and "token" not in message


def executor_process(folder: Path, code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a process started as KFP's executor CLI starts a step, its outputs in `folder`."""
    executor_input = {"outputs": {"outputFile": str(folder / "executor_output.json")}}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--executor_input",
            json.dumps(executor_input),
            "--function_to_execute",
            "evaluate",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_step_that_raises_leaves_its_failure_for_the_notice(tmp_path: Path) -> None:
    run = tmp_path / "telecom-training-x8"
    (run / "evaluate").mkdir(parents=True)
    (run / "train").mkdir()
    raised = "import components.core\nraise ValueError('the gate:\\n  accuracy 0.7 < 0.9')"
    done = executor_process(run / "evaluate", raised)
    assert done.returncode == 1
    # Python still prints the step's own traceback.
    assert done.stderr.rstrip().endswith("accuracy 0.7 < 0.9")
    found = notice.run_failure(run)
    assert found is not None and found.step == "evaluate"
    assert found.summary == "ValueError: the gate: accuracy 0.7 < 0.9"
    assert found.error.startswith("Traceback") and found.error.endswith("accuracy 0.7 < 0.9\n")
    # A step that succeeds, or a process KFP did not start, leaves nothing.
    assert executor_process(run / "train", "import components.core").returncode == 0
    assert not (run / "train" / failure.FAILURE_FILE).exists()
    assert notice.run_failure(tmp_path / "elsewhere") is None


def test_a_failed_run_is_posted_with_its_step(tmp_path: Path) -> None:
    run = tmp_path / "telecom-training-x8"
    (run / "validate").mkdir(parents=True)
    executor_process(run / "validate", "import components.core\nraise KeyError('minutes')")
    with Receiver() as receiver:
        line = notice.send(receiver.url, FAILED, run_folder=run, tracking_uri=None)
        [body] = receiver.take()
    assert body["failed_step"] == "validate" and body["registry"] is None
    assert body["error"].endswith("KeyError: 'minutes'\n")
    assert line == (
        f"notice posted to {receiver.url.removesuffix(SECRET_PATH)} (HTTP 200): {body['text']}"
    )
