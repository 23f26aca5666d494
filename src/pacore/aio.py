"""Async helpers shared by the engine and the eval runner.

`bounded_as_completed(jobs, limit)` runs a stream of jobs with at most `limit` in
flight and yields their results in completion order. It pulls the next job from
`jobs` only when a slot is free, so a long (or endless) stream stays lazy. When a
job raises, every job that finished with it is looked at first (no "Task exception
was never retrieved"), then the first error is raised; on any early exit (an error,
the consumer breaking out, cancellation) the jobs still running are cancelled and
awaited before the generator returns.

`run(coro, loop=...)` runs a command's coroutine on a fresh event loop; `client_loop()`
is the loop the `pacore` command's client work runs on (uvloop where installed).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
)
from typing import Any, TypeVar

from pacore.errors import ConfigError

T = TypeVar("T")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

LOOP_ENV = "PACORE_EVENT_LOOP"
"""Names the event loop of the commands that are clients (`run`, `eval`, `train`):
`uvloop` (the default where it is installed) or `asyncio` (the standard library's)."""


def client_loop() -> LoopFactory | None:
    """The event loop a client command runs on: uvloop's where it is installed (libuv's
    loop in C; a streamed answer's events cost a fifth less CPU, `benchmarks/README.md`),
    else the standard library's (None). `PACORE_EVENT_LOOP=asyncio` asks for the standard
    loop; `uvloop` insists on uvloop. Anything else is a `ConfigError`.
    """
    raw = os.environ.get(LOOP_ENV, "")
    choice = raw.strip().lower()
    if choice == "asyncio":
        return None
    if choice not in ("", "uvloop"):
        raise ConfigError(f"{LOOP_ENV}={raw!r}: use uvloop or asyncio")
    try:
        import uvloop
    except ImportError:
        if choice:
            raise ConfigError(
                f"{LOOP_ENV}=uvloop, but uvloop is not installed (pip install uvloop, "
                f"or {LOOP_ENV}=asyncio)"
            ) from None
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def run(coro: Coroutine[Any, Any, T], *, loop: LoopFactory | None = None) -> T:
    """Run `coro` to completion on a new event loop made by `loop` (the standard
    library's when None), as `asyncio.run` does: Ctrl-C cancels it and raises
    `KeyboardInterrupt`, and the loop is closed afterwards."""
    with asyncio.Runner(loop_factory=loop) as runner:
        return runner.run(coro)


Job = Awaitable[T] | Callable[[], Awaitable[T]]
"""An awaitable, or a function that makes one (called only when a slot is free)."""


async def aiterate(items: Iterable[T] | AsyncIterable[T]) -> AsyncGenerator[T, None]:
    """The items of a plain or an async iterable, as an async iterator."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def _start(job: Job[T]) -> asyncio.Future[T]:
    awaitable = job if inspect.isawaitable(job) else job()
    return asyncio.ensure_future(awaitable)


async def bounded_as_completed(
    jobs: Iterable[Job[T]] | AsyncIterable[Job[T]], limit: int
) -> AsyncGenerator[T, None]:
    """Yield each job's result as it finishes, with at most `limit` jobs running."""
    if limit < 1:
        raise ValueError(f"bounded_as_completed: limit must be >= 1, got {limit}")
    source = aiterate(jobs)
    pending: set[asyncio.Future[T]] = set()
    order: dict[asyncio.Future[T], int] = {}  # jobs that finish together: in start order
    started = itertools.count()
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < limit:
                try:
                    job = await anext(source)
                except StopAsyncIteration:
                    exhausted = True
                    break
                task = _start(job)
                order[task] = next(started)
                pending.add(task)
            if not pending:
                return
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finished = sorted(done, key=order.__getitem__)
            for task in finished:
                del order[task]
            # Retrieve every finished job's error before raising the first.
            errors = [e for e in (t.exception() for t in finished) if e is not None]
            if errors:
                raise errors[0]
            for task in finished:
                yield task.result()
    finally:
        for left in pending:
            left.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await source.aclose()
