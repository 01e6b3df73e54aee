"""The cluster side, checked offline: generated files are current, the kustomize overlays build
into what the deploy step and the monitoring expect, and promtool's alert unit tests pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.core import deploy
from components.core.projects import PROJECTS
from grafana import alerts, dashboard
from grafana.__main__ import generate

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "grafana" / "alerts" / f"{alerts.GROUP_NAME}.rules.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (`make check-manifests` needs it; see README)")
    return path


def test_generated_monitoring_files_are_current(tmp_path: Path) -> None:
    for fresh in generate(tmp_path):
        checked_in = ROOT / fresh.relative_to(tmp_path)
        assert checked_in.read_text() == fresh.read_text(), f"{checked_in} is stale: make generate"


def test_generated_inference_services_are_current(tmp_path: Path) -> None:
    for fresh in deploy.write_base(tmp_path, list(PROJECTS.values())):
        checked_in = ROOT / "manifests" / "base" / "inferenceservices" / fresh.name
        assert checked_in.read_text() == fresh.read_text(), f"{checked_in} is stale: make generate"


def test_every_alert_says_what_happened_and_how_bad_it_is() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert [rule["alert"] for rule in rules] == [alert.name for alert in alerts.ALERTS]
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        assert "{{ $labels.isvc }}" in rule["annotations"]["summary"]


def test_the_runbook_has_a_section_per_alert() -> None:
    runbook = (ROOT / "docs" / "operations.md").read_text()
    for alert in alerts.ALERTS:
        assert f"### {alert.name}" in runbook


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", str(ROOT / "tests" / "monitoring" / "alerts_test.yml")],
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def build(overlay: str) -> list[dict[str, Any]]:
    built = subprocess.run(
        [tool("kubectl"), "kustomize", str(ROOT / "manifests" / "overlays" / overlay)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


@pytest.mark.parametrize(
    ("overlay", "namespace", "replicas"),
    [("dev", "kubeflow-mlops-dev", (1, 1)), ("prod", "kubeflow-mlops", (2, 6))],
)
def test_an_overlay_serves_every_champion_in_its_namespace(
    overlay: str, namespace: str, replicas: tuple[int, int]
) -> None:
    documents = build(overlay)
    services = {doc["metadata"]["name"]: doc for doc in by_kind(documents, "InferenceService")}
    assert set(services) == set(PROJECTS)
    for name, service in services.items():
        predictor = service["spec"]["predictor"]
        assert service["metadata"]["namespace"] == namespace
        assert f"--model_uri=models:/{name}@champion" in predictor["containers"][0]["args"]
        assert (predictor["minReplicas"], predictor["maxReplicas"]) == replicas
        assert predictor["serviceAccountName"] == deploy.SERVICE_ACCOUNT
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in documents}
    assert ("ServiceAccount", deploy.SERVICE_ACCOUNT) in names
    assert ("ConfigMap", deploy.CONFIG_MAP) in names
    assert ("Namespace", namespace) in names
    role = by_kind(documents, "Role")[0]
    assert role["rules"] == [
        {
            "apiGroups": [deploy.GROUP],
            "resources": [deploy.PLURAL],
            "verbs": ["get", "create", "patch"],
        }
    ]


def test_only_production_carries_the_monitoring_and_it_matches_the_predictors() -> None:
    assert not by_kind(build("dev"), "PodMonitor")
    documents = build("prod")
    [monitor] = by_kind(documents, "PodMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    for service in by_kind(documents, "InferenceService"):
        predictor = service["spec"]["predictor"]
        assert wanted.items() <= predictor["labels"].items()
        port_names = {p["name"] for p in predictor["containers"][0]["ports"]}
        assert endpoint["port"] in port_names
    # The `isvc` label that every alert and panel groups by comes from the project's pod label.
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
        "targetLabel": "isvc",
    } in endpoint["relabelings"]
    [rule] = by_kind(documents, "PrometheusRule")
    assert rule["spec"] == alerts.rule_groups()
    [board] = [
        d
        for d in by_kind(documents, "ConfigMap")
        if d["metadata"]["labels"].get("grafana_dashboard")
    ]
    assert yaml.safe_load(board["data"][f"{dashboard.UID}.json"])["uid"] == dashboard.UID


def test_the_dashboard_has_fixed_ids_and_reads_the_chosen_datasource_and_projects() -> None:
    board = dashboard.dashboard()
    assert board["uid"] == dashboard.UID
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'isvc=~"$isvc"' in target["expr"]
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "isvc"]
