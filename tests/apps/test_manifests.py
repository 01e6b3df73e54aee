"""The dashboard's optional kustomize component (manifests/components/carvision-app), built in the
dev and prod overlays as an overlay that lists it builds it (tests/cluster/with-app): hardened as
the predictors are, wired to the carvision predictor, MLflow and the API token, and let through
the default-deny NetworkPolicies and, in the mesh, the callers' AuthorizationPolicy."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.core import deploy
from tests.cluster.test_cluster_side import ROOT, build, by_kind, tool
from tests.cluster.test_security import assert_hardened, named, run_tool, selects

APP = "carvision-app"
OVERLAYS = ["dev", "prod"]
WITH_APP = ROOT / "tests" / "cluster" / "with-app"


def build_with_app(overlay: str) -> list[dict[str, Any]]:
    built = subprocess.run(
        [tool("kubectl"), "kustomize", str(WITH_APP / overlay)], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict[str, Any]]]:
    return {overlay: build_with_app(overlay) for overlay in OVERLAYS}


def test_the_component_is_optional_and_adds_only_its_own_resources(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    for overlay in OVERLAYS:
        plain = build(overlay)
        assert not [d for d in plain if APP in d["metadata"]["name"]]
        added = {(d["kind"], d["metadata"]["name"]) for d in built[overlay]} - {
            (d["kind"], d["metadata"]["name"]) for d in plain
        }
        assert added == {
            ("ConfigMap", f"{APP}-config"),
            ("ServiceAccount", APP),
            ("Deployment", APP),
            ("Service", APP),
            ("NetworkPolicy", f"{APP}-ingress"),
            ("NetworkPolicy", f"{APP}-egress"),
            ("NetworkPolicy", "carvision-predictor-ingress-app"),
        }
        [namespace] = by_kind(plain, "Namespace")
        for doc in built[overlay]:
            if APP in doc["metadata"]["name"] or doc["kind"] == "NetworkPolicy":
                assert doc["metadata"]["namespace"] == namespace["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_dashboard_pod_is_hardened_as_the_predictors_are(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    deployment = named(built[overlay], "Deployment")[APP]
    pod = deployment["spec"]["template"]["spec"]
    container = assert_hardened(pod, APP)
    account = named(built[overlay], "ServiceAccount")[pod["serviceAccountName"]]
    assert account["automountServiceAccountToken"] is False
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts.values()) == {"/tmp", "/home/serving"}
    assert all(volumes[name]["emptyDir"]["sizeLimit"] for name in mounts)
    env = {e["name"]: e for e in container["env"]}
    assert env["HOME"]["value"] == "/home/serving"
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory", "ephemeral-storage"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/_stcore/health"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_dashboard_runs_the_project_image_against_the_carvision_predictor(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    documents = built[overlay]
    [container] = named(documents, "Deployment")[APP]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == deploy.IMAGE
    assert container["command"] == ["streamlit"]
    script = container["args"][1]
    assert container["args"][0] == "run" and script == "/app/apps/carvision/app.py"
    # the image carries apps/ where the command looks for it
    dockerfile = (ROOT / "serving" / "Dockerfile").read_text()
    assert re.search(r"^COPY apps/ /app/apps/$", dockerfile, re.M)
    assert "!apps/" in (ROOT / ".dockerignore").read_text().splitlines()
    assert (ROOT / script.removeprefix("/app/")).is_file()
    port = container["ports"][0]["containerPort"]
    assert f"--server.port={port}" in container["args"]
    token = {e["name"]: e for e in container["env"]}[deploy.API_TOKEN_ENV]
    assert token["valueFrom"]["secretKeyRef"]["name"] == deploy.API_TOKEN_SECRET
    sources = {s.get("configMapRef", s.get("secretRef", {}))["name"] for s in container["envFrom"]}
    assert {deploy.CONFIG_MAP, f"{APP}-config"} <= sources
    config = named(documents, "ConfigMap")[f"{APP}-config"]["data"]
    assert config["CARVISION_PREDICTOR_URL"] == "http://carvision-predictor"
    service = named(documents, "Service")[APP]
    labels = named(documents, "Deployment")[APP]["spec"]["template"]["metadata"]["labels"]
    assert selects({"matchLabels": service["spec"]["selector"]}, labels)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_the_dashboard_reach_only_what_it_needs(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    documents = built[overlay]
    policies = named(documents, "NetworkPolicy")
    app_labels = named(documents, "Deployment")[APP]["spec"]["template"]["metadata"]["labels"]
    [carvision] = [
        s for s in by_kind(documents, "InferenceService") if s["metadata"]["name"] == "carvision"
    ]
    predictor = carvision["spec"]["predictor"]["labels"]
    egress = policies[f"{APP}-egress"]["spec"]
    assert selects(egress["podSelector"], app_labels)
    assert all(rule.get("to") and rule.get("ports") for rule in egress["egress"])
    # the one peer in the namespace itself: a pod selector alone
    [to_predictor] = [rule for rule in egress["egress"] if set(rule["to"][0]) == {"podSelector"}]
    assert selects(to_predictor["to"][0]["podSelector"], predictor)
    assert to_predictor["ports"] == [{"port": deploy.HTTP_PORT, "protocol": "TCP"}]
    admits = policies["carvision-predictor-ingress-app"]["spec"]
    assert selects(admits["podSelector"], predictor)
    for other in by_kind(documents, "InferenceService"):
        if other is not carvision:
            assert not selects(admits["podSelector"], other["spec"]["predictor"]["labels"])
    [rule] = admits["ingress"]
    assert selects(rule["from"][0]["podSelector"], app_labels)
    viewers = policies[f"{APP}-ingress"]["spec"]
    assert selects(viewers["podSelector"], app_labels)
    assert [p["port"] for r in viewers["ingress"] for p in r["ports"]] == [8501]


def test_in_the_mesh_the_dashboard_may_call_carvision_routes_only(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    assert not by_kind(built["dev"], "AuthorizationPolicy")
    [policy] = by_kind(built["prod"], "AuthorizationPolicy")
    [namespace] = by_kind(built["prod"], "Namespace")
    mine = [
        rule
        for rule in policy["spec"]["rules"]
        for source in rule.get("from", [])
        if any(p.endswith(f"/sa/{APP}") for p in source["source"].get("principals", []))
    ]
    [rule] = mine
    [principal] = rule["from"][0]["source"]["principals"]
    assert principal == f"cluster.local/ns/{namespace['metadata']['name']}/sa/{APP}"
    paths = rule["to"][0]["operation"]["paths"]
    assert paths and all("/models/carvision" in p for p in paths)


def test_every_built_document_with_the_dashboard_matches_its_api_schema(tmp_path: Path) -> None:
    files = []
    for overlay in OVERLAYS:
        path = tmp_path / f"{overlay}-with-app.yaml"
        path.write_text(yaml.safe_dump_all(build_with_app(overlay)))
        files.append(path)
    out = run_tool("validate_schemas.py", *files)
    assert re.search(r"schemas: \d+ passed, 0 failed", out)
