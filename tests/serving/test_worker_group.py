"""Under `make test` (pytest -n, --dist loadgroup) the serving tests run on one worker, which
starts their model servers once, and the longest groups are handed out first. If either stopped
working, the run would only be slower (each worker starting its own servers, or one worker left
idle while the other runs a long group alone); these tests make it fail instead."""

from __future__ import annotations

import pytest

from tests.conftest import LONGEST_GROUPS, group_of


def test_the_serving_tests_are_grouped_on_one_worker(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("only meaningful under pytest -n with --dist loadgroup (make test)")
    assert request.node.nodeid.endswith("@serving"), (
        f"{request.node.nodeid} has no @serving group: pytest-xdist did not read the "
        "xdist_group marks tests/conftest.py adds"
    )


def test_the_longest_groups_are_collected_first_in_their_order(
    request: pytest.FixtureRequest,
) -> None:
    first_seen = list(dict.fromkeys(group_of(item) for item in request.session.items))
    collected = [group for group in LONGEST_GROUPS if group in first_seen]
    assert first_seen[: len(collected)] == collected, (
        f"groups in collection order {first_seen[:10]}, expected {collected} first"
    )
    if getattr(request.config.option, "loadgroup", False):
        assert not request.config.option.loadscopereorder, (
            "pytest-xdist reorders groups by their number of tests: make test must pass "
            "--no-loadscope-reorder"
        )
