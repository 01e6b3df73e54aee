"""An Alertmanager webhook receiver that starts a project's monitoring run (`<project>-monitoring`)
when a serving-side alert calls for one.

`POST /alerts` takes Alertmanager's webhook payload (version 4). An alert acts when it is firing,
is one of the action alerts (`--alerts`) and names a registered project in its `isvc` or
`project` label. A gate per project then decides, and remembers across restarts (a JSON file in
`--state-dir`): the alert that already started a run is deduplicated until it resolves or the
cool-down has passed; a project starts no run during the cool-down after its last one
(`--cooldown-s`), no more than `--daily-budget` runs a UTC day, and none while one is in flight
(watched in local mode only). Every decision is one JSON line in `<state-dir>/decisions.jsonl`
and on stdout, and counted in `mlops_alert_receiver_decisions_total` (`GET /metrics`).

A firing MLOpsStagedVersionFailing or MLOpsStagedVersionSlow rolls the version staged beside
the project's champion back at once, through the registry of MLFLOW_TRACKING_URI, with no gate
(decision `rolled-back`; `ignored` when nothing, or another version, is staged; `failed`, answered
503 so that Alertmanager retries, when the registry cannot be reached).

`--mode local` starts `python -m pipelines.monitor --project <p>` here; `--mode cluster` creates a
run of the compiled monitoring pipeline through the KFP API, with the arguments `make schedule`
sends. `make alert-receiver` runs it on this machine; manifests/components/alert-receiver on a
cluster (docs/operations.md, "From an alert to a monitoring run").
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import http.server
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from components.core.deploy import MODES
from components.core.lineage import utc_now
from components.core.projects import PROJECTS
from pipelines.kinds import MONITORING
from pipelines.local import STATE_DIR
from pipelines.schedule import schedule_arguments
from pipelines.submit import ArgumentsError, run_account, submit_run

ACTION_ALERTS = (
    "MLOpsPredictionShift",
    "MLOpsPredictionsAwayFromReference",
    "MLOpsLiveQualityDrop",
    "MLOpsMonitoringStale",
)
"""The alerts that call for a monitoring run: what the servers predict moved, the live quality
fell, or the last run is overdue."""
ROLLBACK_ALERTS = ("MLOpsStagedVersionFailing", "MLOpsStagedVersionSlow")
"""The alerts that roll the version staged beside a champion back at once, with no gate: a
canary failing or slow harms clients now (components.core.rollout)."""
LOOPING_ALERTS = ("MLOpsDataDrift", "MLOpsRetrainRecommended")
"""Raised by a monitoring run's own verdict, which has already acted on it: a run started from
them would raise them again."""
PROJECT_LABELS = ("isvc", "project")
"""The labels that name the project: the servers' alerts carry `isvc`, the monitoring runs'
`project`."""
COOLDOWN_S = 6 * 3600
DAILY_BUDGET = 4
DEFAULT_PORT = 9095
ALERTS_PATH = "/alerts"
"""Where Alertmanager posts its webhook payload."""
PAYLOAD_VERSION = "4"
MAX_BODY_BYTES = 1 << 20
"""A payload larger than this is refused (413) before it is read: a few alerts take a few KiB."""
DECISIONS = (
    "started",
    "deduplicated",
    "cooling-down",
    "over-budget",
    "running",
    "ignored",
    "failed",
    "rolled-back",
)
STATE_FILE = "gate.json"
DECISIONS_FILE = "decisions.jsonl"
RUNS_DIR = "runs"
STATE_SCHEMA = "alert-receiver-gate"
STATE_VERSION = 1


class PayloadError(ValueError):
    """A request body that is not Alertmanager's webhook payload; the message names the field."""


class GateStateError(ValueError):
    """A gate state file that cannot be read: the receiver does not start over it."""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# --- The payload ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """One alert of a payload, as the gate reads it."""

    alertname: str
    status: str
    fingerprint: str
    project: str
    """The `isvc` label, else the `project` label, else ""."""
    version: str = ""
    """The `version` label, where the alert names one (a staged version's)."""


