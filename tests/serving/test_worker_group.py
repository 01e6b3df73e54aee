"""Under `make test` (pytest -n, --dist loadgroup) the serving tests run on one worker, which
starts their model servers once. If the grouping stopped working, each worker would start its
own set, and the run would only be slower; this test makes it fail instead."""

from __future__ import annotations

import pytest


def test_the_serving_tests_are_grouped_on_one_worker(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("only meaningful under pytest -n with --dist loadgroup (make test)")
    assert request.node.nodeid.endswith("@serving"), (
        f"{request.node.nodeid} has no @serving group: pytest-xdist did not read the "
        "xdist_group marks tests/conftest.py adds"
    )
