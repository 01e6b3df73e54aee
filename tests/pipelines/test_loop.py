"""The production loop on one machine, every part real: a champion in a real MLflow store, a real
`make serve` process that logs what it answers and follows its alias, real HTTP traffic with
labels (`pipelines.traffic`, what `make traffic` runs), `kfp.local` monitoring runs
(`pipelines.monitor`, what `make monitor` runs) that publish to a real Pushgateway scraped by a
real Prometheus, and a retraining whose decision is recorded on the version it registers.

An iid window gives no drift and no retraining; a window with a planted shift in the champion's
most important input, with its labels, gives drift naming that column, a retraining, and the
server serving whichever model is champion afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest

from components.core import explain, inference_log, ingest, lineage, registry
from components.core.projects import PROJECTS
from components.core.train import train
from grafana import local
from pipelines import traffic
from tests.conftest import quick_spec
from tests.support.data import REPO_ROOT
from tests.support.models import register_as_champion
from tests.support.observability import Prometheus, run_prometheus, run_pushgateway
from tests.support.servers import ServerProcess, free_port, start

SPEC = PROJECTS["telecom"]
SHIFTED = "mb_used"
ROWS = 600
pytestmark = pytest.mark.slow


@dataclass
class Loop:
    root: Path
    uri: str
    server: ServerProcess
    gateway: str
    prometheus: Prometheus
    champion: str

    def env(self) -> dict[str, str]:
        return dict(
            os.environ, MLOPS_STATE_DIR=str(self.root / "state"), MLFLOW_TRACKING_URI=self.uri
        )

    def send(self, frame: pd.DataFrame, seed: int) -> Path:
        """The rows of `frame` served, their labels appended to one file; returns once the
        server has written them to its log (off the request path)."""
        since = lineage.utc_now()
        rows = self.root / f"rows-{seed}.csv"
        frame.to_csv(rows, index=False)
        labels = self.root / "labels.csv"
        argv = ["--project", SPEC.name, "--port", str(self.server.port), "--data", str(rows)]
        argv += ["--rows", str(ROWS), "--batch", "20", "--labels", str(labels), "--seed", str(seed)]
        assert traffic.main(argv) == 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (
                len(inference_log.read_window(str(self.root / "inference"), SPEC.name, since))
                >= ROWS
            ):
                return labels
            time.sleep(0.5)
        raise AssertionError(f"{ROWS} rows not in the inference log after 60 s")

    def monitor(self, labels: Path) -> dict[str, Any]:
        """One monitoring run over the last hour of the log: everything this test sent."""
        command = [sys.executable, "-m", "pipelines.monitor", "--project", SPEC.name]
        command += ["--log-root", str(self.root / "inference"), "--labels", str(labels)]
        command += ["--hours", "1", "--pushgateway", self.gateway, "--trials", "1"]
        # About the plumbing, not the model: a quick search, and gates it passes.
        command += ["--gate-overrides", '{"accuracy": 0.6, "roc_auc": 0.6}']
        done = subprocess.run(
            command, cwd=REPO_ROOT, env=self.env(), capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        latest = self.root / "state" / "monitor" / SPEC.name / "latest.json"
        result: dict[str, Any] = json.loads(latest.read_text())
        return result

    def served_version(self) -> str | None:
        for line in httpx.get(f"{self.server.url}/metrics", timeout=10).text.splitlines():
            if line.startswith("mlops_model_info{"):
                return line.split('version="', 1)[1].split('"', 1)[0]
        return None


def register_champion(root: Path, uri: str) -> str:
    """A telecom champion registered from a data file as the training pipeline does, so that
    retraining can re-read the file and check its hash. It learnt from a few of the file's
    training rows only: a champion a retraining on all of them and the new rows should beat."""
    source = root / "users_behavior.csv"
    SPEC.make_synthetic(1000, 11).to_csv(source, index=False)
    parts, info = ingest.ingest(SPEC, str(source), 7, 0.25)
    trained = train(quick_spec(SPEC), parts.train.head(120), seed=7, trials_per_candidate=1)
    importance = explain.input_importance(SPEC, trained.model, parts.test)
    return register_as_champion(SPEC, trained, parts, info, uri, "loop-champion", 7, importance)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    root = tmp_path_factory.mktemp("loop")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    champion = register_champion(root, uri)
    port = free_port()
    server = start(
        "make serve",
        [
            *("make", "--no-print-directory", "serve", f"PROJECT={SPEC.name}"),
            *(f"MODEL=models:/{SPEC.name}@champion", f"PORT={port}"),
            *(f"INFERENCE_LOG={root / 'inference'}", "REFRESH=1"),
        ],
        root / "serve.log",
        port,
        env={"MLFLOW_TRACKING_URI": uri},
        group=True,
    )
    gateway = run_pushgateway(root)
    prometheus: ServerProcess | None = None
    try:
        server.wait_ready(timeout=300.0)
        config = local.prometheus_config(
            {SPEC.name: f"127.0.0.1:{port}"},
            interval="1s",
            pushgateway=f"127.0.0.1:{gateway.port}",
        )
        prometheus = run_prometheus(root, config)
        watcher = Prometheus(prometheus)
        watcher.wait_for(f'up{{job="{local.PUSHGATEWAY_JOB}"}} == 1')
        yield Loop(root, uri, server, f"127.0.0.1:{gateway.port}", watcher, champion)
    finally:
        for process in (prometheus, gateway, server):
            if process is not None:
                process.stop()


def test_the_loop_from_served_traffic_to_a_retrained_champion(loop: Loop) -> None:
    # 1. iid traffic: no drift, quality within tolerance, nothing retrained.
    labels = loop.send(SPEC.make_synthetic(ROWS, 21), seed=21)
    first = loop.monitor(labels)
    assert first["rows"] == ROWS and first["labelled_rows"] == ROWS and first["enough_data"]
    assert not first["drift_detected"] and not first["retrain_recommended"], first["reason"]
    assert {"accuracy", "roc_auc"} <= set(first["live_metrics"])
    assert (first["retrained"], first["promoted"]) == (False, False)
    assert first["champion_version_before"] == first["champion_version_after"] == loop.champion
    loop.prometheus.wait_for(f'mlops_monitoring_drift_detected{{project="{SPEC.name}"}} == 0')

    # 2. As many rows again from the heaviest users only (the most important input shifted,
    # the labels still true), with labels: the window of both drifts, names the column,
    # retrains, and the decision is recorded.
    many = SPEC.make_synthetic(4 * ROWS, 22)
    heavy = many[many[SHIFTED] > many[SHIFTED].quantile(0.6)].head(ROWS)
    labels = loop.send(heavy, seed=22)
    second = loop.monitor(labels)
    assert second["rows"] == second["labelled_rows"] == 2 * ROWS
    assert second["drift_detected"], second["reason"]
    assert SHIFTED in second["drifted_columns"] and SHIFTED in second["drifted_important_columns"]
    assert second["retrain_recommended"] and second["retrained"], second["retraining"]
    version = second["retrained_version"]
    assert version == str(int(loop.champion) + 1)
    tags = mlflow.MlflowClient(loop.uri).get_model_version(SPEC.name, version).tags
    assert tags["decision"] == second["decision"] and tags["trigger"] == second["reason"]
    assert tags["monitoring_time"] == second["summary"]["time"]
    assert set(json.loads(tags["figures_after"])) == {
        registry.TEST_SPLIT,
        registry.HOLDOUT_SPLIT,
    }
    loop.prometheus.wait_for(
        f'mlops_monitoring_drift_detected{{project="{SPEC.name}"}} == 1 '
        f'and on(project) mlops_monitoring_column_drifted{{column="{SHIFTED}"}} == 1'
    )

    # 3. The better challenger is champion, and the server serves it without a restart.
    assert second["promoted"], second["decision"]
    assert second["decision"].startswith(f"promoted to champion over champion v{loop.champion}")
    expected = version
    assert second["champion_version_after"] == expected
    deadline = time.monotonic() + 120
    while loop.served_version() != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    assert loop.served_version() == expected, loop.server.log_tail()
    loop.prometheus.wait_for(f'mlops_model_info{{version="{expected}"}} == 1')
