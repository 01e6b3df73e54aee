"""The registry of projects: the built-in three, and specs named by MLOPS_PROJECTS."""

from __future__ import annotations

import pytest

from components.core import projects
from components.core.projects import ProjectRegistrationError, registered

FOURTH = "tests.pipelines.test_fourth_project"


def test_the_built_in_projects_are_registered_without_the_variable() -> None:
    assert list(registered("")) == ["bankchurn", "carvision", "telecom"]


def test_a_spec_named_by_the_variable_joins_them() -> None:
    found = registered(f" {FOURTH}:SPEC ,")
    assert list(found) == ["bankchurn", "carvision", "telecom", "tumours"]
    assert found["tumours"].task.labels == ("benign", "malignant")
    assert registered(FOURTH)["tumours"] is found["tumours"]  # SPEC is the default attribute


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_such_module:SPEC", "cannot import 'no_such_module'"),
        (f"{FOURTH}:MEASURES", f"{FOURTH}:MEASURES is tuple, not a ProjectSpec"),
        (f"{FOURTH}:NOTHING", f"{FOURTH}:NOTHING is missing, not a ProjectSpec"),
        (f"{FOURTH},{FOURTH}", "project 'tumours' is registered twice"),
        ("components.core.projects.telecom", "project 'telecom' is registered twice"),
    ],
)
def test_a_bad_reference_is_refused_by_name(reference: str, message: str) -> None:
    with pytest.raises(ProjectRegistrationError, match=message):
        registered(reference)


def test_an_unknown_project_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown project 'churn'; known projects: "):
        projects.get_spec("churn")
