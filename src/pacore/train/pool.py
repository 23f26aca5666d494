"""Message pools: P responses per problem from a backend, kept in the trajectory store.

`fill_pools` walks the problems `concurrency` at a time and asks the evaluation's
`PooledSampling.pool` for each one's P trajectories: the pool of round 1, keyed by
the model, the exact prompt and the sampling settings, so a killed run finds every
finished trajectory in the store and samples only what is missing. The same call
serves stage 2 of the curriculum, whose prompts are synthesis episodes.

A pool keeps the responses whole (reasoning included; compaction is applied when
episodes are built), and only those a synthesis round would pass on: a failed
sample is retried by the next run, and a truncated or empty one is dropped as the
engine drops it by default.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from pacore.aio import bounded_as_completed
from pacore.backends.base import Backend, RequestCounter
from pacore.core.compaction import classify, compact, full_text
from pacore.pool import PooledSampling
from pacore.store import TrajectoryStore
from pacore.types import Completion, Message, SamplingParams


@dataclass(frozen=True)
class PoolJob:
    """One problem to pool: its id and the exact prompt to sample."""

    id: str
    messages: Sequence[Message]


@dataclass(frozen=True)
class Pooled:
    """What came back for one problem."""

    id: str
    responses: tuple[str, ...]
    """The usable responses, whole, in pool order."""
    failed: int
    """Slots whose sampling failed (sampled again by the next run)."""
    dropped: int
    """Responses truncated or empty after compaction (not kept)."""


def usable(completion: Completion | None) -> str | None:
    """The whole text of a response a synthesis round would pass on, else None."""
    if completion is None:
        return None
    if classify(completion, compact(completion, "conclusion")) != "ok":
        return None
    return full_text(completion)


async def fill_pools(
    jobs: Iterable[PoolJob],
    *,
    backend: Backend,
    store: TrajectoryStore,
    model: str,
    size: int,
    params: SamplingParams,
    concurrency: int = 8,
) -> AsyncIterator[Pooled]:
    """Each job's pool of `size` responses, as problems finish (not in input order)."""
    shared = PooledSampling(backend, store, model, size, seed=params.seed or 0)

    def starter(job: PoolJob) -> Callable[[], Awaitable[Pooled]]:
        async def run() -> Pooled:
            slots = await shared.pool(job.id, list(job.messages), params, RequestCounter())
            texts = [usable(c) for c in slots]
            kept = tuple(t for t in texts if t is not None)
            failed = sum(c is None or c.error is not None for c in slots)
            return Pooled(job.id, kept, failed, len(slots) - failed - len(kept))

        return run

    async for pooled in bounded_as_completed((starter(j) for j in jobs), concurrency):
        yield pooled
