from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def deploy(
    project: str,
    registration: Input[Artifact],
    mode: str,
    namespace: str,
    serving_image: str,
    manifest: Output[Artifact],
) -> NamedTuple("DeployOutputs", [("model_uri", str), ("action", str)]):  # type: ignore[valid-type]
    """Describes the KServe InferenceService serving the champion, pinned to its version, and in
    mode 'apply' creates or patches it through the Kubernetes API (on a cluster)."""
    import dataclasses
    import json
    from collections import namedtuple

    from components.core import deploy as serving
    from components.core.projects import get_spec

    if mode not in serving.MODES:
        raise serving.DeployError(f"mode {mode!r}: expected one of {', '.join(serving.MODES)}")
    spec = get_spec(project)
    with open(registration.path) as handle:
        chosen = serving.plan(spec, json.load(handle))
    print(chosen.reason)
    action = "none"
    text = f"# {chosen.reason}\n"
    if chosen.model_uri is not None:
        target = serving.Target(namespace=namespace)
        if serving_image:
            target = dataclasses.replace(target, image=serving_image)
        resource = serving.inference_service(spec, chosen.model_uri, target)
        text += serving.to_yaml(resource)
        action = "written"
        if mode == "apply":
            action = serving.apply(resource, serving.in_cluster_api())
        print(f"InferenceService {namespace}/{spec.name} {action}: serves {chosen.model_uri}")
    with open(manifest.path, "w") as handle:
        handle.write(text)
    manifest.metadata.update(
        {"model_uri": chosen.model_uri or "", "action": action, "reason": chosen.reason}
    )
    outputs = namedtuple("DeployOutputs", ["model_uri", "action"])  # type: ignore[name-match]
    return outputs(chosen.model_uri or "", action)
