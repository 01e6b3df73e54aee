"""The checked-in IR YAML is what the source compiles to, and it has the expected shape."""

from pathlib import Path
from typing import Any

import pytest

from components.core.deploy import (
    MLFLOW_SECRET,
    MLFLOW_SECRET_KEYS,
    NOTIFY_SECRET,
    NOTIFY_SECRET_KEY,
)
from components.core.notice import URL_ENV
from components.core.projects import PROJECTS
from components.image import IMAGE
from pipelines import batch_scoring
from pipelines.compile import (
    EXIT_HANDLER,
    KINDS,
    body_of,
    compile_all,
    compiled_name,
    compiled_path,
    load_compiled,
)
from pipelines.monitoring import RETRAINING_STEPS
from pipelines.monitoring import STEPS as MONITORING_STEPS
from pipelines.notice import NOTIFY_STEP
from pipelines.training import STEPS, described, steps_of

COMPILED = [(project, kind) for kind in KINDS for project in sorted(PROJECTS)]
TRAINING_KINDS = [(project, kind) for project, kind in COMPILED if kind != batch_scoring.KIND]
"""The pipelines that train (the monitoring pipeline retrains)."""


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compiled")
    compile_all(out)
    return out


@pytest.mark.parametrize(("project", "kind"), COMPILED)
def test_checked_in_yaml_matches_the_source(project: str, kind: str, fresh: Path) -> None:
    name = compiled_name(project, kind)
    assert compiled_path(project, kind).read_text() == (fresh / name).read_text(), (
        f"pipelines/compiled/{name} is stale: run `make compile-pipelines`"
    )


@pytest.mark.parametrize(("project", "kind"), COMPILED)
def test_every_pipeline_parameter_is_described_for_the_kfp_ui(project: str, kind: str) -> None:
    spec, _ = load_compiled(project, kind)
    undescribed = [
        name
        for name, definition in params_of(spec).items()
        if not definition.get("description", "").strip()
    ]
    assert undescribed == []


@pytest.mark.parametrize(("project", "kind"), COMPILED)
def test_the_mlflow_server_has_no_default(project: str, kind: str) -> None:
    """No default could work, so a run needs one."""
    tracking = params_of(load_compiled(project, kind)[0])["mlflow_tracking_uri"]
    assert "defaultValue" not in tracking and not tracking.get("isOptional", False)


@pytest.mark.parametrize(("project", "kind"), TRAINING_KINDS)
def test_no_parameter_default_a_user_must_guess(project: str, kind: str) -> None:
    """The search's trials default to the project's own figure, not a 0 that stands for it."""
    params = params_of(load_compiled(project, kind)[0])
    assert params["trials_per_candidate"]["defaultValue"] == PROJECTS[project].search_trials
    assert (
        f"{PROJECTS[project].search_trials} is this project's default"
        in (params["trials_per_candidate"]["description"])
    )


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_the_synthetic_default_source_says_what_a_synthetic_model_may_not_do(
    project: str,
) -> None:
    source = params_of(load_compiled(project)[0])["source"]
    assert source["defaultValue"] == "synthetic"
    assert "labelled SYNTHETIC" in source["description"]
    assert "never promoted over a champion trained on real data" in source["description"]


def test_a_pipeline_parameter_without_a_description_is_refused() -> None:
    def pipeline(source: str, seed: int = 42) -> None:
        pass

    with pytest.raises(ValueError, match=r"undescribed \['seed'\], described but absent \['sed'\]"):
        described("A pipeline.", {"source": "the data", "sed": "the seed"})(pipeline)
    described("A pipeline.", {"source": "the data", "seed": "the seed"})(pipeline)
    assert pipeline.__doc__ == "A pipeline.\n\nArgs:\n    source: the data\n    seed: the seed"


UI_KINDS = {"system.Metrics", "system.ClassificationMetrics", "system.HTML", "system.Markdown"}
"""Artifacts the KFP UI renders: a step writes them for a reader of the run."""


def unread_artifacts(spec: dict[str, Any]) -> list[str]:
    """`<dag>/<task>.<output>` of every artifact a task writes that no task of its DAG reads, that
    is not an output of the DAG, and that the KFP UI does not render."""
    dags = {"root": spec["root"]["dag"]}
    dags |= {name: c["dag"] for name, c in spec["components"].items() if "dag" in c}
    unread = []
    for dag_name, dag in dags.items():
        read = {
            (
                binding["taskOutputArtifact"]["producerTask"],
                binding["taskOutputArtifact"]["outputArtifactKey"],
            )
            for task in dag["tasks"].values()
            for binding in task.get("inputs", {}).get("artifacts", {}).values()
            if "taskOutputArtifact" in binding
        }
        read |= {
            (selector["producerSubtask"], selector["outputArtifactKey"])
            for output in dag.get("outputs", {}).get("artifacts", {}).values()
            for selector in output["artifactSelectors"]
        }
        for task_name, task in dag["tasks"].items():
            component = spec["components"][task["componentRef"]["name"]]
            for key, output in component.get("outputDefinitions", {}).get("artifacts", {}).items():
                kind = output["artifactType"]["schemaTitle"]
                if (task_name, key) not in read and kind not in UI_KINDS:
                    unread.append(f"{dag_name}/{task_name}.{key}")
    return unread


