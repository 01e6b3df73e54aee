"""The KServe InferenceService that serves a project's registered model, and applying it.

One function describes the serving resource; the deploy step, the checked-in manifests
(`manifests/base/inferenceservices/`) and the docs all come from it, so they cannot drift apart.
The predictor is the project image, whose entrypoint is the server (`serving/`), started with a
registry URI pinned to one model version: a rollout is an explicit change of that version, and a
rollback is re-deploying the previous one.

Secure by default: the service is cluster-local (no Ingress), its pods run as the image's
non-root user under the `restricted` Pod Security Standard (read-only root filesystem, no
capabilities, RuntimeDefault seccomp, bounded ephemeral storage), the server requires the API
token from its Secret, and a manifest made from a registration passes the model file's sha256, so
that the server refuses any other file (docs/operations.md, "Security on the cluster").
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from components.core.contracts import Registration
from components.core.model_uri import parse as model_uri_parts
from components.core.spec import ProjectSpec
from components.image import IMAGE

GROUP = "serving.kserve.io"
API_VERSION = "v1beta1"
PLURAL = "inferenceservices"
PART_OF = "kubeflow-mlops"
HTTP_PORT = 8080
# Holds MLFLOW_TRACKING_URI for the predictor pods; credentials come from MLFLOW_SECRET.
CONFIG_MAP = "mlops-serving-config"
SERVICE_ACCOUNT = "mlops-serving"
RUN_AS = 10001
"""UID and GID of the image's user (serving/Dockerfile): the pods run as it, never as root."""
# The token the server requires of its callers (read from MLOPS_API_TOKEN). The operator creates
# the Secret; a pod does not start without it (docs/operations.md, "Security on the cluster").
API_TOKEN_SECRET = "mlops-api-token"
API_TOKEN_KEY = "token"
API_TOKEN_ENV = "MLOPS_API_TOKEN"
# Without it, KServe's raw mode creates an Ingress for every InferenceService.
VISIBILITY_LABEL = "networking.kserve.io/visibility"
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# KServe's storage initializer fetches the URI in this variable of a custom container; the
# ClusterStorageContainer below answers for `models:/` URIs.
STORAGE_URI_ENV = "STORAGE_URI"
STORAGE_CONTAINER = "mlops-model-registry"
MODEL_DIR = "/mnt/models"
STAGE_LABEL = "mlops.kubeflow.org/rollout-stage"
CHAMPION = "champion"
CANARY = "canary"
CONTAINER_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
# Credentials of the MLflow server and its artifact store, for the register step (in the
# pipelines' namespace) and the predictors (in theirs). Every key is optional: a server without
# authentication needs no Secret.
MLFLOW_SECRET = "mlflow-credentials"
MLFLOW_SECRET_KEYS = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_S3_ENDPOINT_URL",
)
# The webhook each pipeline run posts its outcome to, for the exit task (in the pipelines'
# namespace), as NOTIFY_URL. Optional: without it no notice is sent.
NOTIFY_SECRET = "mlops-notify"
NOTIFY_SECRET_KEY = "url"
# An alias goes into the container's arguments: a plain word only.
ALIAS = re.compile(r"^[\w-]+$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")

MODES = ("manifest", "apply")
"""`manifest` writes the InferenceService; `apply` also creates or patches it on the cluster."""


class DeployError(ValueError):
    """A deployment that cannot be described or applied; the message names the field."""


