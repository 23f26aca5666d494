"""`bounded_as_completed`: the limit, completion order, errors and early exit.

Jobs wait on events the test sets, so nothing here depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from pacore.aio import aiterate, bounded_as_completed


class Jobs:
    """Jobs that report when they start and finish only when released."""

    def __init__(self, count: int) -> None:
        """`count` jobs, none started."""
        self.started = [asyncio.Event() for _ in range(count)]
        self.release = [asyncio.Event() for _ in range(count)]
        self.cancelled: set[int] = set()
        self.made: list[int] = []
        self.running = 0
        self.peak = 0

    def factory(self, i: int, error: Exception | None = None) -> Callable[[], Awaitable[int]]:
        """A factory for job `i`, recording when it is called."""

        def make() -> Awaitable[int]:
            self.made.append(i)
            return self.job(i, error)

        return make

    async def job(self, i: int, error: Exception | None = None) -> int:
        """Job `i`: counted while it runs; raises `error` when given."""
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.started[i].set()
        try:
            if error is not None:
                raise error
            await self.release[i].wait()
            return i
        except asyncio.CancelledError:
            self.cancelled.add(i)
            raise
        finally:
            self.running -= 1


async def test_limit_is_respected_and_results_come_in_completion_order() -> None:
    jobs = Jobs(6)
    gen = bounded_as_completed((jobs.factory(i) for i in range(6)), limit=2)
    results: list[int] = []
    for i in (1, 0, 3, 2, 5, 4):
        following = asyncio.ensure_future(anext(gen))
        await jobs.started[min(5, len(results) + 1)].wait()  # the newest job has started
        assert jobs.running == (2 if len(results) < 5 else 1)  # the last job runs alone
        jobs.release[i].set()
        results.append(await following)
    with pytest.raises(StopAsyncIteration):
        await anext(gen)
    assert results == [1, 0, 3, 2, 5, 4]
    assert jobs.peak == 2


async def test_jobs_are_made_only_when_a_slot_is_free() -> None:
    jobs = Jobs(5)
    gen = bounded_as_completed((jobs.factory(i) for i in range(5)), limit=3)
    following = asyncio.ensure_future(anext(gen))
    await jobs.started[2].wait()
    assert jobs.made == [0, 1, 2]
    jobs.release[0].set()
    assert await following == 0
    assert jobs.made == [0, 1, 2]  # the next job waits for the consumer
    for i in range(1, 5):
        jobs.release[i].set()
    assert sorted([x async for x in gen]) == [1, 2, 3, 4]


async def test_awaitables_and_async_sources() -> None:
    async def value(x: int) -> int:
        return x

    async def source() -> AsyncIterator[Awaitable[int]]:
        for x in range(4):
            yield value(x)

    assert [x async for x in bounded_as_completed(source(), limit=1)] == [0, 1, 2, 3]
    assert [x async for x in aiterate([1, 2])] == [1, 2]


async def test_every_error_is_retrieved_and_the_rest_cancelled() -> None:
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    jobs = Jobs(4)
    factories = [
        jobs.factory(0, ValueError("first")),
        jobs.factory(1, ValueError("second")),
        jobs.factory(2),
        jobs.factory(3),
    ]
    with pytest.raises(ValueError, match="first"):
        async for _ in bounded_as_completed(factories, limit=3):
            pass
    assert jobs.cancelled == {2}
    assert jobs.made == [0, 1, 2]  # job 3 was never made
    gc.collect()
    await asyncio.sleep(0)
    assert unretrieved == []
    loop.set_exception_handler(None)


async def test_leaving_early_cancels_what_runs() -> None:
    jobs = Jobs(4)
    jobs.release[1].set()
    gen = bounded_as_completed((jobs.factory(i) for i in range(4)), limit=3)
    async with contextlib.aclosing(gen) as results:
        async for got in results:
            assert got == 1
            break
    assert jobs.cancelled == {0, 2}
    assert jobs.running == 0
    assert jobs.made == [0, 1, 2]


async def test_a_bad_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        await anext(bounded_as_completed([], limit=0))
