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
):
    """Describes the KServe InferenceService serving the champion, pinned to its version, and in
    mode 'apply' creates or patches it through the Kubernetes API (on a cluster). `manifest` is
    the pipeline's `inference_service` output; its metadata names the model URI served, the
    action taken and why."""
    from pathlib import Path

    from components.core import deploy as logic
    from components.core.contracts import Registration
    from components.core.projects import get_spec

    spec = get_spec(project)
    done = logic.deploy(spec, Registration.read(registration.path), mode, namespace, serving_image)
    print(done.reason)
    if done.model_uri:
        print(f"InferenceService {namespace}/{spec.name} {done.action}: serves {done.model_uri}")
    Path(manifest.path).write_text(done.manifest)
    manifest.metadata.update(
        {"model_uri": done.model_uri, "action": done.action, "reason": done.reason}
    )
