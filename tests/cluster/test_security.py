"""Secure by default on the cluster, checked on the built overlays: Pod Security labels,
default-deny NetworkPolicies, the mesh's authentication and authorization of the callers, the
InferenceService admission policy, disruption budgets, the predictors' security context and API
token, least-privilege deploys, and the Terraform's secrets and charts.

The schema validation, the admission policy's CEL and checkov run in their own venv
(`make check-manifests`, tests/cluster/tools.lock); the tests that use it skip without it."""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.core import deploy
from components.core.projects import PROJECTS
from grafana.alertmanager import RECEIVER
from tests.cluster import render, with_canary
from tests.cluster.test_cluster_side import ROOT, TERRAFORM, blocks, build, by_kind, tool

TOOLS_PYTHON = ROOT / ".state" / "tools" / "bin" / "python"
PREDICTOR = {
    "app.kubernetes.io/part-of": deploy.PART_OF,
    "app.kubernetes.io/component": "predictor",
}
OVERLAYS = ["dev", "prod"]


def named(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in by_kind(documents, kind)}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used here"
    return bool(selector.get("matchLabels", {}).items() <= labels.items())


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict[str, Any]]]:
    return {overlay: build(overlay) for overlay in OVERLAYS}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_serving_namespace_enforces_the_restricted_pod_standard(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    [namespace] = by_kind(built[overlay], "Namespace")
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert re.fullmatch(r"v1\.\d+", labels["pod-security.kubernetes.io/enforce-version"])


def restricted_problems(pod: dict[str, Any]) -> list[str]:
    """What the `restricted` Pod Security Standard (Kubernetes 1.30) refuses in a pod spec."""
    problems = []
    context = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(flag)
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral"}
    allowed_volumes |= {"persistentVolumeClaim", "projected", "secret", "name"}
    for volume in pod.get("volumes", []):
        if set(volume) - allowed_volumes:
            problems.append(f"volume {volume['name']} of type {set(volume) - allowed_volumes}")
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        own = container.get("securityContext", {})
        name = container["name"]
        if not own.get("runAsNonRoot", context.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot")
        if own.get("runAsUser", context.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        if own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        if own.get("privileged"):
            problems.append(f"{name}: privileged")
        capabilities = own.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{name}: capabilities not dropped")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities added")
        seccomp = own.get("seccompProfile", context.get("seccompProfile", {}))
        if seccomp.get("type") not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{name}: seccompProfile")
        if container.get("ports") and any(p.get("hostPort") for p in container["ports"]):
            problems.append(f"{name}: hostPort")
    return problems


def assert_hardened(pod: dict[str, Any], name: str) -> dict[str, Any]:
    """The hardening every pod the project deploys has (the predictors', the dashboard's): the
    restricted Pod Security profile, the image's non-root user, no service-account token, and
    its one container read-only with every capability dropped. Returns that container."""
    assert restricted_problems(pod) == [], name
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": deploy.RUN_AS,
        "runAsGroup": deploy.RUN_AS,
        "fsGroup": deploy.RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    return dict(container)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_predictor_pod_passes_the_restricted_standard_as_the_image_user(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    deployments = render.deployments(built[overlay])
    assert {d["metadata"]["name"] for d in deployments} == {f"{p}-predictor" for p in PROJECTS}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        server = assert_hardened(pod, deployment["metadata"]["name"])
        [tmp] = pod["volumes"]
        assert tmp["emptyDir"]["sizeLimit"]
        assert {"name": tmp["name"], "mountPath": "/tmp"} in server["volumeMounts"]
        for bound in ("requests", "limits"):
            assert server["resources"][bound]["ephemeral-storage"]
        # KServe's fields of the component never reach the pod.
        assert not set(pod) & render.COMPONENT_FIELDS


def test_a_canary_pod_and_the_storage_initializer_are_hardened_like_the_predictor() -> None:
    documents = build("prod")
    rolled = [
        with_canary.mid_rollout(d) if d["kind"] == "InferenceService" else d for d in documents
    ]
    deployments = {d["metadata"]["name"]: d for d in render.deployments(rolled)}
    assert set(deployments) == {
        f"{p}-{suffix}predictor" for p in PROJECTS for suffix in ("", "v8-")
    }
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        server = assert_hardened(pod, name)
        canary = name.endswith("-v8-predictor")
        assert ("--serving_stage=canary" in server["args"]) == canary
        stage = deployment["spec"]["template"]["metadata"]["labels"].get(deploy.STAGE_LABEL)
        assert stage == ("canary" if canary else None)
        assert deployment["spec"]["replicas"] == (1 if canary else 2)
    [initializer] = by_kind(documents, "ClusterStorageContainer")
    assert "namespace" not in initializer["metadata"]  # cluster-scoped
    container = initializer["spec"]["container"]
    assert container["securityContext"] == deploy.CONTAINER_SECURITY
    assert container["command"] == ["python", "-m", "serving.fetch"]
    assert initializer["spec"]["supportedUriFormats"] == [{"prefix": "models:/"}]


def test_the_restricted_check_sees_what_it_must_refuse() -> None:
    pod = render.deployments(build("prod"))[0]["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    pod["containers"][0]["securityContext"] = {"capabilities": {"add": ["NET_ADMIN"]}}
    pod["volumes"].append({"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}})
    found = restricted_problems(pod)
    assert "hostNetwork" in found
    assert "kserve-container: allowPrivilegeEscalation" in found
    assert "kserve-container: capabilities added" in found
    assert any(problem.startswith("volume docker") for problem in found)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_predictors_are_cluster_local_and_require_the_api_token(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    for service in by_kind(built[overlay], "InferenceService"):
        assert service["metadata"]["labels"][deploy.VISIBILITY_LABEL] == "cluster-local"
        [server] = service["spec"]["predictor"]["containers"]
        token = {e["name"]: e for e in server["env"]}[deploy.API_TOKEN_ENV]
        assert token["valueFrom"]["secretKeyRef"] == {
            "name": deploy.API_TOKEN_SECRET,
            "key": deploy.API_TOKEN_KEY,
            "optional": False,
        }
    # The operator creates the token's Secret; no manifest carries one.
    assert not by_kind(built[overlay], "Secret")


def policy_selects_predictors(policy: dict[str, Any], services: list[dict[str, Any]]) -> bool:
    return all(
        selects(policy["spec"]["podSelector"], service["spec"]["predictor"]["labels"])
        for service in services
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_allow_only_callers_prometheus_dns_and_mlflow(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    documents = built[overlay]
    # The alert receiver's own policies: tests/cluster/test_alert_receiver_manifests.py.
    policies = {
        name: policy
        for name, policy in named(documents, "NetworkPolicy").items()
        if not name.startswith(f"{RECEIVER}-")
    }
    services = by_kind(documents, "InferenceService")
    deny = policies["mlops-default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for name, policy in policies.items():
        if name != "mlops-default-deny":
            assert policy_selects_predictors(policy, services), name
            assert "ingress" in policy["spec"] or "egress" in policy["spec"]
    ingress = {name: p["spec"]["ingress"] for name, p in policies.items() if "ingress" in p["spec"]}
    assert set(ingress) == {"mlops-serving-ingress-callers", "mlops-serving-ingress-prometheus"}
    for rules in ingress.values():
        # Only the model port, which serves predictions and /metrics.
        assert [port for rule in rules for port in rule["ports"]] == [
            {"port": deploy.HTTP_PORT, "protocol": "TCP"}
        ]
    [callers] = ingress["mlops-serving-ingress-callers"]
    assert callers["from"] == [
        {"namespaceSelector": {"matchLabels": {"mlops.kubeflow.org/model-caller": "true"}}}
    ]
    [prometheus] = ingress["mlops-serving-ingress-prometheus"]
    assert prometheus["from"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
    }
    egress = {name: p["spec"]["egress"] for name, p in policies.items() if "egress" in p["spec"]}
    expected = {"mlops-serving-egress-dns", "mlops-serving-egress-mlflow"}
    if overlay == "prod":
        expected.add("mlops-serving-egress-istiod")
    assert set(egress) == expected
    dns_ports = [p for rule in egress["mlops-serving-egress-dns"] for p in rule["ports"]]
    assert {(p["port"], p["protocol"]) for p in dns_ports} == {(53, "UDP"), (53, "TCP")}
    # Every egress rule names its peers: no rule opens egress to everything.
    for rules in egress.values():
        assert all(rule.get("to") and rule.get("ports") for rule in rules)


def test_the_prometheus_network_policy_admits_the_port_the_pod_monitor_scrapes() -> None:
    documents = build("prod")
    [monitor] = by_kind(documents, "PodMonitor")
    port_name = monitor["spec"]["podMetricsEndpoints"][0]["port"]
    for service in by_kind(documents, "InferenceService"):
        ports = {
            p["name"]: p["containerPort"]
            for p in service["spec"]["predictor"]["containers"][0]["ports"]
        }
        assert ports[port_name] == deploy.HTTP_PORT
    policy = named(documents, "NetworkPolicy")["mlops-serving-ingress-prometheus"]
    assert policy["spec"]["ingress"][0]["ports"][0]["port"] == ports[port_name]


def test_production_authenticates_and_authorizes_callers_in_the_mesh(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    documents = built["prod"]
    services = by_kind(documents, "InferenceService")
    [namespace] = by_kind(documents, "Namespace")
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"
    [authn] = by_kind(documents, "RequestAuthentication")
    [authz] = by_kind(documents, "AuthorizationPolicy")
    for policy in (authn, authz):
        assert policy["apiVersion"] == "security.istio.io/v1"
        for service in services:
            assert selects(policy["spec"]["selector"], service["spec"]["predictor"]["labels"])
    [rule] = authn["spec"]["jwtRules"]
    # The JWT has its own header: Authorization stays the server's bearer token.
    assert rule["fromHeaders"] == [{"name": "x-jwt-assertion"}]
    assert rule["issuer"].startswith("https://") and rule["jwksUri"].startswith("https://")
    assert authz["spec"]["action"] == "ALLOW"
    principals = [
        principal
        for r in authz["spec"]["rules"]
        for source in r.get("from", [])
        for principal in source["source"].get("principals", [])
    ]
    assert principals and all(
        re.fullmatch(r"cluster\.local/ns/[^/]+/sa/[^/]+", p) for p in principals
    )
    request_principals = [
        principal
        for r in authz["spec"]["rules"]
        for source in r.get("from", [])
        for principal in source["source"].get("requestPrincipals", [])
    ]
    assert request_principals == [f"{rule['issuer']}/*"]
    # The only rule without a caller identity is Prometheus reading /metrics.
    anonymous = [r for r in authz["spec"]["rules"] if "from" not in r]
    assert anonymous == [{"to": [{"operation": {"methods": ["GET"], "paths": ["/metrics"]}}]}]
    assert not by_kind(built["dev"], "AuthorizationPolicy")


def test_production_keeps_serving_through_a_drain(built: dict[str, list[dict[str, Any]]]) -> None:
    documents = built["prod"]
    budgets = by_kind(documents, "PodDisruptionBudget")
    for service in by_kind(documents, "InferenceService"):
        predictor = service["spec"]["predictor"]
        [budget] = [b for b in budgets if selects(b["spec"]["selector"], predictor["labels"])]
        assert budget["spec"]["maxUnavailable"] < predictor["minReplicas"]
    assert len(budgets) == len(PROJECTS)
    assert not by_kind(built["dev"], "PodDisruptionBudget")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_admission_policy_guards_the_serving_namespace(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    documents = built[overlay]
    [policy] = by_kind(documents, "ValidatingAdmissionPolicy")
    [binding] = by_kind(documents, "ValidatingAdmissionPolicyBinding")
    for doc in (policy, binding):
        assert doc["apiVersion"] == "admissionregistration.k8s.io/v1"
        # Cluster-scoped: the overlay's namespace must not be written into them.
        assert "namespace" not in doc["metadata"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    [rule] = policy["spec"]["matchConstraints"]["resourceRules"]
    assert (rule["apiGroups"], rule["resources"]) == ([deploy.GROUP], [deploy.PLURAL])
    assert set(rule["operations"]) == {"CREATE", "UPDATE"}
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    [namespace] = by_kind(documents, "Namespace")
    assert selects(
        binding["spec"]["matchResources"]["namespaceSelector"], namespace["metadata"]["labels"]
    )
    params = named(documents, "ConfigMap")[binding["spec"]["paramRef"]["name"]]
    assert binding["spec"]["paramRef"]["parameterNotFoundAction"] == "Deny"
    assert params["data"]["serviceAccount"] == deploy.SERVICE_ACCOUNT
    repository = params["data"]["imageRepository"]
    for service in by_kind(documents, "InferenceService"):
        assert service["spec"]["predictor"]["containers"][0]["image"].startswith(repository + ":")
    assert deploy.IMAGE.startswith(repository + ":")


def tools_python() -> Path:
    if not TOOLS_PYTHON.is_file():
        pytest.skip("the cluster checks' venv is missing: `make check-manifests` installs it")
    return TOOLS_PYTHON


def run_tool(script: str, *paths: Path) -> str:
    done = subprocess.run(
        [str(tools_python()), str(ROOT / "tests" / "cluster" / script), *map(str, paths)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_admission_policy_cel_admits_the_services_and_refuses_each_breach(
    tmp_path: Path, overlay: str
) -> None:
    tools_python()
    built = tmp_path / "built.yaml"
    built.write_text(
        subprocess.run(
            [tool("kubectl"), "kustomize", str(ROOT / "manifests" / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    out = run_tool("admission_cel.py", built)
    assert re.search(r"admission policy CEL: \d+ passed, 0 failed", out)
    # Mid-rollout: the canaries are admitted, and held to the same rules.
    with_canary_of(built, tmp_path / "canary.yaml")
    out = run_tool("admission_cel.py", tmp_path / "canary.yaml")
    assert re.search(r"admission policy CEL: \d+ passed, 0 failed", out)


def test_every_built_document_matches_its_api_schema(tmp_path: Path) -> None:
    tools_python()
    files = []
    for name, directory in [
        ("dev", "overlays/dev"),
        ("prod", "overlays/prod"),
        ("deployer", "deployer"),
    ]:
        path = tmp_path / f"{name}.yaml"
        text = subprocess.run(
            [tool("kubectl"), "kustomize", str(ROOT / "manifests" / directory)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        path.write_text(text)
        files.append(path)
        if name == "prod":  # and once mid-rollout, each service with a canary
            text = with_canary_of(path, tmp_path / "canary.yaml")
            files.append(tmp_path / "canary.yaml")
        predictors = render.deployments([d for d in yaml.safe_load_all(text) if d])
        if predictors:
            (tmp_path / f"{name}-predictors.yaml").write_text(yaml.safe_dump_all(predictors))
            files.append(tmp_path / f"{name}-predictors.yaml")
    out = run_tool("validate_schemas.py", *files)
    assert re.search(r"schemas: \d+ passed, 0 failed", out)


def with_canary_of(built: Path, out: Path) -> str:
    """`built` with every InferenceService mid-rollout (tests/cluster/with_canary.py)."""
    text = yaml.safe_dump_all(
        [
            with_canary.mid_rollout(d) if d.get("kind") == "InferenceService" else d
            for d in yaml.safe_load_all(built.read_text())
            if d
        ],
        sort_keys=False,
    )
    out.write_text(text)
    return text


def test_the_canary_schema_refuses_what_kserve_would(tmp_path: Path) -> None:
    """spec.canary is closed and typed as KServe 0.21 has it: a misspelt share or a share that
    is not a number is refused, as the API server would."""
    service = deploy.inference_service(
        PROJECTS["telecom"],
        "models:/telecom/7",
        deploy.Target(),
        canary=deploy.Canary.of_share("models:/telecom/8", 0.1),
    )
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(service))
    run_tool("validate_schemas.py", good)
    for name, change in {
        "misspelt": lambda c: c.__setitem__("trafficPercnt", c.pop("trafficPercent")),
        "text": lambda c: c.__setitem__("trafficPercent", "ten"),
        "no predictor": lambda c: c.pop("predictor"),
    }.items():
        broken = yaml.safe_load(yaml.safe_dump(service))
        change(broken["spec"]["canary"][0])
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(broken))
        done = subprocess.run(
            [str(tools_python()), str(ROOT / "tests/cluster/validate_schemas.py"), str(path)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 1 and "spec/canary/0" in done.stdout, (name, done.stdout)


def test_the_vendored_schemas_name_their_sources() -> None:
    schemas = ROOT / "tests" / "cluster" / "schemas"
    sources = yaml.safe_load((schemas / "SOURCES.json").read_text())
    # One KServe release throughout: the SDK the project pins, the schemas, the Terraform default.
    assert sources["kserve"] == version("kserve")
    variables = blocks("variable", TERRAFORM / "modules" / "platform")
    assert f'default     = "v{sources["kserve"]}"' in variables["kserve_version"]
    for kind in (
        "InferenceService",
        "ClusterStorageContainer",
        "PodMonitor",
        "PrometheusRule",
        "AlertmanagerConfig",
        "AuthorizationPolicy",
    ):
        assert list(schemas.glob(f"*_{kind}.json")), kind


# --- Least privilege for deploys ---------------------------------------------------------------


def test_only_the_dedicated_deployer_account_may_change_inference_services(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    deployer = build_directory("deployer")
    [account] = by_kind(deployer, "ServiceAccount")
    for overlay in OVERLAYS:
        [binding] = by_kind(built[overlay], "RoleBinding")
        assert binding["roleRef"]["name"] == "mlops-deployer"
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": account["metadata"]["name"],
                "namespace": account["metadata"]["namespace"],
            }
        ]
    # In its own namespace the account gets what a run needs there, and no InferenceService.
    role = named(deployer, "Role")["mlops-pipeline-run"]
    assert all(deploy.GROUP not in rule["apiGroups"] for rule in role["rules"])
    assert all("*" not in rule["verbs"] + rule["resources"] for rule in role["rules"])
    assert not any(
        "pods/exec" in rule["resources"]
        or ("create" in rule["verbs"] and "pods" in rule["resources"])
        for rule in role["rules"]
    )


def build_directory(directory: str) -> list[dict[str, Any]]:
    built = subprocess.run(
        [tool("kubectl"), "kustomize", str(ROOT / "manifests" / directory)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


# --- Terraform -----------------------------------------------------------------------------------

PLATFORM = TERRAFORM / "modules" / "platform" / "main.tf"


def releases() -> dict[str, str]:
    text = PLATFORM.read_text()
    return dict(re.findall(r'^resource "helm_release" "(\w+)" \{\n(.*?)^\}', text, re.S | re.M))


def test_kserve_is_installed_from_the_charts_its_release_publishes() -> None:
    charts = {
        name: re.search(r'^\s*chart\s*=\s*"([^"]+)"', body, re.M)[1]  # type: ignore[index]
        for name, body in releases().items()
    }
    assert charts["kserve_crd"] == "kserve-crd"
    assert charts["kserve"] == "kserve-resources"


def test_no_secret_goes_through_helm_values_and_none_is_in_an_example() -> None:
    for name, body in releases().items():
        outside = re.sub(r"set_sensitive \{.*?\n  \}", "", body, flags=re.S)
        assert not re.search(r"(?i)password|token", outside), name
    assert "set_sensitive" in releases()["kube_prometheus_stack"]
    for example in TERRAFORM.glob("envs/*/*.example"):
        text = example.read_text()
        assert not re.search(r"(?im)^\s*\w*(password|token|secret)\w*\s*=", text), example


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_sensitive_variables_come_from_the_environment(env: str) -> None:
    variables = blocks("variable", TERRAFORM / "envs" / env)
    example = (TERRAFORM / "envs" / env / "terraform.tfvars.example").read_text()
    for name, body in variables.items():
        if re.search(r"^\s*sensitive\s*=\s*true", body, re.M):
            assert f"TF_VAR_{name}" in example
            assert not re.search(rf"^{name}\s*=", example, re.M)


def test_terraform_state_plans_and_site_settings_stay_out_of_git() -> None:
    for path in [
        "terraform/envs/prod/terraform.tfstate",
        "terraform/envs/prod/terraform.tfstate.backup",
        "terraform/envs/prod/.terraform/providers",
        "terraform/envs/prod/terraform.tfvars",
        "terraform/envs/prod/backend.hcl",
        "crash.log",
    ]:
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path
    for path in [
        "terraform/envs/prod/terraform.tfvars.example",
        "terraform/envs/prod/backend.hcl.example",
    ]:
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 1, path
    assert re.search(
        r'^\s*backend "s3" \{\}', (TERRAFORM / "envs/prod/versions.tf").read_text(), re.M
    )


def test_production_reaches_mlflow_over_tls() -> None:
    variables = blocks("variable", TERRAFORM / "envs" / "prod")
    assert 'startswith(var.mlflow_tracking_uri, "https://")' in variables["mlflow_tracking_uri"]
    for example in TERRAFORM.glob("envs/*/terraform.tfvars.example"):
        assert re.search(r'^mlflow_tracking_uri\s*=\s*"https://', example.read_text(), re.M)
    config = yaml.safe_load((ROOT / "manifests" / "base" / "serving-config.yaml").read_text())
    assert config["data"]["MLFLOW_TRACKING_URI"].startswith("https://")
