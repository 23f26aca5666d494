"""Round-1 pools and recorded sampling: the paper's evaluation protocol, which
`pacore train pool` reuses to sample its training pools.

For each problem a pool of P first-round trajectories is generated once and
stored. Every run of every method draws its K_1 first-round trajectories from
that pool with a seeded sampler (PaCoRe's round 1, self-consistency's votes,
the sequential baseline's first step), so comparing presets and baselines costs
no extra round-1 generation. Later rounds are sampled fresh and stored under
the run's own key, so an interrupted evaluation resumes without regenerating
anything it finished.
"""

from __future__ import annotations

import asyncio
import copy
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from pacore.backends.base import Backend, ProgressCallback, RequestCounter
from pacore.core.hashing import seeded_rng
from pacore.engine import SampleRequest
from pacore.errors import BackendError
from pacore.store import Key, TrajectoryStore, params_hash, params_shape, prompt_hash
from pacore.types import Completion, Message, SamplingParams

POOL_CHUNK = 16
"""Pool trajectories requested per call (one request with n=16 where supported)."""


def draw(pool_size: int, k: int, *, seed: int, problem: str, run: int) -> list[int]:
    """K distinct pool indices for one run, seeded by (seed, problem, run, k)."""
    return seeded_rng("draw", seed, problem, run, k).sample(range(pool_size), k)


@dataclass
class PoolStats:
    """What an evaluation's sampling cost: generated, fresh and reused trajectories."""

    generated: int = 0
    """Pool trajectories sampled from the backend (not found in the store)."""
    fresh: int = 0
    """Later-round trajectories sampled from the backend."""
    reused: int = 0
    """Trajectories found in the store."""


