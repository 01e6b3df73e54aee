"""Shared fixtures: small synthetic splits, a quick-trained model per project, a real MLflow store."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

# Under `pytest -n`, each worker (and the steps and servers it starts) computes on one thread:
# two processes whose OpenMP threads each spin for both cores run many times slower. Set before
# the imports below load the OpenMP runtime.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd
import pytest

from components.core import ingest
from components.core.projects import PROJECTS
from components.core.spec import ProjectSpec
from tests.support import data

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# A webhook of the developer's must not get the suite's notices: the tests that want notices
# point NOTIFY_URL at their own receiver.
os.environ.pop("NOTIFY_URL", None)

SMALL_ROWS = 1500
"""Synthetic rows a project's small split is drawn from (telecom's 1,200: its generator's
classes separate well enough on fewer)."""
SMALL_ROWS_OF = {"telecom": 1200}


def real_data_path(spec: ProjectSpec) -> Path:
    """The project's real file; skips the test, naming the path looked at, when it is absent."""
    path = data.real_file(spec)
    if path is None:
        pytest.skip(data.missing(spec))
    return path


@pytest.fixture(scope="session", params=sorted(PROJECTS))
def spec(request: pytest.FixtureRequest) -> ProjectSpec:
    return PROJECTS[request.param]


_SPLITS: dict[str, ingest.Split] = {}
_MODELS: dict[str, object] = {}


def small_split(spec: ProjectSpec) -> ingest.Split:
    if spec.name not in _SPLITS:
        frame, _ = ingest.load(
            spec, f"synthetic:{SMALL_ROWS_OF.get(spec.name, SMALL_ROWS)}", seed=7
        )
        _SPLITS[spec.name] = ingest.split(spec, frame, 0.25, seed=7)
    return _SPLITS[spec.name]


def quick_spec(spec: ProjectSpec) -> ProjectSpec:
    """The project with each candidate at its default parameters: fast, every stage still runs."""
    return dataclasses.replace(
        spec, candidates=tuple(dataclasses.replace(c, search_space={}) for c in spec.candidates)
    )


def quick_model(spec: ProjectSpec):  # type: ignore[no-untyped-def]
    """One trial per candidate on the small synthetic split."""
    from components.core.train import train

    if spec.name not in _MODELS:
        _MODELS[spec.name] = train(
            quick_spec(spec), small_split(spec).train, seed=7, trials_per_candidate=1
        )
    return _MODELS[spec.name]


_CANDIDATES: dict[tuple[str, str], tuple[ProjectSpec, object]] = {}


def fitted_candidate(project: str, candidate: str) -> tuple[ProjectSpec, object]:
    """One candidate of a project fitted at its default parameters on the small synthetic split,
    wrapped as the train step wraps it (calibration where the spec asks, bankchurn's threshold).
    Shared by the tests of every candidate (group `candidates`, one worker)."""
    from sklearn.model_selection import FixedThresholdClassifier

    from components.core.tasks import calibrated
    from components.core.train import build_pipeline, folds, split_xy

    if (project, candidate) not in _CANDIDATES:
        spec = quick_spec(PROJECTS[project])
        X, y = split_xy(spec, small_split(spec).train)
        model = build_pipeline(spec, spec.candidate(candidate), seed=7)
        if spec.task.calibrate:
            model = calibrated(model, folds(spec, 7))
        if project == "bankchurn":
            # off the forests' vote fractions (k/100), where float sums in another order may tie
            model = FixedThresholdClassifier(model, threshold=0.3123)
        _CANDIDATES[project, candidate] = (spec, model.fit(X, y))
    return _CANDIDATES[project, candidate]


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One real SQLite store for the session: creating one costs a schema migration."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return f"sqlite:///{path}"


def frame_without_target(spec: ProjectSpec, frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[spec.target])


# The groups that take longest, longest first (each 1 to 3 minutes of one worker in a full
# run). `make test` keeps the collection's order of groups (--no-loadscope-reorder): handed out
# longest first, they end together instead of one starting on a worker the other has left idle.
LONGEST_GROUPS = (
    "pipelines/test_loop",
    "pipelines/test_fourth_project",
    "pipelines/test_local_run",
    "serving",
    "pipelines/test_local_cli",
    "pipelines/test_batch_scoring",
    "apps",
    "candidates",
)


def group_of(item: pytest.Item) -> str | None:
    """The xdist group a test shares with the tests whose servers or fixtures it shares."""
    parts = item.path.relative_to(Path(__file__).parent).parts
    if parts[0] in ("serving", "apps"):
        return parts[0]
    if parts[0] == "pipelines":
        return f"pipelines/{item.path.stem}"
    if "candidate" in item.name:
        return "candidates"
    return None


def schedule_rank(group: str | None) -> int:
    return LONGEST_GROUPS.index(group) if group in LONGEST_GROUPS else len(LONGEST_GROUPS)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups for `pytest -n` (`make test`, `--dist loadgroup`): the serving tests share one set
    of model servers, started once, so they stay on one worker; each pipelines module keeps its
    module fixtures (a registered champion, a kfp.local store) on one worker too; so do the
    dashboard's tests, which share one predictor and one app server. The longest groups come
    first. First of the collection hooks: xdist names each test's group from these marks in its
    own hook."""
    groups = {item: group_of(item) for item in items}
    for item, group in groups.items():
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: schedule_rank(groups[item]))
