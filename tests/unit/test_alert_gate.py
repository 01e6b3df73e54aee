"""The alert receiver's gate, on a clock the tests move: an alert that started a run is
deduplicated until it resolves or the cool-down passes; a project cools down after a start, has a
budget per UTC day and one run in flight; what it decided survives a new instance; alerts that
are resolved, of another kind or of no registered project start nothing. And the payload parser
names what is wrong with a payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from components.core.projects import PROJECTS
from grafana import alerts
from pipelines import alert_receiver
from pipelines.alert_receiver import Gate, GateStateError, Launched, Notice, parse_payload

START = datetime(2026, 3, 14, 22, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


class Launcher:
    """Records each launch and names its run; `fail` makes the next launch raise."""

    def __init__(self) -> None:
        self.launched: list[tuple[str, datetime]] = []
        self.fail: Exception | None = None

    def __call__(self, notice: Notice, now: datetime) -> Launched:
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        self.launched.append((notice.project, now))
        return Launched(f"{notice.project}-run-{len(self.launched)}", pid=None)


def firing(fingerprint: str = "fp-1", project: str = "telecom", **kwargs: str) -> Notice:
    fields = {"alertname": "MLOpsPredictionShift", "status": "firing"} | kwargs
    return Notice(fields["alertname"], fields["status"], fingerprint, project)


def resolved(fingerprint: str = "fp-1", project: str = "telecom") -> Notice:
    return firing(fingerprint, project, status="resolved")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def launcher() -> Launcher:
    return Launcher()


def make_gate(path: Path, clock: Clock, **kwargs: object) -> Gate:
    return Gate(path / "gate.json", projects=sorted(PROJECTS), clock=clock, **kwargs)  # type: ignore[arg-type]


def test_the_same_firing_alert_starts_one_run_until_it_resolves(
    tmp_path: Path, clock: Clock, launcher: Launcher
) -> None:
    gate = make_gate(tmp_path, clock)
    first = gate.decide(firing(), launcher)
    assert (first.decision, first.run) == ("started", "telecom-run-1")
    gate.finished("telecom", "telecom-run-1")
    # Alertmanager sends the group again at each repeat_interval while it fires.
    for _ in range(3):
        clock.advance(HOUR)
        repeat = gate.decide(firing(), launcher)
        assert (repeat.decision, repeat.run) == ("deduplicated", "telecom-run-1")
        assert "until it resolves or the cool-down ends at 2026-03-15T04:00:00Z" in repeat.reason
    gone = gate.decide(resolved(), launcher)
    assert (gone.decision, gone.run) == ("ignored", "telecom-run-1")
    assert gone.reason.startswith("resolved")
    # Firing again after it resolved, it is a new occurrence: the project's cool-down holds it.
    again = gate.decide(firing(), launcher)
    assert again.decision == "cooling-down"
    assert "the next may start at 2026-03-15T04:00:00Z" in again.reason
    assert len(launcher.launched) == 1


def test_a_fingerprint_holds_back_only_for_the_cool_down(
    tmp_path: Path, clock: Clock, launcher: Launcher
) -> None:
    gate = make_gate(tmp_path, clock, cooldown_s=6 * 3600)
    gate.decide(firing(), launcher)
    gate.finished("telecom", "telecom-run-1")
    clock.advance(6 * HOUR - timedelta(seconds=1))
    assert gate.decide(firing(), launcher).decision == "deduplicated"
    clock.advance(timedelta(seconds=1))
    # Still firing six hours on: the problem outlived the run, so another may start.
    later = gate.decide(firing(), launcher)
    assert (later.decision, later.run) == ("started", "telecom-run-2")


def test_the_cool_down_is_per_project(tmp_path: Path, clock: Clock, launcher: Launcher) -> None:
    gate = make_gate(tmp_path, clock, cooldown_s=3600)
    assert gate.decide(firing("a"), launcher).decision == "started"
    gate.finished("telecom", "telecom-run-1")
    clock.advance(HOUR - timedelta(seconds=1))
    other_alert = gate.decide(firing("b", alertname="MLOpsLiveQualityDrop"), launcher)
    assert (other_alert.decision, other_alert.run) == ("cooling-down", "telecom-run-1")
    assert gate.decide(firing("c", project="bankchurn"), launcher).decision == "started"
    clock.advance(timedelta(seconds=1))
    assert gate.decide(firing("b"), launcher).decision == "started"
    assert [project for project, _ in launcher.launched] == ["telecom", "bankchurn", "telecom"]


def test_the_daily_budget_renews_at_utc_midnight(
    tmp_path: Path, clock: Clock, launcher: Launcher
) -> None:
    gate = make_gate(tmp_path, clock, cooldown_s=0, daily_budget=2)
    for n, fingerprint in enumerate(("a", "b"), start=1):
        assert gate.decide(firing(fingerprint), launcher).decision == "started"
        gate.finished("telecom", f"telecom-run-{n}")
        clock.advance(HOUR)
    clock.now = datetime(2026, 3, 14, 23, 59, 59, 999999, tzinfo=UTC)
    over = gate.decide(firing("c"), launcher)
    assert over.decision == "over-budget"
    assert over.reason == (
        "2 of 2 runs of 2026-03-14 (UTC) started; the budget renews at 00:00 UTC"
    )
    # Another project has a budget of its own.
    assert gate.decide(firing("d", project="carvision"), launcher).decision == "started"
    clock.now = datetime(2026, 3, 15, 0, 0, tzinfo=UTC)
    assert gate.decide(firing("c"), launcher).decision == "started"
    assert len(launcher.launched) == 4


def test_a_budget_of_zero_starts_nothing(tmp_path: Path, clock: Clock, launcher: Launcher) -> None:
    gate = make_gate(tmp_path, clock, daily_budget=0)
    assert gate.decide(firing(), launcher).decision == "over-budget"
    assert launcher.launched == []


def test_one_run_in_flight_per_project(tmp_path: Path, clock: Clock, launcher: Launcher) -> None:
    gate = make_gate(tmp_path, clock, cooldown_s=0)
    gate.decide(firing("a"), launcher)
    clock.advance(HOUR)
    busy = gate.decide(firing("b"), launcher)
    assert (busy.decision, busy.run) == ("running", "telecom-run-1")
    assert "in flight since 2026-03-14T22:00:00Z" in busy.reason
    assert gate.in_flight() == {"telecom": Launched("telecom-run-1")}
    gate.finished("telecom", "an-older-run")  # not the one in flight: nothing changes
    assert gate.decide(firing("b"), launcher).decision == "running"
    gate.finished("telecom", "telecom-run-1")
    assert gate.decide(firing("b"), launcher).decision == "started"


def test_without_watching_runs_only_cool_down_and_budget_hold(
    tmp_path: Path, clock: Clock, launcher: Launcher
) -> None:
    """Cluster mode: a KFP run is not watched, so nothing is ever in flight."""
    gate = make_gate(tmp_path, clock, cooldown_s=0, track_in_flight=False)
    assert [gate.decide(firing(fp), launcher).decision for fp in "abcde"] == [
        "started",
        "started",
        "started",
        "started",
        "over-budget",
    ]
    assert gate.in_flight() == {}


def test_a_new_gate_reads_what_the_last_one_decided(tmp_path: Path, launcher: Launcher) -> None:
    clock = Clock(datetime(2026, 3, 14, 10, 0, tzinfo=UTC))
    settings = {"cooldown_s": 3600, "daily_budget": 2}
    make_gate(tmp_path, clock, **settings).decide(firing("a"), launcher)
    restarted = make_gate(tmp_path, clock, **settings)
    assert restarted.decide(firing("a"), launcher).decision == "deduplicated"
    assert restarted.decide(firing("b"), launcher).decision == "running"
    assert restarted.in_flight() == {"telecom": Launched("telecom-run-1")}
    restarted.finished("telecom", "telecom-run-1")
    assert make_gate(tmp_path, clock, **settings).decide(firing("b"), launcher).decision == (
        "cooling-down"
    )
    clock.advance(HOUR)
    again = make_gate(tmp_path, clock, **settings)
    assert again.in_flight() == {}
    assert again.decide(firing("b"), launcher).decision == "started"
    again.finished("telecom", "telecom-run-2")
    clock.advance(HOUR)
    assert make_gate(tmp_path, clock, **settings).decide(firing("c"), launcher).decision == (
        "over-budget"
    )
    assert len(launcher.launched) == 2


def test_a_restarted_gate_keeps_projects_it_no_longer_knows(
    tmp_path: Path, clock: Clock, launcher: Launcher
) -> None:
    make_gate(tmp_path, clock).decide(firing(project="carvision"), launcher)
    narrower = Gate(tmp_path / "gate.json", projects=["telecom"], clock=clock)
    narrower.decide(firing(), launcher)
    saved = json.loads((tmp_path / "gate.json").read_text())["projects"]
    assert set(saved) == {"carvision", "telecom"}
    assert saved["carvision"]["last_run"] == "carvision-run-1"


@pytest.mark.parametrize(
    ("notice", "reason"),
    [
        (
            firing(alertname="MLOpsDataDrift"),
            "MLOpsDataDrift does not start a monitoring run (acting on MLOpsLiveQualityDrop, "
            "MLOpsMonitoringStale, MLOpsPredictionShift, MLOpsPredictionsAwayFromReference)",
        ),
        (firing(alertname="MLOpsRetrainRecommended"), "does not start a monitoring run"),
        (firing(alertname="MLOpsModelServerDown"), "does not start a monitoring run"),
        (firing(project=""), "no isvc or project label names the project"),
        (
            firing(project="fourth"),
            "fourth is not a registered project (bankchurn, carvision, telecom)",
        ),
        (resolved(), "resolved"),
    ],
    ids=["drift", "retrain", "server-down", "no-project", "unknown-project", "resolved"],
)
def test_alerts_that_call_for_no_run_are_ignored(
    tmp_path: Path, clock: Clock, launcher: Launcher, notice: Notice, reason: str
) -> None:
    gate = make_gate(tmp_path, clock)
    decision = gate.decide(notice, launcher)
    assert decision.decision == "ignored"
    assert reason in decision.reason
    assert launcher.launched == []
    assert not (tmp_path / "gate.json").exists()


def test_a_monitoring_run_alert_names_its_project_by_the_project_label(
    tmp_path: Path, clock: Clock, launcher: Launcher
) -> None:
    body = payload(
        alert({"alertname": "MLOpsMonitoringStale", "project": "bankchurn", "severity": "warning"})
    )
    [notice] = parse_payload(body)
    assert notice.project == "bankchurn"
    assert make_gate(tmp_path, clock).decide(notice, launcher).decision == "started"


def test_a_failed_launch_counts_nothing_and_the_next_try_starts(
    tmp_path: Path, clock: Clock, launcher: Launcher
) -> None:
    gate = make_gate(tmp_path, clock)
    launcher.fail = ConnectionError("KFP API unreachable")
    failed = gate.decide(firing(), launcher)
    assert failed.decision == "failed"
    assert failed.reason == ("the run could not be started: ConnectionError: KFP API unreachable")
    assert gate.in_flight() == {}
    assert gate.decide(firing(), launcher).decision == "started"


def test_an_unreadable_state_file_stops_the_gate_naming_it(tmp_path: Path, clock: Clock) -> None:
    (tmp_path / "gate.json").write_text('{"schema": "alert-receiver-gate", "version": 1, ')
    with pytest.raises(GateStateError, match=r"cannot read the gate's state .*gate\.json"):
        make_gate(tmp_path, clock)
    (tmp_path / "gate.json").write_text('{"schema": "something-else", "version": 1}')
    with pytest.raises(GateStateError, match="expected schema alert-receiver-gate version 1"):
        make_gate(tmp_path, clock)


def test_every_decision_is_one_of_the_named_kinds(
    tmp_path: Path, clock: Clock, launcher: Launcher
) -> None:
    gate = make_gate(tmp_path, clock)
    record = gate.decide(firing(), launcher).record()
    assert record == {
        "time": "2026-03-14T22:00:00Z",
        "event": "decision",
        "decision": "started",
        "project": "telecom",
        "alertname": "MLOpsPredictionShift",
        "fingerprint": "fp-1",
        "status": "firing",
        "reason": "MLOpsPredictionShift is firing for telecom: run telecom-run-1 started "
        "(1 of 4 today)",
        "run": "telecom-run-1",
    }
    assert record["decision"] in alert_receiver.DECISIONS


# --- The payload ---------------------------------------------------------------------------------


def alert(labels: dict[str, str], status: str = "firing", fingerprint: str = "f1") -> dict:
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "..."},
        "startsAt": "2026-03-14T21:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint,
    }


def payload(*alerts_: dict, version: str = "4") -> bytes:
    return json.dumps(
        {
            "version": version,
            "groupKey": '{}:{alertname="MLOpsPredictionShift"}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "mlops-alert-receiver",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": list(alerts_),
        }
    ).encode()


def test_a_payload_gives_one_notice_per_alert_with_isvc_first() -> None:
    notices = parse_payload(
        payload(
            alert({"alertname": "MLOpsPredictionShift", "isvc": "telecom"}),
            alert(
                {"alertname": "MLOpsLiveQualityDrop", "project": "carvision", "isvc": "telecom"},
                status="resolved",
                fingerprint="f2",
            ),
            alert({"alertname": "MLOpsMonitoringStale"}, fingerprint="f3"),
        )
    )
    assert notices == [
        Notice("MLOpsPredictionShift", "firing", "f1", "telecom"),
        Notice("MLOpsLiveQualityDrop", "resolved", "f2", "telecom"),
        Notice("MLOpsMonitoringStale", "firing", "f3", ""),
    ]


GOOD = alert({"alertname": "MLOpsPredictionShift", "isvc": "telecom"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "the body is not JSON: Expecting property name"),
        (b"\xff\xfe", "the body is not JSON"),
        (b"[]", "the body must be a JSON object (Alertmanager's webhook payload), got list"),
        (json.dumps({"alerts": []}).encode(), "the payload has no version"),
        (payload(GOOD, version="3"), "payload version '3' is not Alertmanager's webhook version 4"),
        (json.dumps({"version": "4"}).encode(), "the payload has no alerts list"),
        (json.dumps({"version": "4", "alerts": {}}).encode(), "alerts must be a list"),
        (payload(GOOD, "x"), "alerts[1] must be an object, got str"),  # type: ignore[arg-type]
        (
            payload({k: v for k, v in GOOD.items() if k != "fingerprint"}),
            "alerts[0].fingerprint is missing",
        ),
        (payload({k: v for k, v in GOOD.items() if k != "status"}), "alerts[0].status is missing"),
        (payload(GOOD | {"status": "pending"}), "alerts[0].status must be firing or resolved"),
        (payload(GOOD | {"labels": {"isvc": "telecom"}}), "alerts[0].labels.alertname is missing"),
        (
            payload(GOOD | {"labels": {"alertname": 1}}),
            "alerts[0].labels must be an object of strings",
        ),
        (payload(GOOD | {"fingerprint": ""}), "alerts[0].fingerprint must be a non-empty string"),
    ],
)
def test_a_bad_payload_is_refused_naming_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(alert_receiver.PayloadError) as refused:
        parse_payload(body)
    assert message in str(refused.value)


# --- Which alerts act ---------------------------------------------------------------------------


def test_the_action_alerts_are_rules_that_exist_and_name_their_project() -> None:
    rules = {alert.name: alert for alert in alerts.ALERTS}
    for name in alert_receiver.ACTION_ALERTS + alert_receiver.LOOPING_ALERTS:
        assert name in rules, name
    for name in alert_receiver.ACTION_ALERTS:
        assert rules[name].key in alert_receiver.PROJECT_LABELS
    assert not set(alert_receiver.ACTION_ALERTS) & set(alert_receiver.LOOPING_ALERTS)


def test_the_receiver_refuses_to_act_on_a_monitoring_runs_own_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        alert_receiver.main(["--alerts", "MLOpsPredictionShift,MLOpsDataDrift"])
    assert stopped.value.code == 2
    assert "MLOpsDataDrift come from a monitoring run's own verdict" in capsys.readouterr().err
