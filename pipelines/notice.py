"""Every pipeline's body runs inside a `dsl.ExitHandler` whose exit task, `notify`, posts the
run's outcome (components/core/notice.py): `with notified(...)` around the body, then
`returning(pipeline, outputs)` for the pipeline's outputs.

KFP's compiler takes a pipeline's outputs only from tasks at its top level, and an exit
handler's body is not; `returning` declares them through the handler's DAG instead, the shape
the compiler gives a sub-pipeline's outputs, so that `kfp.local` still hands a run's outputs
back (`make run`, `make monitor`, `make score` read them).
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kfp import dsl
from kfp.dsl import PipelineTask
from kfp.dsl.pipeline_channel import PipelineArtifactChannel
from kfp.pipeline_spec import pipeline_spec_pb2

from components.core.spec import ProjectSpec
from components.steps import notify
from pipelines.bindings import use_mlflow_credentials, use_notify_url
from pipelines.resources import sized

NOTIFY_STEP = "notify"


@contextmanager
def notified(
    spec: ProjectSpec, kind: str, mlflow_tracking_uri: Any, with_registry: bool = True
) -> Iterator[PipelineTask]:
    """The tasks made inside run in an exit handler whose `notify` task posts the outcome of the
    project's `kind` pipeline (with the registry's decision, `with_registry`)."""
    task = sized(
        notify(
            project=spec.name,
            pipeline_name=f"{spec.name}-{kind}",
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            pipeline_root=dsl.PIPELINE_ROOT_PLACEHOLDER,
            mlflow_tracking_uri=mlflow_tracking_uri,
            with_registry=with_registry,
        ),
        NOTIFY_STEP,
    )
    # Its inputs are the same on every successful run: from the cache, nothing would be posted.
    task.set_caching_options(False)
    use_notify_url(task)
    if with_registry:
        use_mlflow_credentials(task)
    with dsl.ExitHandler(task):
        yield task


def returning(pipeline: Any, outputs: Mapping[str, PipelineArtifactChannel]) -> Any:
    """The pipeline, with `outputs` (artifacts of tasks in its exit handler) as its outputs."""
    graph = pipeline.pipeline_spec
    root = graph.root
    [handler] = [
        name
        for name, task in root.dag.tasks.items()
        if graph.components[task.component_ref.name].HasField("dag")
    ]
    body = graph.components[root.dag.tasks[handler].component_ref.name]
    for name, channel in outputs.items():
        if channel.task_name not in body.dag.tasks:
            raise ValueError(
                f"output {name}: {channel.task_name} is not a task of the exit handler"
            )
        producer = graph.components[body.dag.tasks[channel.task_name].component_ref.name]
        artifact = producer.output_definitions.artifacts[channel.name]
        for component, subtask, key in (
            (body, channel.task_name, channel.name),
            (root, handler, name),
        ):
            component.output_definitions.artifacts[name].CopyFrom(artifact)
            component.dag.outputs.artifacts[name].artifact_selectors.append(
                pipeline_spec_pb2.DagOutputsSpec.ArtifactSelectorSpec(
                    producer_subtask=subtask, output_artifact_key=key
                )
            )
    return pipeline
