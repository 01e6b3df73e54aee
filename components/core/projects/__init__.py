"""The projects: the three built in, and any named by `MLOPS_PROJECTS`.

Each built-in module holds all of its project's knowledge. A project kept outside this package
(another repository, a test) is registered by naming its spec in the environment, as
`MLOPS_PROJECTS=package.module:SPEC` (several separated by commas; `:SPEC` is the default
attribute). Every process that reads the registry (the steps kfp.local starts, the server,
the command-line tools) inherits the variable, so the project then runs everywhere the built-in
ones do. On a cluster the image must carry the module and set the variable.
"""

from __future__ import annotations

import importlib
import os

from components.core.projects.bankchurn import SPEC as BANKCHURN
from components.core.projects.carvision import SPEC as CARVISION
from components.core.projects.telecom import SPEC as TELECOM
from components.core.spec import ProjectSpec

EXTRA_PROJECTS_ENV = "MLOPS_PROJECTS"
BUILT_IN = (BANKCHURN, CARVISION, TELECOM)


class ProjectRegistrationError(ValueError):
    """A spec named in MLOPS_PROJECTS cannot be loaded or clashes with another project."""


def _load_spec(reference: str) -> ProjectSpec:
    """The ProjectSpec that `module:attribute` (attribute SPEC by default) names."""
    module_name, _, attribute = reference.strip().partition(":")
    attribute = attribute or "SPEC"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProjectRegistrationError(
            f"{EXTRA_PROJECTS_ENV}: cannot import {module_name!r} ({exc})"
        ) from exc
    spec = getattr(module, attribute, None)
    if not isinstance(spec, ProjectSpec):
        raise ProjectRegistrationError(
            f"{EXTRA_PROJECTS_ENV}: {module_name}:{attribute} is "
            f"{type(spec).__name__ if spec is not None else 'missing'}, not a ProjectSpec"
        )
    return spec


def registered(extra: str) -> dict[str, ProjectSpec]:
    """The built-in projects and those `extra` names, by name; a name used twice is refused."""
    found: dict[str, ProjectSpec] = {}
    for spec in (*BUILT_IN, *(_load_spec(r) for r in extra.split(",") if r.strip())):
        if spec.name in found:
            raise ProjectRegistrationError(
                f"{EXTRA_PROJECTS_ENV}: project {spec.name!r} is registered twice"
            )
        found[spec.name] = spec
    return found


PROJECTS: dict[str, ProjectSpec] = registered(os.environ.get(EXTRA_PROJECTS_ENV, ""))


def get_spec(name: str) -> ProjectSpec:
    try:
        return PROJECTS[name]
    except KeyError:
        raise KeyError(f"unknown project {name!r}; known projects: {sorted(PROJECTS)}") from None
