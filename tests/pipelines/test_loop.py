"""The production loop on the parts a cluster has (`make stack`, benchmarks/stack.py), every one
real: a telecom champion registered over HTTP in an MLflow server on PostgreSQL, its artifacts in
an S3 API; two `make serve STACK=1` replicas that log what they answer to `s3://` and follow the
alias; real HTTP traffic with labels (`pipelines.traffic`, what `make traffic` runs); Prometheus
scraping both replicas and the Pushgateway with the project's alert rules, sending its alerts to
Alertmanager, which routes them to the alert receiver, which starts the monitoring pipeline
(`pipelines.monitor` through `kfp.local`); the pipeline's exit handler posts its notice.

iid traffic keeps the predictions near the reference: no alert, no run. A window with a planted shift in the champion's
most important input moves the predicted classes away from the reference: the alert fires, the
receiver starts one monitoring run (a second alert within the cool-down starts none), which finds
drift naming the column, retrains, promotes, and both replicas serve the new champion without a
failed request. Under that run the MLflow server restarts (the replicas' polls fail and say so,
the run's calls retry), and PostgreSQL restarts the moment the retraining has created its
version (the registration goes through, and the version is whole). The rules are the shipped ones, that alert's `for` cut to 0 s: the expressions,
routes and gates are under test, not the waiting.
"""

from __future__ import annotations

import json
import os
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
import yaml

from benchmarks.stack import INFERENCE_LOG, MLFLOW_BUCKET, Stack
from components.core import explain, inference_log, ingest, lineage, registry
from components.core.projects import PROJECTS
from components.core.train import train
from grafana import alerts, local
from pipelines import traffic
from tests.conftest import quick_spec
from tests.support.models import register_as_champion
from tests.support.object_store import ObjectStore, use_store
from tests.support.observability import Prometheus
from tests.support.servers import ServerProcess, free_port, start
from tests.support.stack import Receiver, stack_on
from tests.support.webhook import Receiver as Webhook

SPEC = PROJECTS["telecom"]
SHIFTED = "mb_used"
FACTOR = 2.0
ROWS = 600
ACTION_ALERT = "MLOpsPredictionsAwayFromReference"
UNREACHABLE = f"cannot read models:/{SPEC.name}@champion from the registry"
# About the plumbing, not the model: a quick search, and gates it passes.
MONITOR_ARGS = ["--hours", "1", "--trials", "1", "--gate-overrides", '{"accuracy": 0.6, "roc_auc": 0.6}']  # fmt: skip
pytestmark = pytest.mark.slow


