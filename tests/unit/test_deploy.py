"""The InferenceService the deploy step writes, its checks, and applying it to a cluster API.

The Kubernetes API server cannot run on this machine, so `apply` is exercised against an
in-memory stand-in with the same three calls and the same ApiException behaviour.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from components.core import deploy
from components.core.contracts import Registration
from components.core.projects import PROJECTS, get_spec
from components.core.spec import ProjectSpec


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    containers = manifest["spec"]["predictor"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_the_manifest_serves_the_pinned_version_on_the_v1_port(project: str) -> None:
    spec = get_spec(project)
    manifest = deploy.inference_service(spec, f"models:/{project}/7", deploy.Target())
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    assert manifest["metadata"]["name"] == project
    assert manifest["metadata"]["annotations"]["mlops.kubeflow.org/model-uri"] == (
        f"models:/{project}/7"
    )
    server = container(manifest)
    assert server["name"] == "kserve-container"
    assert f"--model_name={project}" in server["args"]
    # docs/operations.md's rollback patches args/1: the model URI must stay there.
    assert server["args"][1] == f"--model_uri=models:/{project}/7"
    assert server["ports"][0]["containerPort"] == deploy.HTTP_PORT
    assert server["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{project}"
    assert server["envFrom"] == [
        {"configMapRef": {"name": deploy.CONFIG_MAP}},
        {"secretRef": {"name": deploy.MLFLOW_SECRET, "optional": True}},
    ]
    # Scraped on the port that serves predictions, and found by the PodMonitor's label.
    annotations = manifest["metadata"]["annotations"]
    assert annotations["prometheus.kserve.io/port"] == str(deploy.HTTP_PORT)
    assert manifest["spec"]["predictor"]["labels"]["app.kubernetes.io/part-of"] == deploy.PART_OF
    assert yaml.safe_load(deploy.to_yaml(manifest)) == manifest


def test_the_predictor_is_cluster_local_and_runs_under_the_restricted_pod_standard() -> None:
    manifest = deploy.inference_service(get_spec("telecom"), "models:/telecom/3", deploy.Target())
    assert manifest["metadata"]["labels"][deploy.VISIBILITY_LABEL] == "cluster-local"
    predictor = manifest["spec"]["predictor"]
    assert predictor["automountServiceAccountToken"] is False
    assert predictor["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    server = container(manifest)
    assert server["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # The only writable path is /tmp, and the disk a pod may fill is bounded.
    assert server["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert predictor["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    assert server["resources"]["requests"]["ephemeral-storage"] == "256Mi"
    assert server["resources"]["limits"]["ephemeral-storage"] == "2Gi"
    # The API token is required: without its Secret the pod does not start.
    assert server["env"] == [
        {
            "name": "MLOPS_API_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": "mlops-api-token", "key": "token", "optional": False}
            },
        }
    ]


DIGEST = "ab" * 32


def test_a_known_digest_is_passed_next_to_the_model_uri() -> None:
    spec = get_spec("telecom")
    manifest = deploy.inference_service(spec, "models:/telecom/7", deploy.Target(), DIGEST.upper())
    args = container(manifest)["args"]
    assert args[1:3] == ["--model_uri=models:/telecom/7", f"--model_sha256={DIGEST}"]
    without = container(deploy.inference_service(spec, "models:/telecom/7", deploy.Target()))
    assert not any(arg.startswith("--model_sha256") for arg in without["args"])
    with pytest.raises(deploy.DeployError, match="model_sha256 'abc' is not a sha256"):
        deploy.inference_service(spec, "models:/telecom/7", deploy.Target(), "abc")


def test_a_known_graph_digest_is_passed_after_the_model_files() -> None:
    spec = get_spec("telecom")
    graph = "cd" * 32
    manifest = deploy.inference_service(
        spec, "models:/telecom/7", deploy.Target(), DIGEST, graph.upper()
    )
    assert container(manifest)["args"][1:4] == [
        "--model_uri=models:/telecom/7",
        f"--model_sha256={DIGEST}",
        f"--compiled_sha256={graph}",
    ]
    with pytest.raises(deploy.DeployError, match="compiled_sha256 'cd' is not a sha256"):
        deploy.inference_service(spec, "models:/telecom/7", deploy.Target(), DIGEST, "cd")
    with pytest.raises(deploy.DeployError, match="whose file is not pinned"):
        deploy.inference_service(spec, "models:/telecom/7", deploy.Target(), "", graph)


def test_target_settings_reach_the_manifest() -> None:
    target = deploy.Target(
        namespace="team-a", image="registry.local/serving:1", min_replicas=2, max_replicas=5
    )
    manifest = deploy.inference_service(get_spec("telecom"), "models:/telecom@champion", target)
    assert manifest["metadata"]["namespace"] == "team-a"
    assert container(manifest)["image"] == "registry.local/serving:1"
    predictor = manifest["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 5)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/bankchurn/3", "names model 'bankchurn', not project 'telecom'"),
        ("models:/telecom", "expected models:/NAME/VERSION or models:/NAME@ALIAS"),
        ("runs:/abc/model", "expected models:/NAME/VERSION"),
        ("models:/telecom/latest", "expected models:/NAME/VERSION"),
    ],
)
def test_a_model_uri_of_another_shape_or_project_is_refused(uri: str, message: str) -> None:
    with pytest.raises(deploy.DeployError, match=message):
        deploy.inference_service(get_spec("telecom"), uri, deploy.Target())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"namespace": "Team_A"}, "namespace 'Team_A' is not a DNS label"),
        ({"max_replicas": 0}, "max_replicas 0 is below min_replicas 1"),
        ({"min_replicas": -1}, "min_replicas -1 is negative"),
        ({"memory_limit": "2 GB"}, "memory_limit '2 GB' is not a Kubernetes quantity"),
        ({"image": " "}, "image is empty"),
        ({"tmp_size": "lots"}, "tmp_size 'lots' is not a Kubernetes quantity"),
    ],
)
def test_bad_target_settings_are_named(change: dict[str, Any], message: str) -> None:
    target = dataclasses.replace(deploy.Target(), **change)
    with pytest.raises(deploy.DeployError, match=message):
        deploy.inference_service(get_spec("telecom"), "models:/telecom/1", target)


GRAPH_DIGEST = "ef" * 32


def registration(
    version: str, aliases: list[str], before: str | None, digest: str = ""
) -> Registration:
    return Registration(
        run_id="r",
        version=version,
        aliases=aliases,
        champion_before=before,
        decision="",
        metrics={},
        model_file_sha256=digest,
        compiled_model_sha256=GRAPH_DIGEST,
    )


def test_the_plan_serves_a_promoted_version() -> None:
    spec = get_spec("carvision")
    chosen = deploy.plan(spec, registration("4", ["challenger", "champion"], "3", DIGEST))
    assert (chosen.model_uri, chosen.model_sha256) == ("models:/carvision/4", DIGEST)
    assert chosen.compiled_sha256 == GRAPH_DIGEST
    # a registration that does not know its file's digest pins neither
    unknown = deploy.plan(spec, registration("4", ["challenger", "champion"], "3"))
    assert (unknown.model_sha256, unknown.compiled_sha256) == ("", "")


def test_the_plan_keeps_the_champion_when_the_new_version_lost() -> None:
    spec = get_spec("carvision")
    chosen = deploy.plan(spec, registration("5", ["challenger"], "4", DIGEST))
    assert chosen.model_uri == "models:/carvision/4"
    # The registration's digests are version 5's, not the champion's: none is passed.
    assert (chosen.model_sha256, chosen.compiled_sha256) == ("", "")
    assert "5 was not promoted" in chosen.reason


def test_the_plan_deploys_nothing_without_a_champion() -> None:
    chosen = deploy.plan(get_spec("telecom"), registration("1", ["challenger"], None))
    assert chosen.model_uri is None and "no champion" in chosen.reason


class FakeCustomObjects:
    """The three CustomObjectsApi calls, over a dict, raising ApiException as the client does."""

    def __init__(self, fail_reads_with: int | None = None) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.fail_reads_with = fail_reads_with

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> Any:
        self.calls.append("get")
        assert (group, version, plural) == (deploy.GROUP, deploy.API_VERSION, deploy.PLURAL)
        if self.fail_reads_with:
            raise ApiException(status=self.fail_reads_with, reason="Forbidden")
        if (namespace, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return self.objects[namespace, name]

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: Any
    ) -> Any:
        self.calls.append("create")
        self.objects[namespace, body["metadata"]["name"]] = body
        return body

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any
    ) -> Any:
        self.calls.append("patch")
        self.objects[namespace, name] = body
        return body


def manifest_for(spec: ProjectSpec, version: int) -> dict[str, Any]:
    return deploy.inference_service(spec, f"models:/{spec.name}/{version}", deploy.Target())


def test_apply_creates_then_patches_the_same_service() -> None:
    spec = get_spec("telecom")
    api = FakeCustomObjects()
    assert deploy.apply(manifest_for(spec, 1), api) == "created"
    assert deploy.apply(manifest_for(spec, 2), api) == "patched"
    assert api.calls == ["get", "create", "get", "patch"]
    served = api.objects["kubeflow-mlops", "telecom"]
    assert "--model_uri=models:/telecom/2" in container(served)["args"]


def test_apply_names_an_api_refusal_and_changes_nothing() -> None:
    api = FakeCustomObjects(fail_reads_with=403)
    with pytest.raises(deploy.DeployError, match="kubeflow-mlops/telecom failed: 403 Forbidden"):
        deploy.apply(manifest_for(get_spec("telecom"), 1), api)
    assert api.objects == {}


def test_apply_mode_off_cluster_says_to_use_the_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(deploy.DeployError, match="mode 'manifest' off-cluster"):
        deploy.in_cluster_api()


def test_the_step_in_apply_mode_creates_the_champions_service() -> None:
    api = FakeCustomObjects()
    done = deploy.deploy(
        get_spec("telecom"),
        registration("4", ["challenger", "champion"], "3", DIGEST),
        "apply",
        "serving-ns",
        api=lambda: api,
    )
    assert (done.model_uri, done.action) == ("models:/telecom/4", "created")
    applied = api.objects["serving-ns", "telecom"]
    assert f"--model_sha256={DIGEST}" in container(applied)["args"]
    assert yaml.safe_load(done.manifest.split("\n", 1)[1])["metadata"]["namespace"] == "serving-ns"
    assert api.calls == ["get", "create"]


def test_the_step_deploys_nothing_without_a_champion_and_names_a_bad_mode() -> None:
    spec = get_spec("telecom")
    done = deploy.deploy(spec, registration("1", ["challenger"], None), "manifest", "ns")
    assert (done.model_uri, done.action) == ("", "none")
    assert done.manifest.startswith("# telecom has no champion")
    with pytest.raises(deploy.DeployError, match="mode 'aply': expected one of manifest, apply"):
        deploy.deploy(spec, registration("1", ["champion"], None), "aply", "ns")
