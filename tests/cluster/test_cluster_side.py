"""The cluster side, checked offline: generated files are current, the kustomize overlays build
into what the deploy step and the monitoring expect, and promtool's alert unit tests pass."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.core import deploy
from components.core.projects import PROJECTS
from grafana import alerts, dashboard, promql
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


def annotations(doc: dict[str, Any]) -> dict[str, str]:
    return doc["metadata"].get("annotations", {})  # type: ignore[no-any-return]


def test_generated_inference_services_are_current(tmp_path: Path) -> None:
    for fresh in deploy.write_base(tmp_path, list(PROJECTS.values())):
        checked_in = ROOT / "manifests" / "base" / fresh.relative_to(tmp_path)
        assert checked_in.read_text() == fresh.read_text(), f"{checked_in} is stale: make generate"


def test_every_alert_says_what_happened_and_how_bad_it_is() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    assert [rule["alert"] for rule in rules] == [alert.name for alert in alerts.ALERTS]
    for rule, alert in zip(rules, alerts.ALERTS, strict=True):
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        # Each alert names the project by the label its series carry, and keeps that label.
        assert f"{{{{ $labels.{alert.key} }}}}" in rule["annotations"]["summary"]
        assert alert.key in rule["expr"]


def test_the_quality_alert_knows_which_way_each_metric_is_better() -> None:
    from components.core.metrics import METRICS
    from components.core.projects import PROJECTS

    assert all(METRICS[name].higher_is_better for name in promql.SCORES)
    assert not any(METRICS[name].higher_is_better for name in promql.ERRORS)
    watched = set(promql.SCORES + promql.ERRORS)
    assert {spec.primary_metric for spec in PROJECTS.values()} <= watched


def test_every_alert_has_a_promtool_unit_test_that_raises_it() -> None:
    cases = yaml.safe_load((ROOT / "tests" / "cluster" / "alerts_test.yml").read_text())["tests"]
    raised = {
        case["alertname"]
        for test in cases
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert {alert.name for alert in alerts.ALERTS} <= raised


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
        [promtool, "test", "rules", str(ROOT / "tests" / "cluster" / "alerts_test.yml")],
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
        server = predictor["containers"][0]
        assert server["env"][0] == {"name": "STORAGE_URI", "value": f"models:/{name}@champion"}
        assert annotations(service)["serving.kserve.io/deploymentMode"] == "Standard"
        assert (predictor["minReplicas"], predictor["maxReplicas"]) == replicas
        assert predictor["serviceAccountName"] == deploy.SERVICE_ACCOUNT
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in documents}
    assert ("ServiceAccount", deploy.SERVICE_ACCOUNT) in names
    assert ("ConfigMap", deploy.CONFIG_MAP) in names
    assert ("Namespace", namespace) in names
    # The storage initializer that fetches the champions the services name.
    assert ("ClusterStorageContainer", deploy.STORAGE_CONTAINER) in names
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
    assert not by_kind(build("dev"), "ServiceMonitor")
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
    # The monitoring runs' Pushgateway: scraped keeping the pushed `job` and `project`.
    [gateway] = by_kind(documents, "ServiceMonitor")
    [endpoint] = gateway["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True
    assert endpoint["port"] == "http"
    assert gateway["spec"]["namespaceSelector"] == {"matchNames": ["monitoring"]}
    assert gateway["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "prometheus-pushgateway"
    }
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
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) == len(dashboard.PANELS) + len(dashboard.QUALITY_PANELS) + len(
        dashboard.ROLLOUT_PANELS
    )
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            # The servers' series name the project `isvc`, the pushed ones `project`.
            assert 'isvc=~"$isvc"' in target["expr"] or 'project=~"$isvc"' in target["expr"]
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "isvc"]


def test_the_quality_and_rollout_rows_sit_below_the_serving_panels_without_overlap() -> None:
    board = dashboard.dashboard()
    row, rollout = [p for p in board["panels"] if p["type"] == "row"]
    assert (row["title"], rollout["title"]) == (dashboard.QUALITY_ROW, dashboard.ROLLOUT_ROW)
    rollout_titles = {make()["title"] for make in dashboard.ROLLOUT_PANELS}
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        below = row["gridPos"]["y"] < grid["y"] < rollout["gridPos"]["y"]
        assert below == (panel["title"] in {make()["title"] for make in dashboard.QUALITY_PANELS})
        assert (grid["y"] > rollout["gridPos"]["y"]) == (panel["title"] in rollout_titles)


# --- Terraform ---------------------------------------------------------------------------------
# `terraform init` cannot reach the provider registry here, so `validate` cannot run: these
# check formatting and the conventions that validate would not (typed, described variables).

TERRAFORM = ROOT / "terraform"
MODULE_FILES = {"main.tf", "variables.tf", "outputs.tf", "versions.tf"}
BLOCK = re.compile(r'^(variable|output) "([^"]+)" \{\n(.*?)^\}', re.S | re.M)


def blocks(kind: str, directory: Path) -> dict[str, str]:
    text = "\n".join(p.read_text() for p in sorted(directory.glob("*.tf")))
    return {name: body for k, name, body in BLOCK.findall(text) if k == kind}


def test_terraform_is_formatted() -> None:
    formatted = subprocess.run(
        [tool("terraform"), "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


@pytest.mark.parametrize(
    "directory",
    sorted(p.parent.relative_to(TERRAFORM) for p in TERRAFORM.glob("*/*/main.tf")),
    ids=str,
)
def test_every_terraform_variable_and_output_is_typed_and_described(directory: Path) -> None:
    root = TERRAFORM / directory
    assert {p.name for p in root.glob("*.tf")} >= MODULE_FILES
    variables = blocks("variable", root)
    assert variables
    for name, body in variables.items():
        assert re.search(r"^\s*type\s*=", body, re.M), f"{directory}: variable {name} has no type"
        assert re.search(r'^\s*description\s*=\s*"\S', body, re.M), (
            f"{directory}: variable {name} has no description"
        )
    for name, body in blocks("output", root).items():
        assert re.search(r'^\s*description\s*=\s*"\S', body, re.M), (
            f"{directory}: output {name} has no description"
        )


def test_the_pushgateway_release_makes_the_service_the_service_monitor_scrapes() -> None:
    main = (TERRAFORM / "modules" / "platform" / "main.tf").read_text()
    release = re.search(r'resource "helm_release" "pushgateway" \{\n(.*?)^\}', main, re.S | re.M)
    assert release, "no Pushgateway release in the platform module"
    # The chart names its Service after a release whose name contains the chart's.
    assert re.search(r'^\s*name\s*=\s*"prometheus-pushgateway"', release[1], re.M)
    assert re.search(r'^\s*chart\s*=\s*"prometheus-pushgateway"', release[1], re.M)
    assert re.search(r"^\s*namespace\s*=\s*var\.monitoring_namespace", release[1], re.M)
    default = re.search(
        r'default\s*=\s*"([^"]+)"',
        blocks("variable", TERRAFORM / "modules" / "platform")["monitoring_namespace"],
    )
    monitor = yaml.safe_load(
        (ROOT / "manifests/components/monitoring/pushgateway-service-monitor.yaml").read_text()
    )
    assert default and monitor["spec"]["namespaceSelector"]["matchNames"] == [default[1]]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_each_environment_applies_its_own_overlay_with_its_namespace(env: str) -> None:
    main = (TERRAFORM / "envs" / env / "main.tf").read_text()
    overlay = re.search(r'overlay_path\s*=\s*"\$\{path\.module\}/(.+?)"', main)
    assert overlay, "the serving module is given no overlay"
    path = (TERRAFORM / "envs" / env / overlay[1]).resolve()
    assert path == ROOT / "manifests" / "overlays" / env
    namespace = re.search(r'serving_namespace\s*=\s*"([^"]+)"', main)
    kustomization = yaml.safe_load((path / "kustomization.yaml").read_text())
    assert namespace and namespace[1] == kustomization["namespace"]
    for module in re.findall(r'source\s*=\s*"(\.\./\.\./modules/[^"]+)"', main):
        assert (TERRAFORM / "envs" / env / module / "main.tf").is_file()
    example = (TERRAFORM / "envs" / env / "terraform.tfvars.example").read_text()
    # A sensitive variable comes from the environment (TF_VAR_...), never from the example.
    required = [
        name
        for name, body in blocks("variable", TERRAFORM / "envs" / env).items()
        if "default" not in body and not re.search(r"^\s*sensitive\s*=\s*true", body, re.M)
    ]
    for name in required:
        assert re.search(rf"^{name}\s*=", example, re.M), f"{name} missing from the example"