@dataclass(frozen=True)
class Target:
    """Where and how big: everything about a deployment that is not the model."""

    namespace: str = "kubeflow-mlops"
    image: str = IMAGE
    """The one project image: the KFP steps run in it too (serving/Dockerfile)."""
    min_replicas: int = 1
    max_replicas: int = 3
    # From `make bench-cost` (docs/finops.md): a server's peak RSS was 516 to 640 MiB
    # (carvision the largest); request that, limit 1.5 times rounded up. One core answers one
    # request at a time; 500m keeps up with a few hundred single-row requests a second.
    cpu_request: str = "500m"
    memory_request: str = "640Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"
    ephemeral_request: str = "256Mi"
    ephemeral_limit: str = "2Gi"
    """Node disk a pod may use: the writable /tmp (the model download) and the container's logs."""
    tmp_size: str = "1Gi"
    """Size limit of /tmp, an emptyDir: the only writable path on the read-only root filesystem."""

    def check(self) -> None:
        problems = []
        if not DNS_LABEL.match(self.namespace):
            problems.append(f"namespace {self.namespace!r} is not a DNS label")
        if not self.image.strip():
            problems.append("image is empty")
        if self.min_replicas < 0:
            problems.append(f"min_replicas {self.min_replicas} is negative")
        if self.max_replicas < max(self.min_replicas, 1):
            problems.append(
                f"max_replicas {self.max_replicas} is below min_replicas {self.min_replicas} "
                "(or below 1)"
            )
        quantities = (
            "cpu_request",
            "memory_request",
            "cpu_limit",
            "memory_limit",
            "ephemeral_request",
            "ephemeral_limit",
            "tmp_size",
        )
        for name in quantities:
            value = getattr(self, name)
            if not QUANTITY.match(value):
                problems.append(f"{name} {value!r} is not a Kubernetes quantity")
        if problems:
            raise DeployError("; ".join(problems))


def _check_model_uri(spec: ProjectSpec, model_uri: str) -> None:
    parts = model_uri_parts(model_uri)
    if parts is None or (parts.alias is not None and not ALIAS.match(parts.alias)):
        raise DeployError(
            f"model_uri {model_uri!r}: expected models:/NAME/VERSION or models:/NAME@ALIAS"
        )
    if parts.name != spec.name:
        raise DeployError(
            f"model_uri {model_uri!r} names model {parts.name!r}, not project {spec.name!r}"
        )


def _pinned_digests(model_sha256: str, compiled_sha256: str, whose: str) -> tuple[str, str]:
    """The model file's and the compiled graph's digests, checked; a graph is pinned only
    with its model file."""
    digest = _check_sha256(model_sha256)
    graph_digest = _check_sha256(compiled_sha256, "compiled_sha256")
    if graph_digest and not digest:
        raise DeployError(f"compiled_sha256 pins the graph of {whose} whose file is not pinned")
    return digest, graph_digest


def _check_sha256(given: str, name: str = "model_sha256") -> str:
    digest = given.strip().lower()
    if digest and not SHA256_HEX.match(digest):
        raise DeployError(f"{name} {given!r} is not a sha256 (64 hex digits)")
    return digest


@dataclass(frozen=True)
class Canary:
    """A version answering a share of the requests beside the stable predictor: KServe's
    `spec.canary`, one Deployment of its own with a fixed replica count."""

    model_uri: str
    """models:/NAME/VERSION: a canary is always one version."""
    traffic_percent: int
    """The share of requests KServe routes to it, in whole percent (0: deployed, no traffic)."""
    model_sha256: str = ""
    compiled_sha256: str = ""

    @classmethod
    def of_share(
        cls, model_uri: str, share: float, model_sha256: str = "", compiled_sha256: str = ""
    ) -> Canary:
        """The rollout's share (0 to 1) in KServe's whole percent; a share above 0 gets 1% at
        least, so that a small canary still answers something."""
        percent = round(share * 100)
        return cls(model_uri, max(percent, 1) if share > 0 else 0, model_sha256, compiled_sha256)