@pytest.mark.parametrize(("project", "kind"), COMPILED)
def test_every_artifact_a_step_writes_is_read_returned_or_shown(project: str, kind: str) -> None:
    spec, _ = load_compiled(project, kind)
    # A retraining's InferenceService manifest: written inside the retrain condition, whose
    # outputs cannot be the pipeline's (the condition has no branch for "no retraining").
    expected = {
        "training": [],
        "monitoring": ["comp-condition-2/deploy.manifest"],
        batch_scoring.KIND: [],
    }[kind]
    assert unread_artifacts(spec) == expected


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_compiled_pipeline_has_every_step_on_the_one_image(project: str) -> None:
    spec, _ = load_compiled(project)
    assert spec["pipelineInfo"]["name"] == f"{project}-training"
    assert set(spec["root"]["dag"]["tasks"]) == {EXIT_HANDLER, NOTIFY_STEP}
    assert set(body_of(spec)["tasks"]) == set(steps_of(PROJECTS[project]))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE}
    for executor in spec["deploymentSpec"]["executors"].values():
        # No runtime pip: the image carries the package.
        assert "pip install" not in " ".join(executor["container"]["command"])
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"source", "seed", "test_size", "gate_overrides", "mlflow_tracking_uri"} <= set(params)
    assert params["gate_overrides"]["defaultValue"] == "{}"


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_only_the_steps_that_talk_to_mlflow_read_its_optional_credentials(project: str) -> None:
    _, platform = load_compiled(project)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-drift", "exec-register", "exec-notify"}
    for executor in executors.values():
        [binding] = [b for b in executor["secretAsEnv"] if b["secretName"] == MLFLOW_SECRET]
        assert binding["optional"] is True
        assert [k["envVar"] for k in binding["keyToEnv"]] == list(MLFLOW_SECRET_KEYS)


def test_artifact_types_are_the_ones_the_kfp_ui_renders() -> None:
    spec, _ = load_compiled("bankchurn")
    components = spec["components"]

    def outputs(name: str) -> dict[str, str]:
        artifacts = components[f"comp-{name}"]["outputDefinitions"]["artifacts"]
        return {k: v["artifactType"]["schemaTitle"] for k, v in artifacts.items()}

    assert outputs("evaluate") == {
        "metrics": "system.Metrics",
        "classification": "system.ClassificationMetrics",
        "report": "system.HTML",
        "evaluation": "system.Artifact",
    }
    assert outputs("train")["model"] == "system.Model"
    assert outputs("ingest")["train"] == "system.Dataset"
    assert outputs("register")["model_card"] == "system.Markdown"
    drift_params = components["comp-drift"]["outputDefinitions"]["parameters"]
    assert drift_params["drift_detected"]["parameterType"] == "BOOLEAN"
    # register and explain only start after the gate passed / the model exists
    dag = body_of(spec)["tasks"]
    assert "evaluate" in dag["register"]["dependentTasks"]
    assert dag["deploy"]["dependentTasks"] == ["register"]
    assert params_of(spec)["deploy_mode"]["defaultValue"] == "manifest"


