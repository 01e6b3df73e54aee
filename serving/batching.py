"""Runs the requests that are waiting together, as one schema check and one model call.

Checking a column and calling the pipeline cost about the same for one row as for a hundred
(pandas and scikit-learn overhead per call), and the server has one core. So rather than
answering queued requests one by one, a worker takes every request that is waiting when it
becomes free (up to a row limit) and runs them as one group. Nothing waits on a timer: a lone
request is run at once, and groups only form when requests arrive faster than they are served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

YIELDS_BEFORE_GROUPING = 2
"""Event-loop turns the worker gives to requests already received before it takes the group."""


@dataclass
class _Entry(Generic[Item, Result]):
    item: Item
    rows: int
    future: asyncio.Future[Result]


class Grouper(Generic[Item, Result]):
    def __init__(
        self,
        run: Callable[[Sequence[Item]], Sequence[Result | BaseException]],
        max_rows: int,
    ) -> None:
        """`run` gets the group and returns, per item, its result or the exception to raise."""
        self.run = run
        self.max_rows = max_rows
        self._queue: asyncio.Queue[_Entry[Item, Result]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._held: _Entry[Item, Result] | None = None

    async def submit(self, item: Item, rows: int) -> Result:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._queue = asyncio.Queue()
            self._held = None
            self._worker = loop.create_task(self._work(self._queue))
        assert self._queue is not None
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.put_nowait(_Entry(item, rows, future))
        return await future

    def _take(
        self, queue: asyncio.Queue[_Entry[Item, Result]], first: _Entry[Item, Result]
    ) -> list[_Entry[Item, Result]]:
        group, rows = [first], first.rows
        while not queue.empty():
            entry = queue.get_nowait()
            if rows + entry.rows > self.max_rows:
                self._held = entry  # first of the next group
                break
            group.append(entry)
            rows += entry.rows
        return group

    async def _work(self, queue: asyncio.Queue[_Entry[Item, Result]]) -> None:
        while True:
            if self._held is not None:
                first, self._held = self._held, None
            else:
                first = await queue.get()
                for _ in range(YIELDS_BEFORE_GROUPING):
                    await asyncio.sleep(0)
            group = [e for e in self._take(queue, first) if not e.future.done()]
            if not group:
                continue
            try:
                results = list(self.run([e.item for e in group]))
                if len(results) != len(group):
                    raise RuntimeError(f"{len(results)} results for {len(group)} requests")
            except Exception as exc:  # a bug must fail this group's requests, not the worker
                results = [exc] * len(group)
            for entry, result in zip(group, results, strict=True):
                if entry.future.done():  # the client went away
                    continue
                if isinstance(result, BaseException):
                    entry.future.set_exception(result)
                else:
                    entry.future.set_result(result)
