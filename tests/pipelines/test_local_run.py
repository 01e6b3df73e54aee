"""Whole pipelines through kfp.local's SubprocessRunner, against a real MLflow SQLite store; every
run posts its notice to a real webhook on this machine (NOTIFY_URL, which the steps inherit)."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
import yaml
from kfp import local
from kfp.dsl import PipelineTask

from components.core import deploy, model_card
from components.core.contracts import KFP_RUN_ID_TAG, DriftSummary
from components.core.projects import PROJECTS
from pipelines.resources import for_local_run
from pipelines.training import PIPELINES
from tests.support.servers import free_port, start
from tests.support.webhook import SECRET_PATH, Receiver

SPEC = PROJECTS["telecom"]
# One trial on a small file: these tests are about the plumbing, not the model's quality.
QUICK = {
    "trials_per_candidate": 1,
    "time_budget_s": 0.0,
    "gate_overrides": '{"accuracy": 0.6}',
    "explained_rows": 20,
}


@pytest.fixture(scope="module")
def webhook() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def kfp_local(
    tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str, webhook: Receiver
) -> Iterator[str]:
    root = tmp_path_factory.mktemp("kfp")
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), enable_caching=True
    )
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri
    os.environ["NOTIFY_URL"] = webhook.url
    mlflow.set_tracking_uri(mlflow_uri)
    yield mlflow_uri
    os.environ.pop("NOTIFY_URL")
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI")
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(scope="module")
def good_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "users_behavior.csv"
    SPEC.make_synthetic(900, 11).to_csv(path, index=False)
    return path


def run(source: Path | str, uri: str, **params: object) -> PipelineTask:
    pipeline = for_local_run(PIPELINES["telecom"])
    return pipeline(source=str(source), mlflow_tracking_uri=uri, **(QUICK | params))


def champion_version() -> str:
    return str(mlflow.MlflowClient().get_model_version_by_alias("telecom", "champion").version)


def notice_of_a_failed_run(
    webhook: Receiver, step: str, error: str, output: str
) -> dict[str, object]:
    """The one notice since the last, of a run that failed in `step` with `error`: nothing
    registered, the champion as it was; the webhook's secret path in no log line."""
    [notice] = webhook.take()
    assert notice["status"] == "FAILED" and notice["failed_step"] == step
    assert error in notice["error"] and error in notice["text"]
    assert notice["text"].startswith(f"telecom-training FAILED in {step} (run telecom-training-")
    registry = notice["registry"]
    assert registry["version"] is None and registry["promoted"] is False
    assert SECRET_PATH not in output
    return notice


@pytest.fixture(scope="module")
def first(kfp_local: str, good_csv: Path) -> PipelineTask:
    """The first run on the good file: it registers the first champion."""
    return run(good_csv, kfp_local)