@dataclass
class PooledSampling:
    """Shared by every run of an evaluation: the store, the pools and their locks."""

    backend: Backend
    store: TrajectoryStore
    model: str
    pool_size: int
    seed: int = 0
    on_tokens: ProgressCallback | None = None
    stats: PoolStats = field(default_factory=PoolStats)
    cached_pools: int = 256
    """Whole pools kept in memory, the most recently used: a problem's jobs run one after
    another, so each reads its pool from memory, not from the store (bounded: memory
    stays flat however many problems there are)."""
    cached_chars: int = 64_000_000
    """And at most this many characters of text in those pools (the most recent pool is
    always kept): 256 pools of 16 long reasoning traces (30,000 tokens each) would hold
    gigabytes; the jobs in flight need only a few pools."""
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _users: dict[str, int] = field(default_factory=dict)
    _loaded: dict[str, tuple[tuple[str, str, str], list[Completion | None]]] = field(
        default_factory=dict
    )
    """A problem's whole pool just loaded, for the callers that waited on its lock: they
    take it from here even when other problems' pools pushed it out of the cache
    meanwhile (pools of long traces: the cache holds few). Dropped with the problem's
    last caller."""
    _cache: OrderedDict[tuple[str, str, str], list[Completion | None]] = field(
        default_factory=OrderedDict
    )
    _cache_chars: int = 0
    _hashed: OrderedDict[str, tuple[list[Message], str]] = field(default_factory=OrderedDict)
    _draws: dict[tuple[str, int, int], tuple[tuple[int, ...], list[str]]] = field(
        default_factory=dict
    )
    _params: tuple[dict[str, Any], str] | None = None

    def params_key(self, params: SamplingParams) -> str:
        """`params_hash(params)`: every later round of an evaluation is sampled with the
        same parameters but its seed (which the hash leaves out), so the last shape
        hashed is kept with its hash and reused while it compares equal."""
        shape = params_shape(params)
        held = self._params
        if held is not None and held[0] == shape:
            return held[1]
        digest = params_hash(params)
        self._params = (copy.deepcopy(shape), digest)
        return digest

    def draw(self, problem: str, run: int, k: int) -> tuple[tuple[int, ...], list[str]]:
        """`draw` for this pool and seed: the K pool indices of one run, and their
        sample names in the store (`pool/<i>`; not to be changed).

        A problem's methods with the same K draw alike in a run (PaCoRe's round 1 and
        self-consistency's votes), so the last draws are kept (bounded: a few per
        problem of the last `cached_pools`, then it starts over).
        """
        key = (problem, run, k)
        drawn = self._draws.get(key)
        if drawn is None:
            if len(self._draws) >= 4 * self.cached_pools:
                self._draws.clear()
            picks = tuple(draw(self.pool_size, k, seed=self.seed, problem=problem, run=run))
            drawn = self._draws[key] = (picks, [f"pool/{i}" for i in picks])
        return drawn

    def hashes(
        self, problem: str, messages: list[Message], params: SamplingParams
    ) -> tuple[str, str]:
        """The store's hashes of a problem's round-1 prompt and parameters.

        Every run of every method asks for the same problem's pool: the prompt hashes
        of the last `cached_pools` problems are kept with the prompt they were computed
        from, and reused while it compares equal (cheaper than hashing a prompt again);
        the parameters' hash is `params_key`'s.
        """
        held = self._hashed.get(problem)
        if held is None or held[0] != messages:
            held = self._hashed[problem] = ([dict(m) for m in messages], prompt_hash(messages))
        self._hashed.move_to_end(problem)
        while len(self._hashed) > self.cached_pools:
            self._hashed.popitem(last=False)
        return held[1], self.params_key(params)

    def for_run(self, run: int, namespace: str = "") -> RunSampler:
        """The engine's sampler for one run; `namespace` keeps methods' later rounds apart."""
        return RunSampler(self, run, namespace)

    async def pool(
        self,
        problem: str,
        messages: list[Message],
        params: SamplingParams,
        counter: RequestCounter,
    ) -> list[Completion | None]:
        """The problem's pool, generating what is missing (once, even when asked concurrently).

        A slot whose sampling failed holds the failed completion, with the tokens the
        server generated before it failed (a cut stream): the runs that draw it count
        them, as `pacore run` counts a failed attempt's. It is not stored, and a pool
        with a failed slot is not cached: it is tried again next time.
        """
        p_hash, s_hash = self.hashes(problem, messages, params)
        name = (problem, p_hash, s_hash)
        cached = self._cache.get(name)
        if cached is not None:
            self._cache.move_to_end(name)
            self.stats.reused += len(cached)
            return list(cached)
        lock = self._locks.setdefault(problem, asyncio.Lock())
        self._users[problem] = self._users.get(problem, 0) + 1
        try:
            async with lock:  # a caller that waited finds the pool its forerunner loaded
                slots = self._cache.get(name) or self._just_loaded(problem, name)
                if slots is None:
                    slots = await self._load(problem, messages, params, counter, p_hash, s_hash)
                    if self._users[problem] > 1 and _whole(slots):
                        self._loaded[problem] = (name, slots)
        finally:
            self._users[problem] -= 1
            if not self._users[problem]:  # no per-problem state outlives its callers
                del self._users[problem], self._locks[problem]
                self._loaded.pop(problem, None)
        if name not in self._cache and _whole(slots):
            self._keep(name, slots)  # whole pools only: a failed slot is tried again next time
        return list(slots)

    def _just_loaded(
        self, problem: str, name: tuple[str, str, str]
    ) -> list[Completion | None] | None:
        """The whole pool a forerunner loaded for this problem's waiting callers, if any."""
        held = self._loaded.get(problem)
        return held[1] if held is not None and held[0] == name else None

    def _keep(self, name: tuple[str, str, str], slots: list[Completion | None]) -> None:
        """Cache a whole pool; drop the least recently used beyond the bounds."""
        if name in self._cache:
            self._cache_chars -= _chars(self._cache.pop(name))
        self._cache[name] = slots
        self._cache_chars += _chars(slots)
        while len(self._cache) > 1 and (
            len(self._cache) > self.cached_pools or self._cache_chars > self.cached_chars
        ):
            _, dropped = self._cache.popitem(last=False)
            self._cache_chars -= _chars(dropped)

    async def _load(
        self,
        problem: str,
        messages: list[Message],
        params: SamplingParams,
        counter: RequestCounter,
        p_hash: str,
        s_hash: str,
    ) -> list[Completion | None]:
        """The pool from the store, its missing slots sampled and stored."""
        keys = [Key(self.model, p_hash, s_hash, f"pool/{i}") for i in range(self.pool_size)]
        found = self.store.get_many(keys)
        self.stats.reused += len(found)
        missing = [i for i, k in enumerate(keys) if k not in found]
        slots: list[Completion | None] = [found.get(k) for k in keys]
        chunks = [missing[i : i + POOL_CHUNK] for i in range(0, len(missing), POOL_CHUNK)]

        async def fill(chunk: list[int]) -> None:
            seed = None if params.seed is None else params.seed + chunk[0]
            got = await self.backend.complete(
                messages,
                len(chunk),
                replace(params, seed=seed),
                affinity=f"{problem}:pool",
                on_tokens=self.on_tokens,
                counter=counter,
            )
            good = [(i, c) for i, c in zip(chunk, got, strict=True) if c.error is None]
            for i, c in zip(chunk, got, strict=True):
                if c.error is not None:  # not stored: sampled again next time
                    slots[i] = c
            # Another writer of the store may have stored a key first: its completion
            # is the one kept, so it is the one used. One transaction per request.
            kept = self.store.put_many([(keys[i], c) for i, c in good])
            for (index, _), completion in zip(good, kept, strict=True):
                slots[index] = completion
            self.stats.generated += len(good)

        await asyncio.gather(*(fill(c) for c in chunks))
        return slots


