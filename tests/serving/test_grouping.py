"""The grouping of concurrent requests, in process."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from serving.batching import Grouper


class Doubler:
    def __init__(self) -> None:
        self.groups: list[list[int]] = []

    def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.groups.append(list(items))
        return [ValueError(f"odd {i}") if i % 2 else i * 2 for i in items]


def test_waiting_requests_run_as_one_group_and_each_gets_its_result() -> None:
    run = Doubler()
    grouper: Grouper[int, int] = Grouper(run, max_rows=100)

    async def main() -> list[int | BaseException]:
        return await asyncio.gather(
            *(grouper.submit(i, 1) for i in range(10)), return_exceptions=True
        )

    results = asyncio.run(main())
    assert results[::2] == [0, 4, 8, 12, 16]
    assert all(
        isinstance(r, ValueError) and str(r) == f"odd {i}" for i, r in enumerate(results) if i % 2
    )
    assert len(run.groups) < 10  # they were grouped
    assert sorted(i for group in run.groups for i in group) == list(range(10))


def test_a_group_stops_at_the_row_limit() -> None:
    run = Doubler()
    grouper: Grouper[int, int] = Grouper(run, max_rows=5)

    async def main() -> list[int]:
        return await asyncio.gather(*(grouper.submit(i * 2, 2) for i in range(6)))

    assert asyncio.run(main()) == [i * 4 for i in range(6)]
    assert all(len(group) <= 2 for group in run.groups)


def test_a_failing_run_fails_its_group_and_the_next_requests_still_run() -> None:
    calls = {"n": 0}

    def run(items: Sequence[int]) -> list[int | BaseException]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("bug")
        return list(items)

    grouper: Grouper[int, int] = Grouper(run, max_rows=10)

    async def main() -> int:
        with pytest.raises(RuntimeError, match="bug"):
            await grouper.submit(1, 1)
        return await grouper.submit(2, 1)

    assert asyncio.run(main()) == 2


def test_a_lone_request_runs_at_once() -> None:
    grouper: Grouper[int, int] = Grouper(lambda items: list(items), max_rows=10)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await grouper.submit(7, 1)
        return loop.time() - start

    assert asyncio.run(main()) < 0.05