@dataclass
class Loop:
    root: Path
    stack: Stack
    replicas: list[ServerProcess]
    prometheus: Prometheus
    champion: str
    notices: Webhook
    statuses: list[int] = field(default_factory=list)

    @property
    def labels(self) -> Path:
        return self.root / "labels.csv"

    @property
    def state(self) -> Path:
        return self.stack.root / "state"

    def env(self) -> dict[str, str]:
        return dict(os.environ, MLOPS_STATE_DIR=str(self.state)) | self.stack.client_env()

    def send(self, frame: pd.DataFrame, seed: int, shift: str = "") -> None:
        """The rows of `frame` served (`shift` as `make traffic SHIFT=` plants it), half by each
        replica, their labels appended to one file; returns once the replicas have written them
        to the `s3://` log (off the request path)."""
        since = lineage.utc_now()
        halves = (frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :])
        for n, (replica, rows) in enumerate(zip(self.replicas, halves, strict=True)):
            path = self.root / f"rows-{seed}-{n}.csv"
            rows.to_csv(path, index=False)
            argv = ["--project", SPEC.name, "--port", str(replica.port), "--data", str(path)]
            argv += ["--rows", str(len(rows)), "--batch", "20", "--labels", str(self.labels)]
            argv += ["--shift", shift] if shift else []
            assert traffic.main([*argv, "--seed", str(seed + n)]) == 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(inference_log.read_window(INFERENCE_LOG, SPEC.name, since)) >= len(frame):
                return
            time.sleep(0.5)
        raise AssertionError(f"{len(frame)} rows not in the s3:// log after 60 s")

    def latest(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(
            (self.state / "monitor" / SPEC.name / "latest.json").read_text()
        )
        return result

    def decisions(self) -> list[dict[str, Any]]:
        path = self.stack.root / "receiver" / "decisions.jsonl"
        lines = path.read_text().splitlines() if path.is_file() else []
        return [json.loads(line) for line in lines]

    def wait_for_decision(self, check: Callable[[dict[str, Any]], bool], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := [d for d in self.decisions() if check(d)]:
                return found[-1]
            time.sleep(0.5)
        log = (self.stack.root / "logs" / "receiver.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"no such decision after {timeout:g} s: {self.decisions()}\n{log}")

    def served_versions(self) -> list[str | None]:
        return [_served_version(replica) for replica in self.replicas]


def _served_version(server: ServerProcess) -> str | None:
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
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
    trained = train(quick_spec(SPEC), parts.train.head(60), seed=7, trials_per_candidate=1)
    importance = explain.input_importance(SPEC, trained.model, parts.test)
    return register_as_champion(SPEC, trained, parts, info, uri, "loop-champion", 7, importance)


def rules_without_waiting(root: Path) -> Path:
    """The shipped rules, the alert under test firing as soon as its expression holds."""
    groups = alerts.rule_groups()
    for rule in groups["groups"][0]["rules"]:
        if rule["alert"] == ACTION_ALERT:
            rule["for"] = "0s"
    path = root / "rules.yml"
    path.write_text(yaml.safe_dump(groups))
    return path


def serve_replica(stack: Stack, log: Path) -> ServerProcess:
    port = free_port()
    return start(
        "make serve",
        [
            *("make", "--no-print-directory", "serve", f"PROJECT={SPEC.name}", "STACK=1"),
            *(f"STACK_DIR={stack.root}", f"MODEL=models:/{SPEC.name}@champion", f"PORT={port}"),
            "REFRESH=1",
        ],
        log,
        port,
        # MLflow's client retries a refused call for minutes by default; the poll asks again
        # next second anyway, and the test needs to see the outage within its time
        env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
        group=True,
    )


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    root = tmp_path_factory.mktemp("loop")
    replicas: list[ServerProcess] = []
    with pytest.MonkeyPatch.context() as patch, Webhook() as notices:
        # the stack's receiver, and so the monitoring runs it starts, inherit the notice URL
        patch.setenv("NOTIFY_URL", notices.url)
        receiver = Receiver(
            cooldown_s=3600.0,
            daily_budget=4,
            monitor_args=shlex.join(["--labels", str(root / "labels.csv"), *MONITOR_ARGS]),
        )
        stack = stack_on(
            root / "stack",
            ["postgres", "s3", "mlflow", "pushgateway", "receiver", "alertmanager", "prometheus"],
            rules=rules_without_waiting(root),
            interval="1s",
            receiver=receiver,
        )
        try:
            use_store(stack, patch)
            patch.setenv("MLFLOW_TRACKING_URI", stack.tracking_uri)
            mlflow.set_tracking_uri(stack.tracking_uri)
            champion = register_champion(root, stack.tracking_uri)
            replicas = [serve_replica(stack, root / f"serve-{n}.log") for n in range(2)]
            for replica in replicas:
                replica.wait_ready(timeout=300.0)
            stack.scrape([(SPEC.name, f"127.0.0.1:{replica.port}") for replica in replicas])
            watcher = Prometheus(
                stack.service("prometheus").url, stack.root / "logs" / "prometheus.log"
            )
            watcher.wait_for(f'count(up{{job="{local.JOB}"}} == 1) == 2')
            watcher.wait_for(f'up{{job="{local.PUSHGATEWAY_JOB}"}} == 1')
            yield Loop(root, stack, replicas, watcher, champion, notices)
        finally:
            for replica in replicas:
                replica.stop()
            stack.down()


def restart_postgres_once_a_version_is_added(
    loop: Loop, stop: threading.Event, outage: dict[str, float]
) -> None:
    """Restarts the database behind the tracking server the moment a version beyond the
    champion exists: the register step is then between creating its version and naming it."""
    client = mlflow.MlflowClient(loop.stack.tracking_uri)
    while not stop.is_set():
        try:
            added = len(client.search_model_versions(f"name = '{SPEC.name}'")) > 1
        except mlflow.exceptions.MlflowException:
            added = False
        if added:
            started = time.monotonic()
            loop.stack.stop("postgres")
            time.sleep(3.0)
            loop.stack.up(only=["postgres"])
            outage["seconds"] = time.monotonic() - started
            return
        time.sleep(0.5)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.3)


def keep_predicting(loop: Loop, stop: threading.Event) -> None:
    """A request to each replica every 0.5 s, of rows shifted as the traffic is."""
    frame = SPEC.make_synthetic(2, 5)
    frame[SHIFTED] *= FACTOR
    rows = frame[SPEC.input_columns].to_dict("records")
    while not stop.is_set():
        for replica in loop.replicas:
            answer = httpx.post(
                f"{replica.url}/v1/models/{SPEC.name}:predict", json={"instances": rows}, timeout=30
            )
            loop.statuses.append(answer.status_code)
        time.sleep(0.5)


def test_the_loop_from_an_alert_to_a_retrained_champion_on_the_stack(loop: Loop) -> None:
    # 1. iid traffic: the predictions stay near the reference, no alert, no run.
    loop.send(SPEC.make_synthetic(ROWS, 21), seed=21)
    loop.prometheus.wait_for(f'sum(mlops_predictions_total{{isvc="{SPEC.name}"}}) >= {ROWS}')
    time.sleep(3.0)  # a few rule evaluations over what was scraped
    assert not loop.prometheus.query(f'ALERTS{{alertname="{ACTION_ALERT}"}}')
    assert loop.decisions() == []

    # 2. Twice as many rows with the most important input doubled (the labels still true), half
    # through each replica, while both keep answering other requests.
    stop = threading.Event()
    predicting = threading.Thread(target=keep_predicting, args=(loop, stop))
    try:
        loop.send(SPEC.make_synthetic(2 * ROWS, 22), seed=22, shift=f"{SHIFTED}:{FACTOR:g}")
        # the predicted classes left the reference: Prometheus fires, Alertmanager delivers,
        # the receiver starts one monitoring run
        loop.prometheus.wait_for(
            f'ALERTS{{alertname="{ACTION_ALERT}", alertstate="firing", isvc="{SPEC.name}"}}',
            timeout=60,
        )
        started = loop.wait_for_decision(lambda d: d.get("decision") == "started", 60)
        assert started["project"] == SPEC.name and started["alertname"] == ACTION_ALERT
        # from here to the new champion on both replicas, every request must be answered
        predicting.start()
        # a second alert for the project within the cool-down starts nothing
        second_alert = {"labels": {"alertname": "MLOpsPredictionShift", "isvc": SPEC.name, "severity": "warning"}}  # fmt: skip
        posted = httpx.post(
            f"http://127.0.0.1:{loop.stack.ports.alertmanager}/api/v2/alerts",
            json=[second_alert],
            timeout=10,
        )
        assert posted.status_code == 200, posted.text
        held = loop.wait_for_decision(lambda d: d.get("alertname") == "MLOpsPredictionShift", 60)
        assert held["decision"] in {"running", "cooling-down"}, held

        # Faults under the run: the MLflow server restarts while both replicas follow its alias
        # (their failed polls are logged, the answers go on, the run's calls retry), and
        # PostgreSQL restarts the moment the retraining has created its version.
        loop.stack.stop("mlflow")
        for replica in loop.replicas:
            wait_until(lambda r=replica: UNREACHABLE in r.log_tail(200_000), 60, "a failed poll")
        loop.stack.up(only=["mlflow"])
        outage: dict[str, float] = {}
        watcher = threading.Thread(
            target=restart_postgres_once_a_version_is_added, args=(loop, stop, outage)
        )
        watcher.start()
        finished = loop.wait_for_decision(lambda d: d.get("event") == "run-finished", 900)
        assert finished["returncode"] == 0, Path(finished["log"]).read_text()[-4000:]
        watcher.join(timeout=60)
        assert outage, "the registration ended before PostgreSQL could be restarted under it"
        assert [d["decision"] for d in loop.decisions() if "decision" in d].count("started") == 1

        second = loop.latest()
        # the window also holds the other requests' rows, which have no labels
        assert second["labelled_rows"] == 3 * ROWS <= second["rows"]
        assert second["drift_detected"], second["reason"]
        assert SHIFTED in second["drifted_columns"]
        assert SHIFTED in second["drifted_important_columns"]
        assert second["retrain_recommended"] and second["retrained"], second["retraining"]
        version = second["retrained_version"]
        assert version == str(int(loop.champion) + 1)
        client = mlflow.MlflowClient(loop.stack.tracking_uri)
        # one version added through the database's restart, and it is whole
        versions = client.search_model_versions(f"name = '{SPEC.name}'")
        assert sorted(v.version for v in versions) == [loop.champion, version]
        tags = client.get_model_version(SPEC.name, version).tags
        assert tags["decision"] == second["decision"] and tags["trigger"] == second["reason"]
        assert len(tags["model_file_sha256"]) == 64
        # its files went through the server's proxy into the bucket: no client held an S3 key
        run = client.get_run(str(client.get_model_version(SPEC.name, version).run_id))
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
        assert any(k.endswith("/model.pkl") for k in ObjectStore(loop.stack).keys(MLFLOW_BUCKET))
        assert tags["monitoring_time"] == second["summary"]["time"]
        assert set(json.loads(tags["figures_after"])) == {
            registry.TEST_SPLIT,
            registry.HOLDOUT_SPLIT,
        }
        loop.prometheus.wait_for(
            f'mlops_monitoring_drift_detected{{project="{SPEC.name}"}} == 1 '
            f'and on(project) mlops_monitoring_column_drifted{{column="{SHIFTED}"}} == 1'
        )

        # 3. The better challenger is champion, and both replicas serve it without a restart.
        assert second["promoted"], second["decision"]
        assert second["decision"].startswith(f"promoted to champion over champion v{loop.champion}")
        assert second["champion_version_after"] == version
        deadline = time.monotonic() + 120
        while loop.served_versions() != [version, version] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert loop.served_versions() == [version, version]
        loop.prometheus.wait_for(
            f'count(mlops_model_info{{isvc="{SPEC.name}", version="{version}"}} == 1) == 2'
        )
    finally:
        stop.set()
        if predicting.is_alive():
            predicting.join(timeout=60)
    assert loop.statuses and set(loop.statuses) == {200}, sorted(set(loop.statuses))
    decided = [(d["alertname"], d["decision"]) for d in loop.decisions() if "decision" in d]
    print(f"loop: {len(loop.statuses)} requests answered during the run, all 200; {decided}")

    # 4. The monitoring pipeline's exit handler said how it ended, and what the registry decided.
    notice = loop.notices.wait_for(lambda n: n.get("pipeline") == f"{SPEC.name}-monitoring")
    assert notice["status"] == "SUCCEEDED", notice
    assert notice["registry"]["version"] == version and notice["registry"]["promoted"], notice