def _server(
    spec: ProjectSpec,
    model_uri: str,
    target: Target,
    digest: str,
    graph_digest: str,
    stage: str,
) -> dict[str, Any]:
    """The kserve-container: the project image serving the model KServe's storage initializer
    (the `models:/` ClusterStorageContainer) fetched and verified into /mnt/models."""
    args = [f"--model_name={spec.name}"]
    if digest:
        args.append(f"--model_sha256={digest}")
    if graph_digest:
        args.append(f"--compiled_sha256={graph_digest}")
    if stage != CHAMPION:
        args.append(f"--serving_stage={stage}")
    args += [f"--http_port={HTTP_PORT}", "--enable_grpc=false"]
    return {
        "name": "kserve-container",
        "image": target.image,
        # Every pod start checks the registry's credentials for the image.
        "imagePullPolicy": "Always",
        "args": args,
        "env": [
            # KServe reads the model's URI here for a custom container (docs/operations.md's
            # rollback replaces env/0); its storage initializer puts the model in /mnt/models.
            {"name": STORAGE_URI_ENV, "value": model_uri},
            {
                "name": API_TOKEN_ENV,
                "valueFrom": {
                    "secretKeyRef": {
                        "name": API_TOKEN_SECRET,
                        "key": API_TOKEN_KEY,
                        "optional": False,
                    }
                },
            },
        ],
        "envFrom": [
            {"configMapRef": {"name": CONFIG_MAP}},
            {"secretRef": {"name": MLFLOW_SECRET, "optional": True}},
        ],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        # Ready only once the model has loaded: the server answers 503 until then.
        "readinessProbe": {
            "httpGet": {"path": f"/v1/models/{spec.name}", "port": HTTP_PORT},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/", "port": HTTP_PORT},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
        },
        "resources": {
            "requests": {
                "cpu": target.cpu_request,
                "memory": target.memory_request,
                "ephemeral-storage": target.ephemeral_request,
            },
            "limits": {
                "cpu": target.cpu_limit,
                "memory": target.memory_limit,
                "ephemeral-storage": target.ephemeral_limit,
            },
        },
        "securityContext": CONTAINER_SECURITY,
        # A version the server refreshes to is downloaded to a temporary directory.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def _predictor(server: dict[str, Any], target: Target, labels: dict[str, str]) -> dict[str, Any]:
    """The pod fields every predictor of the project shares, around its server container."""
    return {
        "serviceAccountName": SERVICE_ACCOUNT,
        # The server never calls the Kubernetes API.
        "automountServiceAccountToken": False,
        "labels": labels,
        # The `restricted` Pod Security Standard, as the image's user (UID and GID 10001).
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [server],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": target.tmp_size}}],
    }


def _canary_entry(
    spec: ProjectSpec, canary: Canary, target: Target, labels: dict[str, str]
) -> dict[str, Any]:
    parts = model_uri_parts(canary.model_uri)
    if parts is None or parts.version is None:
        raise DeployError(f"canary model_uri {canary.model_uri!r}: expected models:/NAME/VERSION")
    _check_model_uri(spec, canary.model_uri)
    if not 0 <= canary.traffic_percent <= 100:
        raise DeployError(
            f"canary traffic_percent {canary.traffic_percent} is not between 0 and 100"
        )
    if target.min_replicas < 1:
        # KServe caps a canary's replicas at the stable predictor's minReplicas.
        raise DeployError("a canary needs min_replicas of at least 1 on the stable predictor")
    digest, graph_digest = _pinned_digests(canary.model_sha256, canary.compiled_sha256, "a canary")
    server = _server(spec, canary.model_uri, target, digest, graph_digest, CANARY)
    predictor = _predictor(server, target, labels | {STAGE_LABEL: CANARY})
    # Its Deployment is <service>-v<version>-predictor; a fixed replica count, no autoscaling.
    return {
        "predictor": {"name": f"v{parts.version}", "minReplicas": 1, **predictor},
        "trafficPercent": canary.traffic_percent,
    }


def inference_service(
    spec: ProjectSpec,
    model_uri: str,
    target: Target,
    model_sha256: str = "",
    compiled_sha256: str = "",
    canary: Canary | None = None,
) -> dict[str, Any]:
    """The InferenceService (KServe v1 protocol, Standard mode) serving `model_uri`, and with
    `canary` a second version answering its share of the requests; with `model_sha256` (and
    `compiled_sha256`), the server refuses a model file (a compiled graph) of any other
    digest."""
    _check_model_uri(spec, model_uri)
    digest, graph_digest = _pinned_digests(model_sha256, compiled_sha256, "a model")
    target.check()
    labels = {
        "app.kubernetes.io/name": spec.name,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/component": "predictor",
    }
    server = _server(spec, model_uri, target, digest, graph_digest, CHAMPION)
    predictor = {
        "minReplicas": target.min_replicas,
        "maxReplicas": target.max_replicas,
        **_predictor(server, target, labels),
    }
    service_spec: dict[str, Any] = {"predictor": predictor}
    if canary is not None:
        if canary.model_uri == model_uri:
            raise DeployError(f"the canary and the stable predictor both serve {model_uri}")
        service_spec["canary"] = [_canary_entry(spec, canary, target, labels)]
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": spec.name,
            "namespace": target.namespace,
            # Reachable inside the cluster only: no Ingress.
            "labels": labels | {VISIBILITY_LABEL: "cluster-local"},
            "annotations": {
                # A Deployment and a Service, no Knative: /metrics stays on the model port.
                # KServe admits `spec.canary` in this mode only.
                "serving.kserve.io/deploymentMode": "Standard",
                "serving.kserve.io/enable-prometheus-scraping": "true",
                "prometheus.kserve.io/port": str(HTTP_PORT),
                "prometheus.kserve.io/path": "/metrics",
                "mlops.kubeflow.org/model-uri": model_uri,
            },
        },
        "spec": service_spec,
    }