def params_of(spec: dict) -> dict:  # type: ignore[type-arg]
    return spec["root"]["inputDefinitions"]["parameters"]


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_the_monitoring_pipeline_retrains_only_on_the_checks_word(project: str) -> None:
    """collect, check, publish and rollout always; the training steps, after prepare-retraining, inside
    a condition on what check answered; only the steps that talk to MLflow get its credentials."""
    spec, platform = load_compiled(project, "monitoring")
    assert spec["pipelineInfo"]["name"] == f"{project}-monitoring"
    tasks = body_of(spec)["tasks"]
    [branch] = [name for name in tasks if name not in MONITORING_STEPS]
    assert set(tasks) == {*MONITORING_STEPS, branch}
    assert tasks[branch]["taskInfo"]["name"] == "retrain"
    condition = tasks[branch]["triggerPolicy"]["condition"]
    assert condition == "inputs.parameter_values['pipelinechannel--check-Output'] == true"
    inside = spec["components"][tasks[branch]["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inside) == set(RETRAINING_STEPS)
    assert set(STEPS) - {"ingest"} <= set(inside)
    register = inside["register"]["inputs"]["artifacts"]
    assert register["holdout"]["taskOutputArtifact"]["producerTask"] == "prepare-retraining"
    assert register["monitoring"]["componentInputArtifact"].startswith("pipelinechannel--check-")
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == {
        "exec-check",
        "exec-rollout",
        "exec-prepare-retraining",
        "exec-drift",
        "exec-register",
        "exec-notify",
    }
    params = params_of(spec)
    assert params["retrain"]["defaultValue"] is True
    assert {"retrain_min_labelled_rows", "holdout_share", "retrain_source"} <= set(params)
    assert params["rollout_approval"]["defaultValue"] == "automatic"
    assert params["rollout_policy"]["defaultValue"] == "{}"
    judged = tasks["rollout"]
    assert judged["dependentTasks"] == ["compact-log"]
    assert judged["inputs"]["parameters"]["approval"]["componentInputParameter"] == (
        "pipelinechannel--rollout_approval"
    )


@pytest.mark.parametrize("project", sorted(PROJECTS))
def test_the_batch_pipeline_scores_shards_in_parallel_and_merges_them(project: str) -> None:
    """resolve and validate-rows, then drift-check, split, one score task per shard in a
    ParallelFor over split's list of shards, and merge reading every shard's output; only the
    steps that talk to MLflow get its credentials; the steps that read the registry or the
    source are never cached."""
    spec, platform = load_compiled(project, batch_scoring.KIND)
    assert spec["pipelineInfo"]["name"] == f"{project}-batch-scoring"
    tasks = body_of(spec)["tasks"]
    [loop] = [name for name in tasks if name.startswith("for-loop")]
    assert {t["taskInfo"]["name"] for t in tasks.values()} == {
        *set(batch_scoring.STEPS) - {"score"},
        "shards",
    }
    items = tasks[loop]["parameterIterator"]["items"]["inputParameter"]
    assert items == "pipelinechannel--split-Output"
    inside = spec["components"][tasks[loop]["componentRef"]["name"]]["dag"]["tasks"]
    assert [t["taskInfo"]["name"] for t in inside.values()] == ["score"]
    parts = tasks["merge"]["inputs"]["artifacts"]["parts"]["taskOutputArtifact"]
    assert parts["producerTask"] == loop
    assert set(tasks["split"]["dependentTasks"]) == {"drift-check", "validate-rows"}
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE}
    for name in ("resolve", "validate-rows", "drift-check"):
        assert not tasks[name].get("cachingOptions", {}).get("enableCache"), name
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == {
        "exec-resolve",
        "exec-drift-check",
        "exec-score",
        "exec-merge",
        "exec-notify",
    }
    params = params_of(spec)
    assert "defaultValue" not in params["source"]
    assert params["drift_gate"]["defaultValue"] == "warn"
    assert params["with_reasons"]["defaultValue"] is PROJECTS[project].task.with_reasons
    assert params["allow_unverified_model"]["defaultValue"] is False


@pytest.mark.parametrize(("project", "kind"), COMPILED)
def test_every_run_ends_in_a_notice_whose_url_is_a_secret_not_a_parameter(
    project: str, kind: str
) -> None:
    """The body runs in an exit handler; `notify` runs after it whatever it did, never from the
    cache (it would post nothing), with the run's final status and id, the URL from the
    optional Secret and no parameter of the run naming it; the pipeline's outputs come out of
    the handler. The training steps tag what they register with the same run id."""
    spec, platform = load_compiled(project, kind)
    exit_task = spec["root"]["dag"]["tasks"][NOTIFY_STEP]
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert exit_task["dependentTasks"] == [EXIT_HANDLER]
    assert not exit_task.get("cachingOptions", {}).get("enableCache")
    inputs = exit_task["inputs"]["parameters"]
    assert inputs["status"] == {"taskFinalStatus": {"producerTask": EXIT_HANDLER}}
    assert inputs["pipeline_name"]["runtimeValue"]["constant"] == spec["pipelineInfo"]["name"]
    run_id = inputs["run_id"]["runtimeValue"]["constant"]
    assert run_id == "{{$.pipeline_job_uuid}}"
    assert inputs["with_registry"]["runtimeValue"]["constant"] is (kind != batch_scoring.KIND)
    assert not [name for name in params_of(spec) if "notif" in name or "url" in name.lower()]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    [binding] = [
        b for b in executors["exec-notify"]["secretAsEnv"] if b["secretName"] == NOTIFY_SECRET
    ]
    assert binding["optional"] is True
    assert binding["keyToEnv"] == [{"envVar": URL_ENV, "secretKey": NOTIFY_SECRET_KEY}]
    outputs = spec["root"]["dag"]["outputs"]["artifacts"]
    assert outputs and all(
        output["artifactSelectors"]
        == [{"outputArtifactKey": name, "producerSubtask": EXIT_HANDLER}]
        for name, output in outputs.items()
    )
    assert set(body_of(spec)["outputs"]["artifacts"]) == set(outputs)
    if kind != batch_scoring.KIND:
        registers = [
            task
            for c in spec["components"].values()
            for task in c.get("dag", {}).get("tasks", {}).values()
            if task["taskInfo"]["name"] == "register"
        ]
        assert [
            r["inputs"]["parameters"]["kfp_run_id"]["runtimeValue"]["constant"] for r in registers
        ] == [run_id]
