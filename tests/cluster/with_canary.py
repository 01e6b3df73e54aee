"""A built overlay with every InferenceService as the deploy step writes it mid-rollout: the
champion pinned to a version and a canary of the next one answering 10% (`spec.canary`), for
the schema, admission-policy and checkov checks of `make check-manifests`.

Each service keeps the overlay's namespace, image, replicas and resources; every other document
stays as built.

    python -m tests.cluster.with_canary BUILT.yaml > with-canary.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from components.core import deploy
from components.core.projects import get_spec

STABLE_VERSION, CANARY_VERSION, CANARY_SHARE = 7, 8, 0.1


def mid_rollout(service: dict[str, Any]) -> dict[str, Any]:
    predictor = service["spec"]["predictor"]
    resources = predictor["containers"][0]["resources"]
    target = deploy.Target(
        namespace=service["metadata"]["namespace"],
        image=predictor["containers"][0]["image"],
        min_replicas=predictor["minReplicas"],
        max_replicas=predictor["maxReplicas"],
        cpu_request=resources["requests"]["cpu"],
        memory_request=resources["requests"]["memory"],
        cpu_limit=resources["limits"]["cpu"],
        memory_limit=resources["limits"]["memory"],
    )
    name = service["metadata"]["name"]
    rolled = deploy.inference_service(
        get_spec(name),
        f"models:/{name}/{STABLE_VERSION}",
        target,
        canary=deploy.Canary.of_share(f"models:/{name}/{CANARY_VERSION}", CANARY_SHARE),
    )
    # What the overlay added (its common labels) stays.
    rolled["metadata"]["labels"] = service["metadata"]["labels"] | rolled["metadata"]["labels"]
    return rolled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("built", type=Path, help="output of `kubectl kustomize <overlay>`")
    args = parser.parse_args(argv)
    documents = [d for d in yaml.safe_load_all(args.built.read_text()) if d]
    services = [d for d in documents if d.get("kind") == "InferenceService"]
    if not services:
        parser.error(f"{args.built} holds no InferenceService")
    out = [mid_rollout(d) if d.get("kind") == "InferenceService" else d for d in documents]
    sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