@dataclass(frozen=True)
class Plan:
    """What the deploy step serves: the registry's champion, pinned to its version."""

    model_uri: str | None
    reason: str
    model_sha256: str = ""
    """The served model file's sha256 when the registration knows it: only for the version it
    registered, never for a champion that stayed."""
    compiled_sha256: str = ""
    """Its compiled graph's sha256, likewise (none when it has no graph)."""


def plan(spec: ProjectSpec, registration: Registration) -> Plan:
    """The champion after this run's registration: the new version if it was promoted, else
    the one that stayed. A run that promoted nothing and found no champion deploys nothing."""
    if registration.is_champion:
        version = registration.version
        return Plan(
            f"models:/{spec.name}/{version}",
            f"version {version} is the new champion",
            registration.model_file_sha256,
            registration.compiled_model_sha256 if registration.model_file_sha256 else "",
        )
    before = registration.champion_before
    if before:
        return Plan(
            f"models:/{spec.name}/{before}",
            f"version {registration.version} was not promoted; champion {before} stays",
        )
    return Plan(None, f"{spec.name} has no champion: nothing to deploy")


def rollout_service(spec: ProjectSpec, target: Target, client: Any = None) -> dict[str, Any]:
    """The InferenceService of the registry's rollout now: the champion pinned to its version,
    and a version staged in canary beside it with its share (KServe routes that share; a shadow
    has no cluster form, so it adds nothing). Each version carries its own digest tags, which
    its server and storage initializer check."""
    from components.core import rollout

    client = client or rollout.registry_client()
    try:
        champion = client.get_model_version_by_alias(spec.name, rollout.CHAMPION)
    except Exception as exc:  # no champion: there is nothing to serve
        raise DeployError(f"{spec.name} has no champion to serve: {exc}") from exc
    staged = rollout.current(spec.name, client)
    canary = None
    if staged is not None and staged.stage is rollout.Stage.CANARY:
        tags = client.get_model_version(spec.name, staged.version).tags
        uri = f"models:/{spec.name}/{staged.version}"
        canary = Canary.of_share(uri, staged.share, *_tagged_digests(tags))
    return inference_service(
        spec,
        f"models:/{spec.name}/{champion.version}",
        target,
        *_tagged_digests(champion.tags),
        canary=canary,
    )


def _tagged_digests(tags: dict[str, str] | None) -> tuple[str, str]:
    """A version's model file and compiled graph digests from its registry tags (the graph's
    only with the file's, as the deploy pins them)."""
    from components.core import loading

    tags = tags or {}
    digest = tags.get(loading.DIGEST_TAG, "")
    return digest, tags.get(loading.COMPILED_DIGEST_TAG, "") if digest else ""


def to_yaml(manifest: dict[str, Any]) -> str:
    return yaml.safe_dump(manifest, sort_keys=False)


class CustomObjects(Protocol):
    """The part of kubernetes.client.CustomObjectsApi that applying uses."""

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> Any: ...

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: Any
    ) -> Any: ...

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any
    ) -> Any: ...


