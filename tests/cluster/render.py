"""Each InferenceService's predictor as the Deployment KServe's raw mode makes of it, for the
scanners that know Deployments and not KServe's kind (checkov, the Kubernetes schema).

KServe copies the predictor's pod fields (containers, volumes, security context, account, ...)
into the Deployment's pod template, adds its own labels beside the predictor's, and sizes it
from minReplicas; the fields of the component itself (replicas, scaling, logger, batcher, ...)
stay on the InferenceService. That is what this projection does; it is not KServe's code, and
KServe's defaults that do not touch security (probes' timeouts, rollout strategy) are left out.

    python -m tests.cluster.render BUILT.yaml > deployments.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

# Fields of KServe's ComponentExtensionSpec and PredictorSpec that are not pod fields.
COMPONENT_FIELDS = {
    "name",
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "scaleMetricType",
    "autoScaling",
    "containerConcurrency",
    "timeout",
    "canaryTrafficPercent",
    "logger",
    "batcher",
    "labels",
    "annotations",
    "deploymentStrategy",
    "workerSpec",
    "storageUris",
    "model",
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "pmml",
    "lightgbm",
    "paddle",
    "huggingface",
}


def predictor_deployment(
    service: dict[str, Any], predictor: dict[str, Any], component: str
) -> dict[str, Any]:
    meta = service["metadata"]
    name = meta["name"]
    selector = {"app": f"isvc.{component}"}
    labels = (
        dict(meta.get("labels", {}))
        | dict(predictor.get("labels", {}))
        | {"serving.kserve.io/inferenceservice": name, "component": "predictor"}
        | selector
    )
    annotations = dict(meta.get("annotations", {})) | dict(predictor.get("annotations", {}))
    pod_spec = {k: v for k, v in predictor.items() if k not in COMPONENT_FIELDS}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": component,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "replicas": predictor.get("minReplicas", 1),
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }


def service_deployments(service: dict[str, Any]) -> list[dict[str, Any]]:
    """The stable predictor's Deployment, and one per canary: `<service>-<name>-predictor`
    (KServe names a canary's Deployment after its predictor's name)."""
    name = service["metadata"]["name"]
    stable = service["spec"]["predictor"]
    out = [predictor_deployment(service, stable, f"{name}-predictor")]
    for canary in service["spec"].get("canary", []):
        predictor = canary["predictor"]
        out.append(
            predictor_deployment(service, predictor, f"{name}-{predictor['name']}-predictor")
        )
    return out


def deployments(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        deployment
        for doc in documents
        if doc.get("kind") == "InferenceService"
        and doc.get("apiVersion", "").startswith("serving.kserve.io/")
        for deployment in service_deployments(doc)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("built", type=Path, help="output of `kubectl kustomize <overlay>`")
    args = parser.parse_args(argv)
    documents = [d for d in yaml.safe_load_all(args.built.read_text()) if d]
    rendered = deployments(documents)
    if not rendered:
        parser.error(f"{args.built} holds no InferenceService")
    sys.stdout.write(yaml.safe_dump_all(rendered, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
