"""The predictor's start on a cluster, as a pod runs it: KServe's storage initializer
(`python -m serving.fetch URI /mnt/models`, the ClusterStorageContainer for `models:/`) fetches and
verifies a registry version, then the server loads the directory it wrote. A real SQLite
registry with a good version and one whose stored file is not the one its digest tag names; the
initializer and the server run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from components.core import loading
from components.core.inference_log import read_window
from components.core.loading import FETCHED_NOTE, ModelVerificationError, Verification
from tests.serving.support import Served, instances, metric, predict
from tests.support.models import model_file, register_dirs, replace_stored_model
from tests.support.servers import launch


@pytest.fixture(scope="module")
def registry(
    mlflow_uri: str,
    tmp_path_factory: pytest.TempPathFactory,
    served: dict[str, Served],
    broken_model_dirs: dict[str, Path],
) -> tuple[str, dict[str, tuple[str, str]]]:
    import mlflow

    name = f"fetch-{uuid.uuid4().hex[:8]}"
    telecom = served["telecom"].model_dir
    versions = register_dirs(
        mlflow_uri,
        name,
        [("good", telecom), ("tampered", telecom)],
        tmp_path_factory.mktemp("fetch-runs"),
    )
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    client.set_registered_model_alias(name, "champion", versions["good"][0])
    replace_stored_model(mlflow_uri, name, versions["tampered"][0], broken_model_dirs["failing"])
    return name, versions


def fetch(uri: str, dest: Path, mlflow_uri: str) -> subprocess.CompletedProcess[str]:
    # The pod's environment: the tracking URI from the ConfigMap, TMPDIR beside the model.
    env = os.environ | {"MLFLOW_TRACKING_URI": mlflow_uri, "TMPDIR": str(dest / ".download")}
    return subprocess.run(
        [sys.executable, "-m", "serving.fetch", uri, str(dest)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_a_fetched_champion_is_served_as_the_version_it_is_and_a_canary_says_so(
    registry: tuple[str, dict[str, tuple[str, str]]],
    mlflow_uri: str,
    served: dict[str, Served],
    tmp_path: Path,
) -> None:
    name, versions = registry
    version, run_id = versions["good"]
    models = tmp_path / "mnt-models"
    done = fetch(f"models:/{name}@champion", models, mlflow_uri)
    assert done.returncode == 0, done.stderr
    assert f"version {version} (run {run_id})" in done.stdout and "verified" in done.stdout
    assert json.loads((models / FETCHED_NOTE).read_text())["version"] == version
    assert (models / "MLmodel").is_file() and not (models / ".download").exists()

    log_root = tmp_path / "inference"
    server = launch(
        "telecom",
        models,
        tmp_path / "server.log",
        pin_digest=False,  # the version's registry tag vouches for the file
        inference_log=log_root,
        extra_args=["--serving_stage", "canary"],
        env={"MLFLOW_TRACKING_URI": mlflow_uri},
    )
    try:
        server.wait_ready(timeout=300.0)
        s = served["telecom"]
        answer = predict(server, instances(s.spec, s.test_frame.head(3)))
        assert answer.status_code == 200, answer.text
        text = httpx.get(server.url + "/metrics", timeout=10.0).text
        assert f'version="{version}"' in text and f'run_id="{run_id}"' in text
        assert metric(server, "mlops_arm_rows_total", stage="canary", version=version) == 3
        log = server.log_tail(100_000)
        assert f"model_file_sha256 tag of version {version}" in log
    finally:
        server.stop()
    rows = read_window(str(log_root), "telecom")  # the server wrote what it held as it stopped
    assert len(rows) == 3
    assert set(rows["stage"]) == {"canary"} and set(rows["model_version"]) == {version}


def test_a_version_whose_file_is_not_the_registered_one_stops_the_pod_before_the_server(
    registry: tuple[str, dict[str, tuple[str, str]]], mlflow_uri: str, tmp_path: Path
) -> None:
    name, versions = registry
    tampered = versions["tampered"][0]
    models = tmp_path / "mnt-models"
    done = fetch(f"models:/{name}/{tampered}", models, mlflow_uri)
    assert done.returncode == 1
    assert f"the model_file_sha256 tag of version {tampered}" in done.stderr
    assert "is never unpickled" in done.stderr
    assert list(models.iterdir()) == []  # nothing the server could load


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/{name}@nosuchalias", "does not resolve it"),
        ("models:/{name}/99", "does not resolve it"),
        ("runs:/abc/model", "expected models:/NAME@ALIAS or models:/NAME/VERSION"),
    ],
)
def test_a_uri_the_registry_cannot_resolve_is_named(
    registry: tuple[str, dict[str, tuple[str, str]]],
    mlflow_uri: str,
    tmp_path: Path,
    uri: str,
    message: str,
) -> None:
    name, _ = registry
    done = fetch(uri.format(name=name), tmp_path / "models", mlflow_uri)
    assert done.returncode == 1
    assert message in done.stderr and uri.format(name=name) in done.stderr


def test_a_file_swapped_after_the_fetch_is_refused_by_the_registrys_tag(
    registry: tuple[str, dict[str, tuple[str, str]]],
    mlflow_uri: str,
    served: dict[str, Served],
    broken_model_dirs: dict[str, Path],
    tmp_path: Path,
) -> None:
    """The note says which version the directory is; the registry, not the note, says which
    file that version must be."""
    name, versions = registry
    models = tmp_path / "mnt-models"
    assert fetch(f"models:/{name}@champion", models, mlflow_uri).returncode == 0
    import mlflow

    spec = served["telecom"].spec
    required = Verification(require=True)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(mlflow_uri)
    try:
        loaded = loading.load(spec, str(models), verification=required)
        assert loaded.provenance.version == versions["good"][0]
        model_file(models).write_bytes(model_file(broken_model_dirs["failing"]).read_bytes())
        with pytest.raises(ModelVerificationError, match=f"tag of version {versions['good'][0]}"):
            loading.load(spec, str(models), verification=required)
        (models / FETCHED_NOTE).write_text("{not json")
        with pytest.raises(loading.ModelLoadError, match=f"{FETCHED_NOTE} is unreadable"):
            loading.load(spec, str(models), verification=required)
    finally:
        mlflow.set_tracking_uri(previous)
