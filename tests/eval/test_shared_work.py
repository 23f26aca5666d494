"""Work an evaluation shares between a problem's jobs: trajectories built once per pool
completion (`TrajectoryMemo`), draws made once per (problem, run, K), configs
validated once per method, trace cards copied instead of constructed, and the hashes
of graded texts kept. Each gives exactly what the work done afresh gives, and each
stays bounded however many problems pass through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from pacore.backends.base import Backend
from pacore.config import PacoreConfig
from pacore.engine import Engine, SampleRequest, TrajectoryMemo
from pacore.errors import ServerError
from pacore.eval.methods import Context
from pacore.eval.traces import CardTrace, build_trace
from pacore.graders.base import Grade, GradeInput
from pacore.graders.memo import GradeMemo
from pacore.pool import Issued, PooledSampling, draw
from pacore.store import TrajectoryStore, params_hash
from pacore.types import (
    Completion,
    Message,
    Problem,
    RoundResult,
    SamplingParams,
    Trajectory,
    Usage,
)

PROBLEM = Problem(id="p", messages=({"role": "user", "content": "What is 6 x 7?"},))


def pool_of(size: int) -> list[Completion]:
    """Completions whose status and message are known from how they are made: slot i
    answers `answer i`; every third is cut by the token cap, every fifth failed."""
    out = []
    for i in range(size):
        if i % 5 == 4:
            out.append(Completion.failed(ServerError("HTTP 500: boom", retryable=False)))
            continue
        cut = i % 3 == 2
        out.append(
            Completion(
                text=f"<think>reasoning {i}</think>answer {i}",
                finish_reason="length" if cut else "stop",
                usage=Usage(prompt_tokens=10, completion_tokens=20 + i),
            )
        )
    return out


class Replaying:
    """A sampler that answers every request with the same completion objects, in order."""

    def __init__(self, completions: Sequence[Completion]) -> None:
        self.completions = list(completions)

    async def __call__(self, request: SampleRequest) -> list[Completion]:
        return self.completions[: request.n]


def expected(i: int, c: Completion) -> tuple[str, str]:
    """(status, message) of slot i, from how `pool_of` made it."""
    if c.error is not None:
        return "error", ""
    return ("truncated" if i % 3 == 2 else "ok"), f"answer {i}"


async def round_of(memo: TrajectoryMemo | None, pool: list[Completion], **cfg: Any) -> RoundResult:
    config = PacoreConfig(on_failure="continue", **cfg)
    engine = Engine(cast(Backend, None), config, sampler=Replaying(pool), memo=memo)
    return await engine.sample_round(PROBLEM, len(pool))


async def test_trajectories_built_once_per_completion_are_those_built_afresh() -> None:
    pool = pool_of(10)
    memo = TrajectoryMemo(size=100)
    fresh = await round_of(None, pool)
    first = await round_of(memo, pool)
    again = await round_of(memo, pool)
    for i, (t, c) in enumerate(zip(first.trajectories, pool, strict=True)):
        assert (t.index, t.status, t.message) == (i, *expected(i, c))
    assert first == fresh
    assert again == fresh
    assert memo.hits == len(pool)  # the second engine built nothing
    assert all(a is b for a, b in zip(first.trajectories, again.trajectories, strict=True))


async def test_a_completion_drawn_into_another_slot_is_built_once() -> None:
    """Each run draws the pool in its own order: a completion met again in another slot
    (or a later attempt) is the trajectory built afresh there, without building it."""
    import random

    pool = pool_of(12)
    memo = TrajectoryMemo(size=100)
    await round_of(memo, pool)
    rng = random.Random(5)
    for _ in range(6):
        order = rng.sample(pool, len(pool))
        moved = await round_of(memo, order)
        assert moved == await round_of(None, order)  # every field, index included
        assert [t.index for t in moved.trajectories] == list(range(len(pool)))
    assert memo.hits == 6 * len(pool)
    assert len(memo) == len(pool)
    built = memo.get(pool[0], 0, 0, PacoreConfig(on_failure="continue"))
    again = memo.get(pool[0], 3, 2, PacoreConfig(on_failure="continue"))
    assert built is not None
    assert again is not None
    assert (again.index, again.attempt) == (3, 2)
    assert dataclasses.replace(again, index=0, attempt=0) == built


async def test_other_settings_or_other_completions_are_built_again() -> None:
    pool = pool_of(6)
    memo = TrajectoryMemo(size=100)
    await round_of(memo, pool)
    full = await round_of(memo, pool, compaction="full")  # another compaction: not shared
    assert memo.hits == 0
    assert full == await round_of(None, pool, compaction="full")
    assert full.trajectories[0].message == "<think>reasoning 0</think>answer 0"
    copies = [dataclasses.replace(c) for c in pool]  # equal, but not the same objects
    assert await round_of(memo, copies) == await round_of(None, pool)
    assert memo.hits == 0


async def test_the_trajectory_memo_is_bounded() -> None:
    memo = TrajectoryMemo(size=25)
    for _ in range(12):
        await round_of(memo, pool_of(8))  # new completion objects every time
        assert len(memo) <= 25


def test_shared_draws_are_the_draws_and_stay_bounded(tmp_path: Path) -> None:
    with TrajectoryStore(tmp_path / "s.sqlite") as store:
        shared = PooledSampling(cast(Backend, None), store, "m", 16, seed=3, cached_pools=2)
        for p in range(40):
            for run in range(3):
                for k in (1, 4, 16):
                    got, names = shared.draw(f"q{p}", run, k)
                    assert names == [f"pool/{i}" for i in got]
                    assert list(got) == draw(16, k, seed=3, problem=f"q{p}", run=run)
                    assert len(set(got)) == k
                    assert all(0 <= i < 16 for i in got)
                    assert len(shared._draws) <= 8
        assert shared.draw("q0", 0, 16)[0] is shared.draw("q0", 0, 16)[0]


def test_a_method_config_is_validated_once_and_is_the_copy(tmp_path: Path) -> None:
    base = PacoreConfig(max_tokens=123)
    ctx = Context(cast(Backend, None), base, cast(PooledSampling, None), str, str.__eq__)
    got = ctx.config_with((4, 2), "answer")
    assert got == base.with_options(widths=(4, 2), compaction="answer")
    assert (got.widths, got.compaction, got.max_tokens) == ((4, 2), "answer", 123)
    assert ctx.config_with((4, 2), "answer") is got
    assert ctx.config_with((4,), "answer") != got


def test_cards_are_the_dataclass_and_grading_copies_them() -> None:
    pool = pool_of(7)
    trajectories = tuple(
        Trajectory(
            index=i, text=c.text, message=expected(i, c)[1], status=expected(i, c)[0],  # type: ignore[arg-type]
            finish_reason=c.finish_reason, usage=c.usage, latency_s=0.0,
            error=None if c.error is None else f"ServerError: {c.error}",
        )
        for i, c in enumerate(pool)
    )  # fmt: skip
    rnd = RoundResult(round=1, width=7, trajectories=trajectories, references=0, prompt_tokens=10)
    issued = {(1, 0): Issued("m", "ph", "sh", [f"pool/{i}" for i in range(7)])}
    graded = [t for t in trajectories if t.status == "ok"]
    trace = build_trace([rnd], issued, lambda _: graded)
    for t, card in zip(trajectories, trace.rounds[0].cards, strict=True):
        failed = t.error is not None
        made = CardTrace(
            index=t.index, attempt=0, status=t.status, tokens=t.usage.completion_tokens,
            message=t.message, chars=len(t.text), sample=None if failed else f"pool/{t.index}",
            error=t.error, grade=graded.index(t) if t in graded else None,
        )  # fmt: skip
        assert card == made
        assert hash(card) == hash(made)
        assert vars(card).keys() == {f.name for f in dataclasses.fields(CardTrace)}
        with pytest.raises(dataclasses.FrozenInstanceError):
            card.answer = "x"  # type: ignore[misc]
        copy = card.with_grade("42", True)
        assert copy == dataclasses.replace(made, answer="42", correct=True)
        assert card.answer is None
        assert card.correct is None


class Echo:
    """A grader whose grade is its input."""

    name = "echo"

    def __init__(self) -> None:
        self.asked = 0

    def grade_many(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade]:
        self.asked += len(items)
        return [Grade(1.0, text == gold.answer, text, "") for text, gold in items]


def test_text_hashes_are_kept_bounded_and_long_texts_are_not_kept() -> None:
    inner = Echo()
    memo = GradeMemo(inner, digests=10, max_chars=50)  # type: ignore[arg-type]
    gold = GradeInput(answer="7")
    texts = [str(i % 13) for i in range(200)] + ["7" * 60, "7" * 60]
    for text in texts:
        (grade,) = memo.grade_many([(text, gold)])
        assert (grade.correct, grade.extracted) == (text == "7", text)
        assert len(memo._digests) <= 10
    assert inner.asked == 14  # 13 short texts and one long, each once
    assert "7" * 60 not in memo._digests
    assert memo.known([("7", gold), ("12", gold)]) == [
        Grade(1.0, True, "7", ""),
        Grade(1.0, False, "12", ""),
    ]


def test_later_rounds_params_hashes_are_the_store_hashes(tmp_path: Path) -> None:
    with TrajectoryStore(tmp_path / "s.sqlite") as store:
        shared = PooledSampling(cast(Backend, None), store, "m", 4)
        extra: dict[str, Any] = {"top_k": 20}
        cases = [
            SamplingParams(temperature=0.6, max_tokens=100, seed=s, extra_body=extra)
            for s in range(3)
        ] + [
            SamplingParams(temperature=0.7, max_tokens=100, seed=1, extra_body=extra),
            SamplingParams(temperature=0.7, max_tokens=200, seed=1),
            SamplingParams(temperature=0.7, max_tokens=200, seed=1, extra_body={"top_k": 21}),
        ]
        for params in cases:
            assert shared.params_key(params) == params_hash(params)
        hashes = {shared.params_key(p) for p in cases}
        assert len(hashes) == 4  # the seed is no part of it; every other change is
        before = shared.params_key(cases[0])
        extra["top_k"] = 40  # the caller changes the dict it passed: a new shape
        assert shared.params_key(cases[0]) == params_hash(cases[0]) != before


async def test_the_trajectory_memo_holds_a_bounded_amount_of_text() -> None:
    memo = TrajectoryMemo(size=10_000, chars=400)
    for _ in range(30):
        pool = pool_of(8)  # ~30 characters of text per trajectory, new objects each time
        await round_of(memo, pool)
        held = sum(len(t.text) for _, t in memo._built.values())
        assert held <= 400 + max(len(t.text) for _, t in memo._built.values())


async def test_the_pool_cache_holds_a_bounded_amount_of_text(tmp_path: Path) -> None:
    """Long reasoning traces: the cache keeps pools up to `cached_chars` characters (the
    newest always), and a pool it dropped is read back from the store, unchanged."""
    from pacore.backends.base import RequestCounter

    class Long:
        """16 samples of 1,000 characters per request, counted."""

        calls = 0

        async def complete(self, messages: Any, n: int, params: Any, **kw: Any) -> Any:
            Long.calls += 1
            return [
                Completion(text="x" * 990 + f" answer {i}", usage=Usage(1, 1)) for i in range(n)
            ]

    with TrajectoryStore(tmp_path / "s.sqlite") as store:
        shared = PooledSampling(
            cast(Backend, Long()), store, "m", 16, cached_pools=256, cached_chars=40_000
        )
        params = SamplingParams()
        first: dict[str, list[Completion | None]] = {}
        for p in range(10):
            msgs: list[Message] = [{"role": "user", "content": f"q{p}"}]
            first[f"q{p}"] = await shared.pool(f"q{p}", msgs, params, RequestCounter())
            assert shared._cache_chars <= 40_000 + 16_100
            assert shared._cache_chars == sum(
                len(c.text) for pool in shared._cache.values() for c in pool if c
            )
        assert len(shared._cache) == 2  # 16,000+ characters a pool
        assert Long.calls == 10
        again = await shared.pool(
            "q0", [{"role": "user", "content": "q0"}], params, RequestCounter()
        )  # dropped from memory: read from the store, not sampled
        assert Long.calls == 10
        assert [c.text for c in again if c] == [c.text for c in first["q0"] if c]


async def test_callers_waiting_on_a_pool_take_it_even_when_the_cache_dropped_it(
    tmp_path: Path,
) -> None:
    """Many problems at once, each asked for by several jobs, with room for one pool in
    the cache: every problem's pool is read from the store and sampled once, its waiting
    callers get the very completions its first caller loaded, and nothing per problem
    is left once they are done."""
    import asyncio

    from pacore.backends.base import RequestCounter

    class Slow:
        calls = 0

        async def complete(self, messages: Any, n: int, params: Any, **kw: Any) -> Any:
            Slow.calls += 1
            await asyncio.sleep(0.001 * (Slow.calls % 5))  # problems finish out of order
            return [Completion(text=f"{messages[0]['content']} {i}", usage=Usage(1, 1))
                    for i in range(n)]  # fmt: skip

    with TrajectoryStore(tmp_path / "s.sqlite") as store:
        reads = 0
        read = store.get_many

        def counted(keys: Sequence[Any]) -> Any:
            nonlocal reads
            reads += 1
            return read(keys)

        store.get_many = counted  # type: ignore[method-assign]
        shared = PooledSampling(cast(Backend, Slow()), store, "m", 4, cached_pools=1)
        params = SamplingParams()

        async def ask(p: int) -> list[Completion | None]:
            msgs: list[Message] = [{"role": "user", "content": f"q{p}"}]
            return await shared.pool(f"q{p}", msgs, params, RequestCounter())

        got = await asyncio.gather(*(ask(p) for p in range(12) for _ in range(4)))
    assert Slow.calls == 12
    assert reads == 12
    for p in range(12):
        pools = got[4 * p : 4 * p + 4]
        assert all(a is b for pool in pools for a, b in zip(pool, pools[0], strict=True))
        assert [c.text for c in pools[0] if c] == [f"q{p} {i}" for i in range(4)]
    assert not shared._users
    assert not shared._locks
    assert not shared._loaded
