"""The InferenceService the deploy step writes, its checks, and applying it to a cluster API.

The Kubernetes API server cannot run on this machine, so `apply` is exercised against an
in-memory stand-in with the same three calls and the same ApiException behaviour.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
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
    # docs/operations.md's rollback replaces env/0: the model URI must stay there, where
    # KServe's storage initializer reads it (the server loads what it fetched).
    assert server["env"][0] == {"name": "STORAGE_URI", "value": f"models:/{project}/7"}
    assert not any(arg.startswith("--model_uri") for arg in server["args"])
    assert manifest["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
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
    assert server["env"][1:] == [
        {
            "name": "MLOPS_API_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": "mlops-api-token", "key": "token", "optional": False}
            },
        }
    ]


DIGEST = "ab" * 32


def test_a_known_digest_is_passed_after_the_project() -> None:
    spec = get_spec("telecom")
    manifest = deploy.inference_service(spec, "models:/telecom/7", deploy.Target(), DIGEST.upper())
    args = container(manifest)["args"]
    assert args[1] == f"--model_sha256={DIGEST}"
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
    assert container(manifest)["args"][1:3] == [
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
    assert container(served)["env"][0]["value"] == "models:/telecom/2"


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


def kserve_refusals(service: dict[str, Any]) -> list[str]:
    """What KServe's webhook (v0.20+, pkg/apis/serving/v1beta1/inference_service_validation.go,
    validateCanarySpecs) refuses in an InferenceService's canaries, restated: no API server runs
    here."""
    canaries = service["spec"].get("canary", [])
    if not canaries:
        return []
    found = []
    if service["metadata"]["annotations"].get("serving.kserve.io/deploymentMode") != "Standard":
        found.append("canary is only supported in Standard deployment mode")
    stable = service["spec"]["predictor"]
    server = next(c for c in stable["containers"] if c["name"] == "kserve-container")
    if not any(e["name"] == "STORAGE_URI" for e in server.get("env", [])) and "model" not in stable:
        found.append("canary requires a stable predictor with a model")
    names = [c["predictor"].get("name", "") for c in canaries]
    if "" in names or len(set(names)) < len(names) or stable.get("name") in names:
        found.append("canary predictor.name is required, unique and not the stable one's")
    for entry in canaries:
        predictor = entry["predictor"]
        if not 0 <= entry["trafficPercent"] <= 100:
            found.append("trafficPercent must be between 0 and 100")
        if {"maxReplicas", "scaleTarget", "scaleMetric", "autoScaling"} & set(predictor):
            found.append("canary uses fixed replicas")
        if predictor.get("minReplicas", 0) > stable.get("minReplicas", 1):
            found.append("canary minReplicas must not exceed the stable predictor's")
    if sum(entry["trafficPercent"] for entry in canaries) > 100:
        found.append("sum of canary trafficPercent values must be <= 100")
    return found


def test_a_canary_is_what_kserve_admits_and_serves_its_share_as_the_canary() -> None:
    spec = get_spec("telecom")
    graph = "cd" * 32
    canary = deploy.Canary.of_share("models:/telecom/8", 0.1, DIGEST, graph)
    manifest = deploy.inference_service(spec, "models:/telecom/7", deploy.Target(), canary=canary)
    assert kserve_refusals(manifest) == []
    [entry] = manifest["spec"]["canary"]
    assert entry["trafficPercent"] == 10
    predictor = entry["predictor"]
    assert (predictor["name"], predictor["minReplicas"]) == ("v8", 1)
    [server] = predictor["containers"]
    assert server["env"][0] == {"name": "STORAGE_URI", "value": "models:/telecom/8"}
    assert server["args"][1:4] == [
        f"--model_sha256={DIGEST}",
        f"--compiled_sha256={graph}",
        "--serving_stage=canary",
    ]
    assert predictor["labels"][deploy.STAGE_LABEL] == "canary"
    # The same pod as the stable predictor's otherwise: account, hardening, probes, limits.
    stable = manifest["spec"]["predictor"]
    for field in ("serviceAccountName", "automountServiceAccountToken", "securityContext"):
        assert predictor[field] == stable[field]
    for field in ("securityContext", "resources", "readinessProbe", "envFrom", "image"):
        assert server[field] == container(manifest)[field]
    assert "--serving_stage=canary" not in container(manifest)["args"]


@pytest.mark.parametrize(
    ("share", "percent"), [(0.05, 5), (0.5, 50), (1.0, 100), (0.001, 1), (0.0, 0)]
)
def test_a_share_becomes_whole_percent_and_a_small_one_still_gets_some(
    share: float, percent: int
) -> None:
    assert deploy.Canary.of_share("models:/telecom/8", share).traffic_percent == percent


@pytest.mark.parametrize(
    ("canary", "target", "message"),
    [
        (deploy.Canary("models:/telecom@staged", 10), deploy.Target(), "expected models:/NAME/V"),
        (deploy.Canary("models:/bankchurn/8", 10), deploy.Target(), "not project 'telecom'"),
        (deploy.Canary("models:/telecom/8", 101), deploy.Target(), "not between 0 and 100"),
        (deploy.Canary("models:/telecom/7", 10), deploy.Target(), "both serve models:/telecom/7"),
        (
            deploy.Canary("models:/telecom/8", 10),
            deploy.Target(min_replicas=0),
            "min_replicas of at least 1",
        ),
        (deploy.Canary("models:/telecom/8", 10, "xyz"), deploy.Target(), "'xyz' is not a sha256"),
    ],
)
def test_a_canary_kserve_would_refuse_is_named_before_it_is_sent(
    canary: deploy.Canary, target: deploy.Target, message: str
) -> None:
    with pytest.raises(deploy.DeployError, match=message):
        deploy.inference_service(get_spec("telecom"), "models:/telecom/7", target, canary=canary)


def test_the_restatement_of_kserves_rules_refuses_what_kserve_refuses() -> None:
    canary = deploy.Canary("models:/telecom/8", 60)
    good = deploy.inference_service(
        get_spec("telecom"), "models:/telecom/7", deploy.Target(), canary=canary
    )
    raw = yaml.safe_load(deploy.to_yaml(good))
    raw["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] = "RawDeployment"
    assert "canary is only supported in Standard deployment mode" in kserve_refusals(raw)
    arg = yaml.safe_load(deploy.to_yaml(good))
    arg["spec"]["predictor"]["containers"][0]["env"].pop(0)
    assert "canary requires a stable predictor with a model" in kserve_refusals(arg)
    twice = yaml.safe_load(deploy.to_yaml(good))
    twice["spec"]["canary"].append(twice["spec"]["canary"][0])
    assert len(kserve_refusals(twice)) == 2  # the name twice, 120% in all
    scaled = yaml.safe_load(deploy.to_yaml(good))
    scaled["spec"]["canary"][0]["predictor"]["maxReplicas"] = 3
    assert kserve_refusals(scaled) == ["canary uses fixed replicas"]


def test_the_storage_initializer_fetches_registry_uris_with_the_namespaces_settings() -> None:
    found = deploy.storage_container("registry.local/serving:2")
    assert found["kind"] == "ClusterStorageContainer"
    assert found["spec"]["supportedUriFormats"] == [{"prefix": "models:/"}]
    container = found["spec"]["container"]
    assert container["image"] == "registry.local/serving:2"
    assert container["command"] == ["python", "-m", "serving.fetch"]
    assert container["envFrom"] == [
        {"configMapRef": {"name": deploy.CONFIG_MAP}},
        {"secretRef": {"name": deploy.MLFLOW_SECRET, "optional": True}},
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.fixture()
def telecom_registry(tmp_path: Path) -> Iterator[Any]:
    """A real SQLite registry of its own holding `telecom`: version 1 champion, 2 and 3 more,
    each with its digest tags as the register step sets them."""
    import mlflow

    from components.core import loading

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    client.create_registered_model("telecom")
    for number in ("1", "2", "3"):
        client.create_model_version("telecom", str(tmp_path), run_id=None)
        client.set_model_version_tag("telecom", number, loading.DIGEST_TAG, number * 64)
        client.set_model_version_tag("telecom", number, loading.COMPILED_DIGEST_TAG, "c" * 64)
    try:
        yield client
    finally:
        mlflow.set_tracking_uri(previous)


def test_the_rollout_becomes_an_inference_service_with_the_canarys_share(
    telecom_registry: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from components.core import rollout
    from pipelines import stage

    spec = get_spec("telecom")
    with pytest.raises(deploy.DeployError, match="telecom has no champion to serve"):
        deploy.rollout_service(spec, deploy.Target())
    telecom_registry.set_registered_model_alias("telecom", "champion", "1")
    alone = deploy.rollout_service(spec, deploy.Target())
    assert "canary" not in alone["spec"]
    assert container(alone)["env"][0]["value"] == "models:/telecom/1"
    assert container(alone)["args"][1:3] == [
        f"--model_sha256={'1' * 64}",
        f"--compiled_sha256={'c' * 64}",
    ]
    # A shadow has no form on the cluster: the service stays the champion's.
    rollout.stage("telecom", "2", rollout.Stage.SHADOW, reason="test")
    assert deploy.rollout_service(spec, deploy.Target()) == alone
    rollout.stage("telecom", "2", rollout.Stage.CANARY, share=0.2, reason="test")
    out = tmp_path / "isvc.yaml"
    assert stage.main(["--project", "telecom", "--manifest", str(out), "--namespace", "ns"]) == 0
    assert f"InferenceService written to {out}" in capsys.readouterr().out
    written = yaml.safe_load(out.read_text())
    assert kserve_refusals(written) == []
    assert written["metadata"]["namespace"] == "ns"
    [entry] = written["spec"]["canary"]
    assert entry["trafficPercent"] == 20
    [server] = entry["predictor"]["containers"]
    assert server["env"][0]["value"] == "models:/telecom/2"
    assert f"--model_sha256={'2' * 64}" in server["args"]
    # Promoted: the champion's service alone again, now version 2.
    rollout.stage("telecom", "2", rollout.Stage.CHAMPION, reason="test")
    promoted = deploy.rollout_service(spec, deploy.Target())
    assert "canary" not in promoted["spec"]
    assert container(promoted)["env"][0]["value"] == "models:/telecom/2"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert stage.main(["--project", "telecom", "--apply"]) == 1  # off a cluster: named
    assert "mode 'manifest' off-cluster" in capsys.readouterr().err
