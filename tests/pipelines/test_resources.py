"""Every task of every compiled pipeline asks for CPU and memory and is limited in both, with the
figures of pipelines/resources.py; the steps that talk to the network retry with a backoff, and
the others do not (a failed gate or a schema violation fails the same way every time)."""

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.core import engine
from components.core.projects import PROJECTS
from pipelines import resources
from pipelines.compile import KINDS, body_of, load_compiled

COMPILED = [(project, kind) for kind in KINDS for project in sorted(PROJECTS)]
NETWORK_STEPS = {
    "ingest",  # reads the source: a path or an http(s) URL
    "market",  # reads the source again
    "drift",  # MLflow: the champion's reference
    "register",  # MLflow: run, model, aliases
    "deploy",  # the Kubernetes API in mode apply
    "compact-log",  # the inference log (object store); compacting again is safe
    "collect",  # the inference log (object store) or a URL
    "check",  # MLflow
    "publish",  # the Pushgateway
    "rollout",  # MLflow and the inference log; a look moves a version only once
    "prepare-retraining",  # MLflow and the champion's source
    "resolve",  # MLflow
    "validate-rows",  # reads the source
    "drift-check",  # MLflow
    "score",  # MLflow: downloads the pinned model
    "merge",  # MLflow: the version's reference
}
FIELDS = {
    "cpuRequest": "resourceCpuRequest",
    "cpuLimit": "resourceCpuLimit",
    "memoryRequest": "resourceMemoryRequest",
    "memoryLimit": "resourceMemoryLimit",
}


def tasks(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(display name, task, its container) of every task of a compiled pipeline, in every DAG:
    the root and the sub-DAGs of ParallelFor and If."""
    components = spec["components"]
    executors = spec["deploymentSpec"]["executors"]
    dags = [spec["root"]["dag"], *(c["dag"] for c in components.values() if "dag" in c)]
    for dag in dags:
        for task in dag["tasks"].values():
            component = components[task["componentRef"]["name"]]
            if "executorLabel" in component:  # else a sub-DAG, whose tasks are listed with it
                container = executors[component["executorLabel"]]["container"]
                yield task["taskInfo"]["name"], task, container


def problems(spec: dict[str, Any]) -> list[str]:
    found = []
    for name, task, container in tasks(spec):
        given = container.get("resources", {})
        missing = [field for field in FIELDS if not given.get(field)]
        if missing:
            found.append(f"{name}: no {', '.join(missing)}")
        retry = task.get("retryPolicy", {})
        if name in NETWORK_STEPS and not (
            retry.get("maxRetryCount", 0) > 0 and retry.get("backoffDuration")
        ):
            found.append(f"{name}: talks to the network and does not retry with a backoff")
        if name not in NETWORK_STEPS and retry:
            found.append(f"{name}: retries, but nothing it does is worth a second try")
    return found


@pytest.mark.parametrize(("project", "kind"), COMPILED)
def test_every_task_has_requests_and_limits_and_the_network_steps_retry(
    project: str, kind: str
) -> None:
    spec, _ = load_compiled(project, kind)
    assert problems(spec) == []


@pytest.mark.parametrize(("project", "kind"), COMPILED)
def test_the_compiled_figures_are_the_measured_table(project: str, kind: str) -> None:
    spec, _ = load_compiled(project, kind)
    for name, task, container in tasks(spec):
        sized = resources.STEPS[name]
        given = container["resources"]
        assert given["resourceCpuRequest"] == sized.cpu_request, name
        assert given["resourceCpuLimit"] == sized.cpu_limit, name
        assert given["resourceMemoryRequest"] == sized.memory_request, name
        assert given["resourceMemoryLimit"] == sized.memory_limit, name
        if name in NETWORK_STEPS:
            assert task["retryPolicy"]["maxRetryCount"] == resources.RETRIES, name
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        cap = None if sized.engine_mb is None else str(sized.engine_mb)
        assert env.get(engine.MEMORY_ENV) == cap, name


def test_a_task_without_them_is_caught() -> None:
    spec, _ = load_compiled("telecom")
    broken = copy.deepcopy(spec)
    body = body_of(broken)["tasks"]
    trained = body["train"]
    label = broken["components"][trained["componentRef"]["name"]]["executorLabel"]
    del broken["deploymentSpec"]["executors"][label]["container"]["resources"]["memoryLimit"]
    del body["register"]["retryPolicy"]
    trained["retryPolicy"] = {"maxRetryCount": 1}
    assert sorted(problems(broken)) == [
        "register: talks to the network and does not retry with a backoff",
        "train: no memoryLimit",
        "train: retries, but nothing it does is worth a second try",
    ]


def test_the_table_sizes_each_step_once_with_requests_within_limits() -> None:
    assert resources.ENGINE_MEMORY_ENV == engine.MEMORY_ENV
    assert {name for name, sized in resources.STEPS.items() if sized.network} == NETWORK_STEPS
    for name, sized in resources.STEPS.items():
        assert resources.cores(sized.cpu_request) <= resources.cores(sized.cpu_limit), name
        assert resources.mebibytes(sized.memory_request) <= resources.mebibytes(
            sized.memory_limit
        ), name


def local_cache_keys(pipeline: Any) -> dict[str, str]:
    """kfp.local's own cache key of each executor, for the same inputs."""
    from kfp.local import cache, utils

    graph = pipeline.component_spec.implementation.graph
    keys = {}
    for label, struct in graph.deployment_spec["executors"].items():
        container = utils.struct_to_executor_spec(struct).container
        keys[label] = cache.LocalCache("unused").compute_key(
            component_name=label,
            image=container.image,
            full_command=[*container.command, *container.args],
            arguments={"source": "same"},
            env_vars={e.name: e.value for e in container.env},
        )
    return keys


@pytest.fixture
def fresh_local_runs() -> Iterator[None]:
    """for_local_run builds each pipeline once per process: build again, and leave none built
    from the code this test plants."""
    resources.for_local_run.cache_clear()
    yield
    resources.for_local_run.cache_clear()


def test_a_local_run_misses_the_cache_when_the_step_code_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_local_runs: None
) -> None:
    from pipelines.training import PIPELINES

    code = tmp_path / "components"
    (code / "core").mkdir(parents=True)
    (code / "core" / "spec.py").write_text("TREES = 1000\n")
    monkeypatch.setattr(resources, "STEP_CODE", code)

    def keys() -> dict[str, str]:
        resources.for_local_run.cache_clear()
        return local_cache_keys(resources.for_local_run(PIPELINES["telecom"]))

    before, again = keys(), keys()
    (code / "core" / "spec.py").write_text("TREES = 300\n")
    after = keys()
    assert before == again
    assert set(after) == set(before) and all(after[k] != before[k] for k in before)


def test_the_source_digest_covers_every_python_file_by_path_and_content(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.py").write_text("1\n")
    (tmp_path / "notes.txt").write_text("not code")
    first = resources.source_digest(tmp_path)
    (tmp_path / "notes.txt").write_text("still not code")
    assert resources.source_digest(tmp_path) == first
    (tmp_path / "a" / "x.py").rename(tmp_path / "a" / "y.py")
    moved = resources.source_digest(tmp_path)
    assert moved != first
    (tmp_path / "a" / "y.py").write_text("2\n")
    assert resources.source_digest(tmp_path) not in (first, moved)