def in_cluster_api() -> CustomObjects:
    """The Kubernetes API as the pod's service account sees it (the deploy step on a cluster)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException as error:
        raise DeployError(
            f"mode 'apply' needs a Kubernetes service account (in-cluster config): {error}. "
            "Use mode 'manifest' off-cluster and apply the written manifest with kubectl."
        ) from error
    return client.CustomObjectsApi()


def apply(manifest: dict[str, Any], api: CustomObjects) -> str:
    """Creates the InferenceService, or patches the existing one; returns which it did."""
    from kubernetes.client.exceptions import ApiException

    meta = manifest["metadata"]
    where = (GROUP, API_VERSION, meta["namespace"], PLURAL)
    try:
        api.get_namespaced_custom_object(*where, meta["name"])
    except ApiException as error:
        if error.status != 404:
            raise DeployError(
                f"reading InferenceService {meta['namespace']}/{meta['name']} failed: "
                f"{error.status} {error.reason}"
            ) from error
        api.create_namespaced_custom_object(*where, manifest)
        return "created"
    api.patch_namespaced_custom_object(*where, meta["name"], manifest)
    return "patched"


@dataclass(frozen=True)
class Deployment:
    """What the deploy step did: the manifest it wrote and, in mode `apply`, the API's action."""

    model_uri: str
    """The URI served, or "" when there was nothing to deploy."""
    action: str
    """`none`, `written`, `created` or `patched`."""
    reason: str
    manifest: str


def deploy(
    spec: ProjectSpec,
    registration: Registration,
    mode: str,
    namespace: str,
    image: str = "",
    api: Callable[[], CustomObjects] = in_cluster_api,
) -> Deployment:
    """The InferenceService serving the champion after `registration`, and in mode `apply` that
    resource created or patched through the Kubernetes API (`api` gives the client)."""
    if mode not in MODES:
        raise DeployError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    chosen = plan(spec, registration)
    text = f"# {chosen.reason}\n"
    if chosen.model_uri is None:
        return Deployment("", "none", chosen.reason, text)
    target = Target(namespace=namespace, image=image or IMAGE)
    resource = inference_service(
        spec, chosen.model_uri, target, chosen.model_sha256, chosen.compiled_sha256
    )
    action = apply(resource, api()) if mode == "apply" else "written"
    return Deployment(chosen.model_uri, action, chosen.reason, text + to_yaml(resource))


def storage_container(image: str = IMAGE) -> dict[str, Any]:
    """KServe's storage initializer for `models:/` URIs: the project image resolves the version
    in the registry, downloads it into /mnt/models and checks the model file against the
    version's digest tag before the server starts (`serving.fetch`). Cluster-scoped: every
    InferenceService whose STORAGE_URI is a registry URI gets it as its init container, reading
    the MLflow settings of its own namespace."""
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "ClusterStorageContainer",
        "metadata": {"name": STORAGE_CONTAINER},
        "spec": {
            "container": {
                "name": "storage-initializer",
                "image": image,
                "imagePullPolicy": "Always",
                # KServe appends the URI and /mnt/models as the arguments.
                "command": ["python", "-m", "serving.fetch"],
                # The root filesystem is read-only: MLflow's temporary files go beside the model.
                "env": [{"name": "TMPDIR", "value": f"{MODEL_DIR}/.download"}],
                "envFrom": [
                    {"configMapRef": {"name": CONFIG_MAP}},
                    {"secretRef": {"name": MLFLOW_SECRET, "optional": True}},
                ],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "256Mi", "ephemeral-storage": "256Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "2Gi"},
                },
                "securityContext": CONTAINER_SECURITY,
            },
            "supportedUriFormats": [{"prefix": "models:/"}],
            "workloadType": "initContainer",
        },
    }


def write_base(directory: Path, specs: list[ProjectSpec]) -> list[Path]:
    """The checked-in manifests: each project's champion, resolved when a pod starts (so no
    digest: the storage initializer and the server check the version's registry tag instead),
    under `inferenceservices/`, and the storage initializer that fetches it."""
    header = "# Generated by `make generate` from components/core/deploy.py: do not edit.\n"
    (directory / "inferenceservices").mkdir(parents=True, exist_ok=True)
    written = []
    for spec in specs:
        manifest = inference_service(spec, f"models:/{spec.name}@champion", Target())
        path = directory / "inferenceservices" / f"{spec.name}.yaml"
        path.write_text(header + to_yaml(manifest))
        written.append(path)
    path = directory / "storage-container.yaml"
    path.write_text(header + to_yaml(storage_container()))
    return [*written, path]


def main(argv: list[str] | None = None) -> int:
    from components.core.projects import PROJECTS

    parser = argparse.ArgumentParser(
        description="Write the InferenceService manifests and the storage initializer."
    )
    parser.add_argument("directory", type=Path, help="manifests/base")
    args = parser.parse_args(argv)
    for path in write_base(args.directory, [PROJECTS[name] for name in sorted(PROJECTS)]):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
