"""`make stack` itself (benchmarks/stack.py): a second start leaves running services alone,
PostgreSQL and the object store stopped and started again keep what they held, a taken port is
named, and the status says what runs where."""

from __future__ import annotations

import socket
from pathlib import Path

import mlflow
import pytest

from benchmarks import stack as stack_module
from benchmarks.stack import DATA_BUCKET, Ports, Stack, StackError
from tests.support.stack import stack_on

PARTS = ["postgres", "s3", "mlflow"]
pytestmark = pytest.mark.slow


def test_a_second_start_reuses_the_stack_and_a_restart_keeps_its_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = stack_on(tmp_path / "stack", PARTS)
    # the module-level URI, which an earlier test in this process may have set, wins over env
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.tracking_uri)
    mlflow.set_tracking_uri(stack.tracking_uri)
    try:
        pids = {name: stack.running(name) for name in PARTS}
        assert all(pids.values())
        Stack(stack.root, postgres_root=stack.postgres_root).up(only=PARTS)
        assert {name: stack.running(name) for name in PARTS} == pids

        client = mlflow.MlflowClient(stack.tracking_uri)
        experiment = client.create_experiment("kept")
        run = client.create_run(experiment)
        client.log_text(run.info.run_id, "through the proxy", "note.txt")
        stack.s3_client().put_object(Bucket=DATA_BUCKET, Key="inference/part.parquet", Body=b"1")

        # the parts that hold the data stop and start again (the MLflow server reconnects)
        assert stack.stop("s3") and stack.stop("postgres")
        assert {row["service"]: row["state"] for row in stack.status()}["s3"] == "down"
        stack.up(only=PARTS)

        assert client.get_experiment_by_name("kept").experiment_id == experiment
        text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/note.txt")
        assert text == "through the proxy"
        body = stack.s3_client().get_object(Bucket=DATA_BUCKET, Key="inference/part.parquet")
        assert body["Body"].read() == b"1"

        assert stack_module.main(["status", "--root", str(stack.root)]) == 0
        shown = capsys.readouterr().out
        assert "mlflow        up" in shown and stack.tracking_uri in shown
        assert "alertmanager  down" in shown
        assert stack.down() == list(reversed(PARTS))
    finally:
        stack.down()


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = Stack(tmp_path / "stack", Ports(s3=port))
        with pytest.raises(StackError, match=rf"s3: port {port} is taken .* PORTS=s3="):
            stack.up(only=["s3"])


def test_ports_are_parsed_or_refused_by_name() -> None:
    assert Ports.parse("mlflow=5001, s3=9001").mlflow == 5001
    with pytest.raises(ValueError, match="NAME one of alertmanager, mlflow"):
        Ports.parse("minio=9000")


def test_a_missing_binary_is_named_at_start_and_stopping_needs_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no Debian binary on it
    stack = Stack(tmp_path / "stack", Ports(pushgateway=1))
    assert stack.down() == [] and stack.status()[0]["state"] == "down"
    with pytest.raises(StackError, match="apt-get install prometheus-pushgateway"):
        stack.up(only=["pushgateway"])