def test_pipeline_registers_a_champion_that_predicts_on_raw_rows(
    first: PipelineTask, webhook: Receiver
) -> None:
    task = first
    registration = json.loads(Path(task.outputs["registration"].path).read_text())
    assert registration["aliases"] == ["challenger", "champion"]
    assert champion_version() == registration["version"]
    # The run's notice found the version by the run id the register step tagged it with.
    version = mlflow.MlflowClient().get_model_version("telecom", registration["version"])
    run_id = version.tags[KFP_RUN_ID_TAG]
    [notice] = [r.body for r in webhook.received if r.body["run"] == run_id]
    assert notice["pipeline"] == "telecom-training" and notice["status"] == "SUCCEEDED"
    assert notice["failed_step"] == "" and notice["error"] == ""
    assert notice["registry"] == {
        "model": "telecom",
        "version": registration["version"],
        "promoted": True,
        "champion_version": registration["version"],
        "decision": registration["decision"],
    }
    assert notice["text"].endswith(
        f"telecom v{registration['version']} registered and promoted to champion"
    )
    model = mlflow.sklearn.load_model("models:/telecom@champion")
    rows = SPEC.make_synthetic(20, 99).drop(columns=[SPEC.target])
    assert set(model.predict(rows)) <= {0, 1}
    card = Path(task.outputs["model_card"].path).read_text()
    assert "Model card: telecom" in card and f"version {registration['version']}" in card
    assert [line[3:] for line in card.splitlines() if line.startswith("## ")] == list(
        model_card.SECTIONS
    )
    # A file, even one the generator wrote, is data the user vouches for: labelled REAL.
    assert card.startswith("# Model card: telecom v1") and "**REAL DATA.**" in card
    run_info = mlflow.get_run(registration["run_id"])
    assert run_info.data.tags["kfp.run_name"].startswith("telecom-training")
    assert run_info.data.tags[KFP_RUN_ID_TAG] == run_id
    assert "test_accuracy" in run_info.data.metrics
    children = mlflow.search_runs(
        experiment_ids=[run_info.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{registration['run_id']}'",
    )
    assert len(children) >= 1
    reference = mlflow.models.get_model_info("models:/telecom@champion").metadata or {}
    assert set(reference["reference_class_share"]) == {"Standard", "Ultra"}
    assert sum(reference["reference_class_share"].values()) == pytest.approx(1.0)
    served = yaml.safe_load(Path(task.outputs["inference_service"].path).read_text())
    env = served["spec"]["predictor"]["containers"][0]["env"]
    assert env[0] == {"name": "STORAGE_URI", "value": f"models:/telecom/{registration['version']}"}
    drift = DriftSummary.read(task.outputs["drift_summary"].path)
    assert drift.reason == "no champion yet: nothing to compare" and not drift.drift_detected


def test_unchanged_rerun_is_served_from_the_cache(
    first: PipelineTask, kfp_local: str, good_csv: Path, webhook: Receiver
) -> None:
    before = champion_version()
    webhook.take()
    task = run(good_csv, kfp_local)
    registration = json.loads(Path(task.outputs["registration"].path).read_text())
    assert registration["version"] == before
    # Drift is never cached: the same data now meets the champion it trained.
    drift = DriftSummary.read(task.outputs["drift_summary"].path)
    assert drift.reference.startswith(f"telecom v{before} training sample")
    assert drift.enough_data and not drift.drift_detected
    assert len(mlflow.MlflowClient().search_model_versions("name = 'telecom'")) == int(before)
    # Not served from the cache itself: a rerun is notified too, with nothing new registered.
    [notice] = webhook.take()
    assert notice["status"] == "SUCCEEDED"
    assert notice["registry"]["version"] is None
    assert notice["registry"]["champion_version"] == before


def test_the_deploy_manifest_starts_a_server_that_serves_the_champion(
    first: PipelineTask,
    kfp_local: str,
    tmp_path: Path,
) -> None:
    """The pod of the written InferenceService, run as KServe would run it: the storage
    initializer's command on the container's STORAGE_URI, then the server with its args (a
    directory standing in for /mnt/models) and its readiness probe, on this machine's MLflow
    store instead of the cluster's."""
    task = first
    registration = json.loads(Path(task.outputs["registration"].path).read_text())
    resource = yaml.safe_load(Path(task.outputs["inference_service"].path).read_text())
    container = resource["spec"]["predictor"]["containers"][0]
    [storage_uri] = [e["value"] for e in container["env"] if e["name"] == "STORAGE_URI"]
    initializer = deploy.storage_container()["spec"]["container"]
    models = tmp_path / "mnt-models"
    fetched = subprocess.run(
        [sys.executable, *initializer["command"][1:], storage_uri, str(models)],
        env=os.environ | {"MLFLOW_TRACKING_URI": kfp_local},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert fetched.returncode == 0, fetched.stderr
    port = free_port()
    server = start(
        "telecom",
        [sys.executable, "-m", "serving", *container["args"], f"--http_port={port}",
         f"--model_uri={models}"],
        tmp_path / "server.log",
        port,
        env={"MLFLOW_TRACKING_URI": kfp_local},
    )  # fmt: skip
    try:
        server.wait_ready(path=container["readinessProbe"]["httpGet"]["path"])
        rows = SPEC.make_synthetic(30, 5).drop(columns=[SPEC.target])
        answer = httpx.post(
            f"{server.url}/v1/models/telecom:predict",
            json={"instances": rows.to_dict("records")},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        served = [p["recommended_plan"] == "Ultra" for p in answer.json()["predictions"]]
        champion = mlflow.sklearn.load_model(f"models:/telecom/{registration['version']}")
        assert served == [bool(y) for y in champion.predict(rows)]
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert f'version="{registration["version"]}"' in metrics
    finally:
        server.stop()


def test_apply_mode_off_cluster_stops_in_deploy_naming_the_way_out(
    first: PipelineTask,
    kfp_local: str,
    good_csv: Path,
    capfd: pytest.CaptureFixture[str],
    webhook: Receiver,
) -> None:
    """Everything before deploy is served from the cache; a mistyped mode is refused by the
    same check (tests/unit/test_deploy.py)."""
    before = champion_version()
    webhook.take()
    with pytest.raises(RuntimeError):
        run(good_csv, kfp_local, deploy_mode="apply")
    output = capfd.readouterr().out
    assert "mode 'apply' needs a Kubernetes service account" in output
    assert champion_version() == before
    notice = notice_of_a_failed_run(webhook, "deploy", "needs a Kubernetes service account", output)
    assert notice["registry"]["champion_version"] == before


def test_bad_data_stops_in_validate_and_keeps_the_champion(
    kfp_local: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], webhook: Receiver
) -> None:
    before = champion_version()
    bad = tmp_path / "bad.csv"
    SPEC.make_synthetic(400, 3).drop(columns=["minutes"]).to_csv(bad, index=False)
    webhook.take()
    with pytest.raises(RuntimeError):
        run(bad, kfp_local)
    output = capfd.readouterr().out
    assert "column 'minutes': missing column" in output
    assert champion_version() == before
    notice_of_a_failed_run(webhook, "validate", "column 'minutes': missing column", output)


def test_unparsable_csv_stops_in_ingest(
    kfp_local: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], webhook: Receiver
) -> None:
    bad = tmp_path / "garbage.csv"
    bad.write_bytes(b'calls,minutes\n"open quote,1\n')
    webhook.take()
    with pytest.raises(RuntimeError):
        run(bad, kfp_local)
    output = capfd.readouterr().out
    assert "is not a readable CSV file" in output
    notice_of_a_failed_run(webhook, "ingest", "is not a readable CSV file", output)


def test_failed_gate_registers_nothing(
    kfp_local: str, good_csv: Path, capfd: pytest.CaptureFixture[str], webhook: Receiver
) -> None:
    versions = len(mlflow.MlflowClient().search_model_versions("name = 'telecom'"))
    webhook.take()
    with pytest.raises(RuntimeError):
        run(good_csv, kfp_local, gate_overrides='{"accuracy": 0.999}')
    output = capfd.readouterr().out
    assert "failed its quality gate" in output and "gate >= 0.999" in output
    assert len(mlflow.MlflowClient().search_model_versions("name = 'telecom'")) == versions
    notice = notice_of_a_failed_run(webhook, "evaluate", "failed its quality gate", output)
    assert "gate >= 0.999" in notice["text"]