def parse_payload(body: bytes) -> list[Notice]:
    """The alerts of Alertmanager's webhook payload; the whole payload is checked before any of
    it is acted on, so a bad one changes nothing."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PayloadError(f"the body is not JSON: {error}") from error
    if not isinstance(payload, dict):
        raise PayloadError(
            f"the body must be a JSON object (Alertmanager's webhook payload), "
            f"got {type(payload).__name__}"
        )
    if "version" not in payload:
        raise PayloadError("the payload has no version (Alertmanager sends version 4)")
    if payload["version"] != PAYLOAD_VERSION:
        raise PayloadError(
            f"payload version {payload['version']!r} is not Alertmanager's webhook version "
            f"{PAYLOAD_VERSION}"
        )
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError(
            "the payload has no alerts list" if alerts is None else "alerts must be a list"
        )
    return [_notice(alert, f"alerts[{i}]") for i, alert in enumerate(alerts)]


def _notice(alert: Any, where: str) -> Notice:
    if not isinstance(alert, dict):
        raise PayloadError(f"{where} must be an object, got {type(alert).__name__}")
    for name in ("status", "labels", "fingerprint"):
        if name not in alert:
            raise PayloadError(f"{where}.{name} is missing")
    status, labels, fingerprint = alert["status"], alert["labels"], alert["fingerprint"]
    if status not in ("firing", "resolved"):
        raise PayloadError(f"{where}.status must be firing or resolved, got {status!r}")
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise PayloadError(f"{where}.labels must be an object of strings")
    if not isinstance(labels.get("alertname"), str) or not labels["alertname"]:
        raise PayloadError(f"{where}.labels.alertname is missing")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise PayloadError(f"{where}.fingerprint must be a non-empty string")
    project = next((labels[name] for name in PROJECT_LABELS if labels.get(name)), "")
    return Notice(labels["alertname"], status, fingerprint, project, labels.get("version", ""))


# --- The gate ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launched:
    """A run a launcher started: its id, and its process when it runs on this machine."""

    run: str
    pid: int | None = None


Launch = Callable[[Notice, datetime], Launched]
"""Starts the notice's project's monitoring run at the given time, or raises."""


@dataclass(frozen=True)
class Decision:
    time: str
    decision: str
    project: str
    alertname: str
    fingerprint: str
    status: str
    reason: str
    run: str | None = None

    def record(self) -> dict[str, Any]:
        """The decision log's line."""
        return {
            "time": self.time,
            "event": "decision",
            "decision": self.decision,
            "project": self.project,
            "alertname": self.alertname,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "reason": self.reason,
            "run": self.run,
        }


@dataclass
class _ProjectState:
    day: str = ""
    starts: int = 0
    last_start: datetime | None = None
    last_run: str | None = None
    fingerprints: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    """Fingerprint -> when it started a run, and which run."""
    in_flight: Launched | None = None
    in_flight_since: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "starts": self.starts,
            "last_start": _iso(self.last_start) if self.last_start else None,
            "last_run": self.last_run,
            "fingerprints": {
                fp: {"time": _iso(when), "run": run}
                for fp, (when, run) in self.fingerprints.items()
            },
            "in_flight": (
                {
                    "run": self.in_flight.run,
                    "pid": self.in_flight.pid,
                    "since": _iso(self.in_flight_since),
                }
                if self.in_flight and self.in_flight_since
                else None
            ),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _ProjectState:
        flight = data.get("in_flight")
        return cls(
            day=str(data["day"]),
            starts=int(data["starts"]),
            last_start=_parse_time(data["last_start"]) if data.get("last_start") else None,
            last_run=data.get("last_run"),
            fingerprints={
                fp: (_parse_time(entry["time"]), str(entry["run"]))
                for fp, entry in data["fingerprints"].items()
            },
            in_flight=Launched(str(flight["run"]), flight.get("pid")) if flight else None,
            in_flight_since=_parse_time(flight["since"]) if flight else None,
        )


