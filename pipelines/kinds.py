"""The kinds of pipeline a project has, by name (what compiling, submitting and scheduling use)."""

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from components.core.projects import PROJECTS, get_spec
from components.core.spec import ProjectSpec

TRAINING, MONITORING, BATCH_SCORING = "training", "monitoring", "batch-scoring"
KINDS = (TRAINING, MONITORING, BATCH_SCORING)
"""A training pipeline compiles to `<project>.yaml`, any other kind to `<project>-<kind>.yaml`."""


class PipelinesByProject(Mapping[str, Any]):
    """A kind's pipeline of each registered project, built when first asked for: building one
    costs seconds (kfp inspects the call stack for every resource it sets), and a command runs
    one project's."""

    def __init__(self, build: Callable[[ProjectSpec], Any]) -> None:
        self._build = build
        self._built: dict[str, Any] = {}

    def __getitem__(self, project: str) -> Any:
        if project not in self._built:
            self._built[project] = self._build(get_spec(project))
        return self._built[project]

    def __iter__(self) -> Iterator[str]:
        return iter(PROJECTS)

    def __len__(self) -> int:
        return len(PROJECTS)
