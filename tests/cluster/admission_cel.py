"""The InferenceService admission policy's CEL, evaluated against sample InferenceServices.

Takes a built overlay, finds the ValidatingAdmissionPolicy, its binding, the parameters
ConfigMap and the InferenceServices, and evaluates the policy's variables and validations as the
API server would for each sample: the overlay's own services must be admitted, with a canary of
the project image too, and each breach (another image repository, a host namespace, a privileged
container, an added capability, another service account, a built-in runtime; in the stable
predictor or in a canary) refused by the validation meant for it.

cel-python evaluates CEL as the language specification defines it; the API server also
type-checks the expressions against KServe's schema and bounds their cost, which it does only
when the policy is created on a cluster.

Runs in the checks' own venv (tests/cluster/tools.lock):

    python tests/cluster/admission_cel.py BUILT.yaml
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy import celtypes

Doc = dict[str, Any]


class Policy:
    def __init__(self, policy: Doc) -> None:
        env = celpy.Environment()
        spec = policy["spec"]
        self.variables = [
            (v["name"], env.program(env.compile(v["expression"]))) for v in spec["variables"]
        ]
        self.validations = [
            (v.get("message") or v["messageExpression"], env.program(env.compile(v["expression"])))
            for v in spec["validations"]
        ]

    def refusals(self, service: Doc, params: Doc) -> list[str]:
        """The messages of the validations that refuse `service` (none: admitted). An
        evaluation error counts as a refusal, as with failurePolicy Fail."""
        activation: dict[str, Any] = {
            "object": celpy.json_to_cel(service),
            "params": celpy.json_to_cel(params),
        }
        variables: dict[celtypes.StringType, Any] = {}
        for name, program in self.variables:
            activation["variables"] = celtypes.MapType(variables)
            variables[celtypes.StringType(name)] = program.evaluate(activation)
        activation["variables"] = celtypes.MapType(variables)
        refused = []
        for message, program in self.validations:
            result = program.evaluate(activation)
            if not isinstance(result, celtypes.BoolType) or not result:
                refused.append(message)
        return refused


def server(service: Doc) -> Doc:
    return service["spec"]["predictor"]["containers"][0]  # type: ignore[no-any-return]


def add_canary(s: Doc) -> None:
    """The stable predictor again as a canary answering 10% (what deploy.Canary writes)."""
    predictor = copy.deepcopy(s["spec"]["predictor"])
    predictor.pop("maxReplicas", None)
    s["spec"]["canary"] = [{"predictor": predictor | {"name": "v8"}, "trafficPercent": 10}]


def canary(change: Callable[[Doc], None]) -> Callable[[Doc], None]:
    """`change` made to the canary's predictor instead of the stable one's."""

    def changed(s: Doc) -> None:
        add_canary(s)
        inner = {"spec": {"predictor": s["spec"]["canary"][0]["predictor"]}}
        change(inner)
        s["spec"]["canary"][0]["predictor"] = inner["spec"]["predictor"]

    return changed


def with_change(service: Doc, change: Callable[[Doc], None]) -> Doc:
    changed = copy.deepcopy(service)
    change(changed)
    return changed


def breaches(repository: str) -> dict[str, tuple[Callable[[Doc], None], str]]:
    """Each sample change, and the start of the message of the validation that must refuse it."""

    def image(value: str) -> Callable[[Doc], None]:
        return lambda s: server(s).__setitem__("image", value)

    def pod(field: str, value: Any) -> Callable[[Doc], None]:
        return lambda s: s["spec"]["predictor"].__setitem__(field, value)

    def security(field: str, value: Any) -> Callable[[Doc], None]:
        return lambda s: server(s).setdefault("securityContext", {}).__setitem__(field, value)

    def transformer(s: Doc) -> None:
        s["spec"]["transformer"] = {
            "serviceAccountName": s["spec"]["predictor"]["serviceAccountName"],
            "containers": [{"name": "t", "image": "docker.io/library/python:3.11"}],
        }

    def explainer(s: Doc) -> None:
        s["spec"]["explainer"] = {
            "serviceAccountName": s["spec"]["predictor"]["serviceAccountName"],
            "containers": [
                {
                    "name": "e",
                    "image": f"{repository}:1",
                    "securityContext": {"privileged": True},
                }
            ],
        }

    def init_container(s: Doc) -> None:
        s["spec"]["predictor"]["initContainers"] = [{"name": "i", "image": "busybox:1"}]

    def runtime(s: Doc) -> None:
        predictor = s["spec"]["predictor"]
        del predictor["containers"]
        predictor["model"] = {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://m"}

    def no_account(s: Doc) -> None:
        del s["spec"]["predictor"]["serviceAccountName"]

    return {
        "another registry": (image("docker.io/evil/mlops-python:0.1.0"), "every container image"),
        "a look-alike repository": (image(f"{repository}-evil:0.1.0"), "every container image"),
        "the bare repository": (image(repository), "every container image"),
        "an init container's image": (init_container, "every container image"),
        "a transformer's image": (transformer, "every container image"),
        "hostNetwork": (pod("hostNetwork", True), "hostNetwork"),
        "hostPID": (pod("hostPID", True), "hostNetwork"),
        "hostIPC": (pod("hostIPC", True), "hostNetwork"),
        "a privileged container": (security("privileged", True), "privileged"),
        "a privileged explainer": (explainer, "privileged"),
        "an added capability": (
            lambda s: server(s)["securityContext"]["capabilities"].__setitem__(
                "add", ["NET_ADMIN"]
            ),
            "containers may not add capabilities",
        ),
        "another service account": (
            pod("serviceAccountName", "default"),
            "every component must run as",
        ),
        "no service account": (no_account, "every component must run as"),
        "a built-in runtime": (runtime, "every predictor (spec.predictor and each"),
        "a canary's image": (
            canary(image("docker.io/evil/mlops-python:0.1.0")),
            "every container image",
        ),
        "a canary's privileged container": (canary(security("privileged", True)), "privileged"),
        "a canary's host network": (canary(pod("hostNetwork", True)), "hostNetwork"),
        "a canary's service account": (
            canary(pod("serviceAccountName", "default")),
            "every component must run as",
        ),
        "a canary on a built-in runtime": (canary(runtime), "every predictor (spec.predictor"),
    }


def admitted_changes(repository: str) -> dict[str, Callable[[Doc], None]]:
    digest = "sha256:" + "0" * 64
    return {
        "a pinned digest": lambda s: server(s).__setitem__("image", f"{repository}@{digest}"),
        "no securityContext at all": lambda s: server(s).pop("securityContext"),
        "an empty capability list": lambda s: server(s)["securityContext"][
            "capabilities"
        ].__setitem__("add", []),
        "hostNetwork false": lambda s: s["spec"]["predictor"].__setitem__("hostNetwork", False),
        "a canary of the project image": add_canary,
    }


def main(path: str) -> int:
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    [policy_doc] = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
    [binding] = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    services = [d for d in docs if d["kind"] == "InferenceService"]
    [params] = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == binding["spec"]["paramRef"]["name"]
    ]
    [namespace] = [d for d in docs if d["kind"] == "Namespace"]
    failures = []
    passed = 0

    def expect(ok: bool, what: str) -> None:
        nonlocal passed
        if ok:
            passed += 1
        else:
            failures.append(what)

    expect(binding["spec"]["policyName"] == policy_doc["metadata"]["name"], "binding's policy")
    expect(binding["spec"]["validationActions"] == ["Deny"], "binding denies")
    selector = binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]
    expect(
        selector.items() <= namespace["metadata"].get("labels", {}).items(),
        "the binding selects the overlay's namespace",
    )
    policy = Policy(policy_doc)
    repository = params["data"]["imageRepository"]
    for service in services:
        name = service["metadata"]["name"]
        refused = policy.refusals(service, params)
        expect(not refused, f"{name} as built is admitted (refused: {refused})")
        for what, change in admitted_changes(repository).items():
            refused = policy.refusals(with_change(service, change), params)
            expect(not refused, f"{name} with {what} is admitted (refused: {refused})")
        for what, (change, message) in breaches(repository).items():
            refused = policy.refusals(with_change(service, change), params)
            expect(
                any(m.startswith(message) or message in m for m in refused),
                f"{name} with {what} is refused by '{message}...' (refused: {refused})",
            )
    for failure in failures:
        print(f"FAILED: {failure}")
    print(f"admission policy CEL: {passed} passed, {len(failures)} failed")
    return 1 if failures or not services else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
