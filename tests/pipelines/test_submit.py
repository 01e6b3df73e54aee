"""Submitting to a KFP endpoint: arguments are checked against the compiled pipeline first.

No KFP API server can run here, so `kfp.Client` is replaced by a recorder of the one call
submission makes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import kfp
import pytest

from pipelines import submit
from pipelines.compile import compiled_path


class RecordingClient:
    calls: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, host: str, namespace: str | None = None) -> None:
        self.host, self.namespace = host, namespace

    def create_run_from_pipeline_package(self, package: str, **kwargs: Any) -> Any:
        RecordingClient.calls.append({"host": self.host, "package": package, **kwargs})
        return type("Run", (), {"run_id": "run-1"})()


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> type[RecordingClient]:
    RecordingClient.calls = []
    monkeypatch.setattr(kfp, "Client", RecordingClient)
    return RecordingClient


def test_a_run_gets_the_compiled_package_and_every_argument(
    client: type[RecordingClient], capsys: pytest.CaptureFixture[str]
) -> None:
    submit.main(
        [
            "--host=https://kfp.example.com/pipeline",
            "--project=telecom",
            "--source=https://example.com/users.csv",
            "--deploy-mode=apply",
            '--params={"seed": 7, "deploy_namespace": "team-a"}',
        ]
    )
    [call] = client.calls
    assert call["package"] == str(compiled_path("telecom"))
    assert call["arguments"] == {
        "source": "https://example.com/users.csv",
        "mlflow_tracking_uri": "",
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
    ("params", "message"),
    [
        ('{"seeed": 7}', "telecom-training has no parameter seeed; its parameters are"),
        ("{seed: 7}", "--params is not JSON"),
        ("[1, 2]", "--params must be a JSON object"),
    ],
)
def test_bad_parameters_are_named_and_nothing_is_sent(
    client: type[RecordingClient], capsys: pytest.CaptureFixture[str], params: str, message: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        submit.main(["--host=https://kfp", "--project=telecom", f"--params={params}"])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
    assert client.calls == []


def test_every_parameter_the_submitter_sets_exists_in_each_compiled_pipeline() -> None:
    for project in ("bankchurn", "carvision", "telecom"):
        arguments = submit.run_arguments(project, "synthetic", "", "manifest", "{}")
        assert set(arguments) <= set(submit.pipeline_parameters(project))
