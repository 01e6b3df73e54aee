"""The three projects. Each module holds all of its project's knowledge."""

from components.core.projects.bankchurn import SPEC as BANKCHURN
from components.core.projects.carvision import SPEC as CARVISION
from components.core.projects.telecom import SPEC as TELECOM
from components.core.spec import ProjectSpec

PROJECTS: dict[str, ProjectSpec] = {spec.name: spec for spec in (BANKCHURN, CARVISION, TELECOM)}


def get_spec(name: str) -> ProjectSpec:
    try:
        return PROJECTS[name]
    except KeyError:
        raise KeyError(f"unknown project {name!r}; known projects: {sorted(PROJECTS)}") from None