class Gate:
    """Decides, alert by alert, whether a project's monitoring run starts, and keeps what it
    decided in `state_file` (rewritten whole after every change, so a restart picks it up).

    Order of the checks, for a firing action alert of a registered project: deduplicated (this
    fingerprint started a run, and the cool-down since has not passed; a resolved notice of it
    forgets it), running (a run is in flight; only when `track_in_flight`), cooling-down (less
    than `cooldown_s` since the project's last start), over-budget (`daily_budget` runs started
    this UTC day), else started. `clock` gives the time, in UTC.
    """

    def __init__(
        self,
        state_file: Path,
        *,
        projects: Collection[str],
        alerts: Collection[str] = ACTION_ALERTS,
        cooldown_s: float = COOLDOWN_S,
        daily_budget: int = DAILY_BUDGET,
        track_in_flight: bool = True,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._path = state_file
        self._projects = frozenset(projects)
        self._alerts = frozenset(alerts)
        self._cooldown = timedelta(seconds=cooldown_s)
        self._budget = daily_budget
        self._track = track_in_flight
        self._clock = clock
        self._lock = threading.Lock()
        self._states, self._kept = self._load()

    def _load(self) -> tuple[dict[str, _ProjectState], dict[str, Any]]:
        if not self._path.exists():
            return {}, {}
        try:
            data = json.loads(self._path.read_text())
            if data.get("schema") != STATE_SCHEMA or data.get("version") != STATE_VERSION:
                raise ValueError(
                    f"expected schema {STATE_SCHEMA} version {STATE_VERSION}, got "
                    f"{data.get('schema')} version {data.get('version')}"
                )
            projects = data["projects"]
            states = {
                p: _ProjectState.from_json(s) for p, s in projects.items() if p in self._projects
            }
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise GateStateError(
                f"cannot read the gate's state {self._path}: {type(error).__name__}: {error}; "
                "move it aside to start with an empty gate"
            ) from error
        # Projects no longer registered keep their entries, untouched.
        kept = {p: s for p, s in projects.items() if p not in self._projects}
        return states, kept

    def _save(self) -> None:
        data = {
            "schema": STATE_SCHEMA,
            "version": STATE_VERSION,
            "projects": self._kept | {p: s.to_json() for p, s in sorted(self._states.items())},
        }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        partial = self._path.with_name(self._path.name + ".partial")
        partial.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(partial, self._path)

    def _state(self, project: str, now: datetime) -> _ProjectState:
        state = self._states.setdefault(project, _ProjectState())
        today = now.date().isoformat()
        if state.day != today:
            state.day, state.starts = today, 0
        state.fingerprints = {
            fp: (when, run)
            for fp, (when, run) in state.fingerprints.items()
            if now < when + self._cooldown
        }
        return state

    def decide(self, notice: Notice, launch: Launch) -> Decision:
        with self._lock:
            now = self._clock()

            def decided(kind: str, reason: str, run: str | None = None) -> Decision:
                return Decision(
                    _iso(now),
                    kind,
                    notice.project,
                    notice.alertname,
                    notice.fingerprint,
                    notice.status,
                    reason,
                    run,
                )

            if notice.alertname not in self._alerts:
                return decided(
                    "ignored",
                    f"{notice.alertname} does not start a monitoring run (acting on "
                    f"{', '.join(sorted(self._alerts))})",
                )
            if not notice.project:
                return decided(
                    "ignored", f"no {' or '.join(PROJECT_LABELS)} label names the project"
                )
            if notice.project not in self._projects:
                return decided(
                    "ignored",
                    f"{notice.project} is not a registered project "
                    f"({', '.join(sorted(self._projects))})",
                )
            state = self._state(notice.project, now)
            if notice.status == "resolved":
                held = state.fingerprints.pop(notice.fingerprint, None)
                if held is None:
                    return decided("ignored", "resolved")
                self._save()
                return decided(
                    "ignored",
                    f"resolved: the alert no longer holds back a run (it started {held[1]})",
                    held[1],
                )
            if notice.fingerprint in state.fingerprints:
                when, run = state.fingerprints[notice.fingerprint]
                return decided(
                    "deduplicated",
                    f"this alert started run {run} at {_iso(when)}; it starts no other until "
                    f"it resolves or the cool-down ends at {_iso(when + self._cooldown)}",
                    run,
                )
            if self._track and state.in_flight is not None:
                since = f" since {_iso(state.in_flight_since)}" if state.in_flight_since else ""
                return decided(
                    "running",
                    f"run {state.in_flight.run} is in flight{since}: one run at a time",
                    state.in_flight.run,
                )
            if state.last_start is not None and now < state.last_start + self._cooldown:
                return decided(
                    "cooling-down",
                    f"run {state.last_run} started at {_iso(state.last_start)}; the next may "
                    f"start at {_iso(state.last_start + self._cooldown)}",
                    state.last_run,
                )
            if state.starts >= self._budget:
                return decided(
                    "over-budget",
                    f"{state.starts} of {self._budget} runs of {state.day} (UTC) started; the "
                    "budget renews at 00:00 UTC",
                )
            try:
                launched = launch(notice, now)
            # Whatever stopped the launch (no process, an unreachable KFP API) is recorded and
            # answered 503: nothing is counted, so Alertmanager's retry may start it.
            except Exception as error:
                return decided(
                    "failed", f"the run could not be started: {type(error).__name__}: {error}"
                )
            state.starts += 1
            state.last_start, state.last_run = now, launched.run
            state.fingerprints[notice.fingerprint] = (now, launched.run)
            if self._track:
                state.in_flight, state.in_flight_since = launched, now
            self._save()
            return decided(
                "started",
                f"{notice.alertname} is firing for {notice.project}: run {launched.run} started "
                f"({state.starts} of {self._budget} today)",
                launched.run,
            )

    def finished(self, project: str, run: str) -> None:
        """The run has ended: the project may start another (cool-down and budget permitting)."""
        with self._lock:
            state = self._states.get(project)
            if state is not None and state.in_flight is not None and state.in_flight.run == run:
                state.in_flight = state.in_flight_since = None
                self._save()

    def in_flight(self) -> dict[str, Launched]:
        """The runs the state holds in flight, by project (after a restart: a previous receiver's)."""
        with self._lock:
            return {p: s.in_flight for p, s in self._states.items() if s.in_flight is not None}


# --- Launchers -----------------------------------------------------------------------------------

Finished = Callable[[str, str, int | None, Path], None]
"""Told when a local run ends: project, run, its exit status (None: unknown), its log."""


class _LocalLauncher:
    """Starts the monitoring run as a process of this machine, with the receiver's environment
    (MLFLOW_TRACKING_URI, MLOPS_INFERENCE_LOG, PUSHGATEWAY reach it), leading a process group
    of its own so that stopping the receiver does not stop a run halfway through a retraining."""

    def __init__(
        self, runs: Path, command: Sequence[str], monitor_args: Sequence[str], on_exit: Finished
    ) -> None:
        self._runs, self._command, self._args = runs, list(command), list(monitor_args)
        self._on_exit = on_exit

    def __call__(self, notice: Notice, now: datetime) -> Launched:
        self._runs.mkdir(parents=True, exist_ok=True)
        stem = f"{notice.project}-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}"
        run, n = stem, 1
        while (self._runs / f"{run}.log").exists():
            n += 1
            run = f"{stem}-{n}"
        log_path = self._runs / f"{run}.log"
        with log_path.open("xb") as log:
            process = subprocess.Popen(
                [*self._command, "--project", notice.project, *self._args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        threading.Thread(
            target=lambda: self._on_exit(notice.project, run, process.wait(), log_path),
            name=f"watch {run}",
            daemon=True,
        ).start()
        return Launched(run, process.pid)

    def follow(self, project: str, launched: Launched, poll_s: float = 2.0) -> None:
        """A run that a previous receiver started: watched by its process id until it is gone.
        Its exit status belongs to the parent that is gone, so it is reported as unknown."""
        log_path = self._runs / f"{launched.run}.log"

        def watch() -> None:
            while launched.pid is not None and _alive(launched.pid):
                time.sleep(poll_s)
            self._on_exit(project, launched.run, None, log_path)

        threading.Thread(target=watch, name=f"follow {launched.run}", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process holds the id
        return True
    return True


class _ClusterLauncher:
    """Creates a run of the project's compiled monitoring pipeline through the KFP API."""

    def __init__(
        self,
        host: str,
        namespace: str | None,
        experiment: str | None,
        service_account: str | None,
        arguments: dict[str, dict[str, Any]],
    ) -> None:
        self._host, self._namespace = host, namespace
        self._experiment, self._account = experiment, service_account
        self._arguments = arguments

    def __call__(self, notice: Notice, now: datetime) -> Launched:
        project = notice.project
        arguments = self._arguments[project]
        name = f"{project}-{MONITORING}"
        run = submit_run(
            self._host,
            self._namespace,
            project,
            MONITORING,
            arguments,
            self._experiment or name,
            run_account(str(arguments.get("deploy_mode", MODES[0])), self._account),
            run_name=f"{name} {now.astimezone(UTC):%Y-%m-%d %H:%M:%S} ({notice.alertname})",
        )
        return Launched(run)


# --- The receiver --------------------------------------------------------------------------------


class DecisionLog:
    """`decisions.jsonl`: one JSON object a line, appended, each also printed to `out`."""

    def __init__(self, path: Path, out: TextIO = sys.stdout) -> None:
        self.path, self._out = path, out
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as log:
                log.write(line + "\n")
            print(line, file=self._out, flush=True)


class _Receiver:
    def __init__(self, gate: Gate, log: DecisionLog, projects: Collection[str]) -> None:
        self._gate, self._log = gate, log
        self._projects = frozenset(projects)
        self.launch: Launch = _no_launcher
        self.roll_back: RollBack = roll_back_staged
        # One at a time: the decisions and the run-finished lines reach the log in the order
        # they happened.
        self._lock = threading.RLock()
        self.registry = CollectorRegistry()
        self._decisions = Counter(
            "mlops_alert_receiver_decisions_total",
            "Alerts the receiver decided on, by project and decision",
            ["project", "decision"],
            registry=self.registry,
        )
        for project in self._projects:
            for decision in DECISIONS:
                self._decisions.labels(project, decision)

    def handle(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            notices = parse_payload(body)
        except PayloadError as error:
            return 400, {"error": str(error)}
        with self._lock:
            decisions = [
                self._roll_back(notice)
                if notice.alertname in ROLLBACK_ALERTS
                else self._gate.decide(notice, self.launch)
                for notice in notices
            ]
            for decision in decisions:
                self._log.write(decision.record())
                project = decision.project if decision.project in self._projects else "unknown"
                self._decisions.labels(project, decision.decision).inc()
        failed = any(d.decision == "failed" for d in decisions)
        return (503 if failed else 200), {"decisions": [d.record() for d in decisions]}

    def _roll_back(self, notice: Notice) -> Decision:
        def decided(decision: str, reason: str) -> Decision:
            return Decision(_iso(utc_now()), decision, notice.project, notice.alertname,
                            notice.fingerprint, notice.status, reason)  # fmt: skip

        if notice.status != "firing":
            return decided("ignored", "resolved: nothing to roll back")
        if notice.project not in self._projects:
            return decided("ignored", f"{notice.project or 'no project'} is not a project here")
        try:
            done = self.roll_back(notice)
        except Exception as error:  # answered 503: Alertmanager sends it again
            return decided("failed", f"could not roll back: {type(error).__name__}: {error}")
        if done is None:
            reason = (
                f"version {notice.version} of {notice.project} is not staged"
                if notice.version
                else f"{notice.project} has no staged version"
            )
            return decided("ignored", reason)
        return decided("rolled-back", done)

    def finished(self, project: str, run: str, returncode: int | None, log: Path) -> None:
        with self._lock:
            self._gate.finished(project, run)
            self._log.write(
                {
                    "time": _iso(utc_now()),
                    "event": "run-finished",
                    "project": project,
                    "run": run,
                    "returncode": returncode,
                    "log": str(log),
                }
            )


RollBack = Callable[[Notice], str | None]
"""Rolls back the notice's project's staged version; what it did, or None when nothing was
staged (or another version is)."""


def roll_back_staged(notice: Notice) -> str | None:
    """Through the registry of MLFLOW_TRACKING_URI (components.core.rollout)."""
    from components.core import rollout

    staged = rollout.current(notice.project)
    if staged is None or (notice.version and notice.version != staged.version):
        return None
    reason = f"rolled back by the alert {notice.alertname} (fingerprint {notice.fingerprint})"
    rollout.stage(notice.project, staged.version, rollout.Stage.ROLLED_BACK, reason=reason)
    return f"rolled back version {staged.version} from {staged.stage}"


def _no_launcher(notice: Notice, now: datetime) -> Launched:
    raise RuntimeError("no launcher configured")


def _handler(receiver: _Receiver, token: str | None) -> type[http.server.BaseHTTPRequestHandler]:
    expected = f"Bearer {token}".encode() if token else b""

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "mlops-alert-receiver"

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/healthz":
                self._send(200, "text/plain; charset=utf-8", b"ok\n")
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(receiver.registry))
            elif path == ALERTS_PATH:
                self._refuse(405, f"POST Alertmanager's webhook payload to {ALERTS_PATH}")
            else:
                self._refuse(
                    404, f"no route {path}: POST {ALERTS_PATH}, GET /healthz, GET /metrics"
                )

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            if path != ALERTS_PATH:
                self._refuse(404, f"no route {path}: POST {ALERTS_PATH}")
                return
            if expected:
                given = self.headers.get("Authorization", "").encode()
                if not hmac.compare_digest(given, expected):
                    self._refuse(401, "a bearer token is required", {"WWW-Authenticate": "Bearer"})
                    return
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._refuse(411, "Content-Length is required")
                return
            if int(length) > MAX_BODY_BYTES:
                self._refuse(413, f"the body is over {MAX_BODY_BYTES} bytes")
                return
            status, answer = receiver.handle(self.rfile.read(int(length)))
            if status == 400:
                self._refuse(400, answer["error"])
                return
            self._send(status, "application/json", json.dumps(answer).encode())

        def _refuse(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
            print(
                f"alert receiver: {status} {self.command} {urlsplit(self.path).path}: {message}",
                file=sys.stderr,
                flush=True,
            )
            body = json.dumps({"error": message}).encode()
            self._send(status, "application/json", body, headers)

        def _send(
            self, status: int, kind: str, body: bytes, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the decisions and refusals are logged already, without the headers

    return Handler


def _alert_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one alert name")
    looping = sorted(set(names) & set(LOOPING_ALERTS))
    if looping:
        raise argparse.ArgumentTypeError(
            f"{', '.join(looping)} come from a monitoring run's own verdict: a run started from "
            "them would raise them again"
        )
    return names


def parser() -> argparse.ArgumentParser:
    """The receiver's command line."""
    cli = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_argument("--host", default="127.0.0.1", help="address to listen on")
    cli.add_argument("--port", type=int, default=DEFAULT_PORT)
    cli.add_argument(
        "--state-dir",
        type=Path,
        default=STATE_DIR / "alert-receiver",
        help=f"the gate's state ({STATE_FILE}), the decision log ({DECISIONS_FILE}) and, in "
        f"local mode, each run's output ({RUNS_DIR}/<project>-<UTC time>.log)",
    )
    cli.add_argument(
        "--token-file",
        default="",
        help="a file holding the bearer token POST /alerts requires (Alertmanager: "
        "http_config.authorization.credentials_file); default: none required",
    )
    cli.add_argument(
        "--alerts",
        type=_alert_names,
        default=ACTION_ALERTS,
        help=f"comma-separated alert names that start a run (default: {','.join(ACTION_ALERTS)})",
    )
    cli.add_argument(
        "--cooldown-s",
        type=float,
        default=COOLDOWN_S,
        help="seconds after a project's run starts during which it starts no other, and an "
        "alert that started a run is deduplicated (default: 6 hours)",
    )
    cli.add_argument(
        "--daily-budget",
        type=int,
        default=DAILY_BUDGET,
        help="runs a project may start per UTC day (0: none)",
    )
    cli.add_argument(
        "--mode",
        choices=("local", "cluster"),
        default="local",
        help="local: python -m pipelines.monitor on this machine; cluster: a KFP run",
    )
    local = cli.add_argument_group("--mode local")
    local.add_argument(
        "--monitor-args",
        default="",
        help="further arguments of python -m pipelines.monitor, e.g. '--retrain 1 --trials 2'",
    )
    # Replaces `python -m pipelines.monitor` (the tests start something cheaper).
    local.add_argument("--command", default="", help=argparse.SUPPRESS)
    cluster = cli.add_argument_group("--mode cluster")
    cluster.add_argument(
        "--kfp-host", default="", help="the KFP API, e.g. http://ml-pipeline.kubeflow:8888"
    )
    cluster.add_argument(
        "--kfp-namespace", default=None, help="the Kubeflow profile namespace of the runs"
    )
    cluster.add_argument(
        "--experiment", default=None, help="KFP experiment (default: <project>-monitoring)"
    )
    cluster.add_argument(
        "--service-account",
        default=None,
        help="the runs' account (default: mlops-deployer when --params sets deploy_mode apply, "
        "else KFP's)",
    )
    cluster.add_argument(
        "--mlflow-tracking-uri",
        default="",
        help="MLflow as the runs' pods reach it (default: $MLFLOW_TRACKING_URI)",
    )
    cluster.add_argument("--pushgateway", default="", help="where the runs push their figures")
    cluster.add_argument(
        "--log-root", default="", help="the inference log's root as the runs' pods see it"
    )
    cluster.add_argument(
        "--params", default="{}", help="further monitoring pipeline parameters as a JSON object"
    )
    return cli


_CLUSTER_ONLY = (
    "kfp_host",
    "kfp_namespace",
    "experiment",
    "service_account",
    "mlflow_tracking_uri",
    "pushgateway",
    "log_root",
)
_LOCAL_ONLY = ("monitor_args", "command")


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if args.cooldown_s < 0 or args.daily_budget < 0:
        cli.error("--cooldown-s and --daily-budget must be 0 or more")
    wrong = _CLUSTER_ONLY if args.mode == "local" else _LOCAL_ONLY
    given = [name for name in wrong if getattr(args, name)]
    if args.mode == "local" and args.params != "{}":
        given.append("params")
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        hint = (
            " (locally the monitor reads MLFLOW_TRACKING_URI, MLOPS_INFERENCE_LOG and PUSHGATEWAY "
            "from the environment, or takes them in --monitor-args)"
            if args.mode == "local"
            else ""
        )
        cli.error(f"{flags}: not for --mode {args.mode}{hint}")
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as error:
            cli.error(f"--token-file: {error}")
        if not token:
            cli.error(f"--token-file {args.token_file} is empty")

    projects = sorted(PROJECTS)
    try:
        gate = Gate(
            args.state_dir / STATE_FILE,
            projects=projects,
            alerts=args.alerts,
            cooldown_s=args.cooldown_s,
            daily_budget=args.daily_budget,
            track_in_flight=args.mode == "local",
        )
    except GateStateError as error:
        cli.error(str(error))
    receiver = _Receiver(gate, DecisionLog(args.state_dir / DECISIONS_FILE), projects)
    if args.mode == "local":
        command = shlex.split(args.command) or [sys.executable, "-m", "pipelines.monitor"]
        local_launcher = _LocalLauncher(
            args.state_dir / RUNS_DIR, command, shlex.split(args.monitor_args), receiver.finished
        )
        receiver.launch = local_launcher
        for project, launched in gate.in_flight().items():
            local_launcher.follow(project, launched)
    else:
        if not args.kfp_host:
            cli.error("--mode cluster needs --kfp-host, the KFP API")
        try:
            arguments = {
                project: schedule_arguments(
                    project, args.mlflow_tracking_uri, args.pushgateway, args.log_root, args.params
                )
                for project in projects
            }
        except ArgumentsError as error:
            cli.error(str(error))
        receiver.launch = _ClusterLauncher(
            args.kfp_host, args.kfp_namespace, args.experiment, args.service_account, arguments
        )

    server = http.server.ThreadingHTTPServer((args.host, args.port), _handler(receiver, token))
    server.daemon_threads = True

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(
        f"alert receiver on http://{args.host}:{server.server_port}{ALERTS_PATH} ({args.mode} "
        "mode): "
        f"acting on {', '.join(args.alerts)} for {', '.join(projects)}; cool-down "
        f"{args.cooldown_s:g} s, {args.daily_budget} runs a UTC day per project, "
        f"token {'required' if token else 'not required'}; state in {args.state_dir}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
