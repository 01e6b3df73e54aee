"""The alert receiver's kustomize component (manifests/components/alert-receiver) in the prod
overlay: hardened as the predictors are, running the receiver in cluster mode with arguments it
accepts, its token from a Secret no manifest holds, reachable by the Alertmanager alone, which the
AlertmanagerConfig points at it; its account may start runs in the profile namespace and do
nothing else; and the platform's Alertmanager applies the route to alerts of any namespace."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components.core import deploy
from grafana import alertmanager
from pipelines import alert_receiver, schedule
from tests.cluster.test_cluster_side import ROOT, TERRAFORM, build, by_kind
from tests.cluster.test_security import assert_hardened, build_directory, named, selects

NAME = alertmanager.RECEIVER


@pytest.fixture(scope="module")
def prod() -> list[dict[str, Any]]:
    return build("prod")


def receiver_pod(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(named(documents, "Deployment")[NAME]["spec"]["template"])


def flags(container: dict[str, Any]) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in container["args"])


def test_only_production_runs_the_receiver(prod: list[dict[str, Any]]) -> None:
    assert not [d for d in build("dev") if NAME in d["metadata"]["name"]]
    ours = {(d["kind"], d["metadata"]["name"]) for d in prod if NAME in d["metadata"]["name"]}
    assert ours == {
        ("ServiceAccount", NAME),
        ("PersistentVolumeClaim", f"{NAME}-state"),
        ("Deployment", NAME),
        ("Service", NAME),
        ("NetworkPolicy", f"{NAME}-ingress"),
        ("NetworkPolicy", f"{NAME}-egress"),
        ("AlertmanagerConfig", NAME),
    }
    [namespace] = by_kind(prod, "Namespace")
    for doc in prod:
        if NAME in doc["metadata"]["name"]:
            assert doc["metadata"]["namespace"] == namespace["metadata"]["name"]
    # The operator creates the token's Secret; no manifest carries one.
    assert not by_kind(prod, "Secret")


def test_the_receiver_pod_is_hardened_and_keeps_its_gate_on_a_volume(
    prod: list[dict[str, Any]],
) -> None:
    deployment = named(prod, "Deployment")[NAME]
    # One gate: one replica, the old pod gone before the new one mounts the volume.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = receiver_pod(prod)["spec"]
    container = assert_hardened(pod, NAME)
    account = named(prod, "ServiceAccount")[pod["serviceAccountName"]]
    assert account["automountServiceAccountToken"] is False
    assert container["image"] == deploy.IMAGE
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory", "ephemeral-storage"}
    port = container["ports"][0]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["containerPort"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    options = flags(container)
    claim = volumes["state"]["persistentVolumeClaim"]["claimName"]
    assert claim in named(prod, "PersistentVolumeClaim")
    assert options["state-dir"] == mounts["state"]
    assert volumes["tmp"]["emptyDir"]["sizeLimit"] and mounts["tmp"] == "/tmp"
    # The webhook's token as a file from the Secret that the AlertmanagerConfig reads too.
    secret = volumes["token"]["secret"]
    assert secret["secretName"] == alertmanager.TOKEN_SECRET
    assert secret["items"] == [{"key": alertmanager.TOKEN_KEY, "path": "token"}]
    assert options["token-file"] == f"{mounts['token']}/token"
    # KFP's token: for KFP's audience only, where kfp.Client looks for it.
    [source] = volumes["kfp-token"]["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KF_PIPELINES_SA_TOKEN_PATH"] == (
        f"{mounts['kfp-token']}/{source['serviceAccountToken']['path']}"
    )
    assert env["HOME"] == mounts["tmp"]


def test_the_pod_runs_the_receiver_in_cluster_mode_with_arguments_it_accepts(
    prod: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    [container] = receiver_pod(prod)["spec"]["containers"]
    assert container["command"] == ["python", "-m", "pipelines.alert_receiver"]
    # The image carries pipelines/ where the command looks for it.
    dockerfile = (ROOT / "serving" / "Dockerfile").read_text()
    assert re.search(r"^COPY pipelines/ /app/pipelines/$", dockerfile, re.M)
    assert "!pipelines/" in (ROOT / ".dockerignore").read_text().splitlines()
    args = alert_receiver.parser().parse_args(container["args"])
    assert (args.mode, args.host, args.port) == (
        "cluster",
        "0.0.0.0",
        container["ports"][0]["containerPort"],
    )
    assert args.alerts == alert_receiver.ACTION_ALERTS
    # MLflow comes from the serving ConfigMap: with its URI, every project's monitoring run has
    # the arguments the receiver checks before it starts.
    sources = {
        (kind, s[kind]["name"], s[kind].get("optional", False))
        for s in container["envFrom"]
        for kind in s
    }
    # and the registry's credentials, optional, for the rollback alerts' tag writes
    assert sources == {
        ("configMapRef", deploy.CONFIG_MAP, False),
        ("secretRef", deploy.MLFLOW_SECRET, True),
    }
    config = named(prod, "ConfigMap")[deploy.CONFIG_MAP]["data"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", config["MLFLOW_TRACKING_URI"])
    for project in ("bankchurn", "carvision", "telecom"):
        arguments = schedule.schedule_arguments(
            project, "", args.pushgateway, args.log_root, args.params
        )
        assert arguments["mlflow_tracking_uri"].startswith("https://")


def test_only_the_alertmanager_reaches_the_receiver_and_it_reaches_only_the_kfp_api(
    prod: list[dict[str, Any]],
) -> None:
    labels = receiver_pod(prod)["metadata"]["labels"]
    [container] = receiver_pod(prod)["spec"]["containers"]
    policies = {
        name: policy
        for name, policy in named(prod, "NetworkPolicy").items()
        if selects(policy["spec"]["podSelector"], labels) and name != "mlops-default-deny"
    }
    assert set(policies) == {f"{NAME}-ingress", f"{NAME}-egress"}
    [rule] = policies[f"{NAME}-ingress"]["spec"]["ingress"]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}},
        }
    ]
    assert rule["ports"] == [{"port": container["ports"][0]["containerPort"], "protocol": "TCP"}]
    egress = policies[f"{NAME}-egress"]["spec"]["egress"]
    assert all(rule.get("to") and rule.get("ports") for rule in egress)
    reached = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in egress
        for peer in rule["to"]
    }
    assert reached == {"kube-system", "kubeflow", "istio-system"}
    kfp_host = flags(container)["kfp-host"]
    [kfp] = [r for r in egress if r["to"][0]["namespaceSelector"]["matchLabels"][
        "kubernetes.io/metadata.name"] == "kubeflow"]  # fmt: skip
    assert kfp_host.endswith(f":{kfp['ports'][0]['port']}")
    assert ".kubeflow.svc" in kfp_host


def test_the_alertmanager_config_points_at_the_receiver_with_its_token(
    prod: list[dict[str, Any]],
) -> None:
    [config] = by_kind(prod, "AlertmanagerConfig")
    expected = alertmanager.alertmanager_config_resource()
    assert config["spec"] == expected["spec"]
    assert config["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    [receiver] = config["spec"]["receivers"]
    [hook] = receiver["webhookConfigs"]
    service = named(prod, "Service")[NAME]
    [port] = service["spec"]["ports"]
    namespace = service["metadata"]["namespace"]
    assert hook["url"] == (
        f"http://{service['metadata']['name']}.{namespace}.svc:{port['port']}"
        f"{alert_receiver.ALERTS_PATH}"
    )
    [container] = receiver_pod(prod)["spec"]["containers"]
    assert port["targetPort"] == container["ports"][0]["name"]
    assert selects(
        {"matchLabels": service["spec"]["selector"]}, receiver_pod(prod)["metadata"]["labels"]
    )
    credentials = hook["httpConfig"]["authorization"]["credentials"]
    [volume] = [v for v in receiver_pod(prod)["spec"]["volumes"] if "secret" in v]
    assert credentials == {
        "name": volume["secret"]["secretName"],
        "key": volume["secret"]["items"][0]["key"],
    }
    assert hook["sendResolved"] is True


def test_the_receivers_account_may_start_runs_in_the_profile_namespace_and_nothing_else(
    prod: list[dict[str, Any]],
) -> None:
    deployer = build_directory("deployer")
    role = named(deployer, "Role")[NAME]
    assert role["rules"] == [
        {
            "apiGroups": ["pipelines.kubeflow.org"],
            "resources": ["experiments"],
            "verbs": ["get", "list", "create"],
        },
        {"apiGroups": ["pipelines.kubeflow.org"], "resources": ["runs"], "verbs": ["create"]},
    ]
    binding = named(deployer, "RoleBinding")[NAME]
    assert binding["roleRef"]["name"] == NAME
    account = named(prod, "ServiceAccount")[NAME]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": NAME,
            "namespace": account["metadata"]["namespace"],
        }
    ]
    # The runs go to the namespace the binding is in.
    [container] = receiver_pod(prod)["spec"]["containers"]
    assert flags(container)["kfp-namespace"] == binding["metadata"]["namespace"]
    # Nothing in the serving namespace grants the receiver anything.
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for doc in by_kind(prod, kind):
            assert all(s["name"] != NAME for s in doc["subjects"])


def test_the_platforms_alertmanager_routes_alerts_of_any_namespace() -> None:
    """The action alerts are aggregated by project and carry no `namespace` label, which the
    operator's default strategy would require of every alert an AlertmanagerConfig routes."""
    main = (TERRAFORM / "modules" / "platform" / "main.tf").read_text()
    assert re.search(r'alertmanagerConfigMatcherStrategy\s*=\s*\{\s*type\s*=\s*"None"\s*\}', main)