def _whole(slots: list[Completion | None]) -> bool:
    """Whether every slot of a pool holds a sample (none missing, none failed)."""
    return all(s is not None and s.error is None for s in slots)


def _chars(slots: list[Completion | None]) -> int:
    """The characters of text a pool holds."""
    return sum(len(c.text) + len(c.reasoning or "") for c in slots if c is not None)


@dataclass
class RunSampler:
    """The engine's `Sampler` for one run: round 1 from the pool, the rest recorded.

    It remembers where each answer it gave lives in the store (`issued`), so the run's
    trace can name every trajectory's full text without copying it.
    """

    shared: PooledSampling
    run: int
    namespace: str = ""
    issued: dict[tuple[int, int], Issued] = field(default_factory=dict)
    """(round, attempt) -> the store keys of the completions returned, in their order."""

    async def __call__(self, request: SampleRequest) -> list[Completion]:
        """Round 1's first attempt drawn from the pool; the rest from the store or sampled."""
        shared = self.shared
        if request.round_index == 1 and request.attempt == 0:
            if request.n > shared.pool_size:
                error = BackendError(
                    f"round 1 needs {request.n} samples but the pool holds {shared.pool_size}"
                )
                return [Completion.failed(error)] * request.n
            pool = await shared.pool(
                request.problem.id, request.messages, request.params, request.counter
            )
            picks, samples = shared.draw(request.problem.id, self.run, request.n)
            p_hash, s_hash = shared.hashes(request.problem.id, request.messages, request.params)
            self._issue(request, samples, p_hash, s_hash)
            out: list[Completion] = []
            for i in picks:
                slot = pool[i]
                if slot is None:
                    slot = Completion.failed(BackendError(f"pool trajectory {i} failed to sample"))
                out.append(slot)
            return out
        return await self._recorded(request)

    async def _recorded(self, request: SampleRequest) -> list[Completion]:
        shared = self.shared
        prefix = f"{self.namespace}run{self.run}/r{request.round_index}/a{request.attempt}"
        p_hash, s_hash = prompt_hash(request.messages), shared.params_key(request.params)
        keys = [Key(shared.model, p_hash, s_hash, f"{prefix}/{i}") for i in range(request.n)]
        self._issue(request, [k.sample for k in keys], p_hash, s_hash)
        found = shared.store.get_unwritten(keys)  # a run's keys: only this run writes them
        shared.stats.reused += len(found)
        missing = [i for i, k in enumerate(keys) if k not in found]
        results: list[Completion | None] = [found.get(k) for k in keys]
        if missing:
            got = await shared.backend.complete(
                request.messages,
                len(missing),
                request.params,
                affinity=request.affinity,
                on_tokens=shared.on_tokens,
                counter=request.counter,
            )
            # What the store keeps under each key (another writer's, if it was first),
            # all of one request in one transaction.
            kept = shared.store.put_many([(keys[i], c) for i, c in zip(missing, got, strict=True)])
            for index, completion in zip(missing, kept, strict=True):
                results[index] = completion
                shared.stats.fresh += completion.error is None
        return [c for c in results if c is not None]

    def _issue(self, request: SampleRequest, samples: list[str], p_hash: str, s_hash: str) -> None:
        key = (request.round_index, request.attempt)
        self.issued[key] = Issued(self.shared.model, p_hash, s_hash, samples)


@dataclass(frozen=True)
class Issued:
    """Where the completions of one sampling request live in the store."""

    model: str
    prompt: str
    params: str
    samples: list[str]
