"""The engine end to end against the fake server, and its scheduling with a scripted backend."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import pytest

from pacore.backends import RequestCounter
from pacore.backends.base import ProgressCallback, TextCallback
from pacore.backends.openai_compat import OpenAIBackend
from pacore.config import PacoreConfig
from pacore.core.planning import shuffle_references
from pacore.core.prompts import render_default
from pacore.engine import Engine, Progress
from pacore.types import Completion, Message, Problem, SamplingParams, Usage
from tests.conftest import FakeSleep
from tests.fake_server import FakeConfig, FakeServer, count_tokens, fixed_length_responder

QUESTION = "What is six times seven?"


def labelled(messages: list[dict[str, Any]], index: int, body: dict[str, Any]) -> str:
    """Round 1 answers `A<index>`; a synthesis answers with how many references it saw."""
    text = messages[-1]["content"]
    if "Reference Responses:" in text:
        refs = len(re.findall(r"\nReference \d+:\n", text))
        return f"<think>merging {refs}</think>\\boxed{{{refs}}} final"
    return f"<think>thinking {index}</think>A{index}"


def boxed(messages: list[dict[str, Any]], index: int, body: dict[str, Any]) -> str:
    return "<think>hmm \\boxed{1}</think>So it is \\boxed{4}."


def http(url: str, sleep: FakeSleep | None = None, **kw: Any) -> OpenAIBackend:
    opts: dict[str, Any] = {"model": "fake-model", "max_retries": 0}
    if sleep is not None:
        opts["sleep"] = sleep
    opts.update(kw)
    return OpenAIBackend(url, **opts)


async def test_low_preset_two_rounds_with_accounting() -> None:
    async with FakeServer(FakeConfig(responder=labelled)) as srv, http(srv.url) as be:
        result = await Engine(be, PacoreConfig.from_preset("low", seed=3)).solve(
            QUESTION, problem_id="p1"
        )
    assert result.status == "ok"
    assert result.error is None
    assert result.widths == (4, 1)
    assert [len(r.trajectories) for r in result.rounds] == [4, 1]
    assert result.answer == "\\boxed{4} final"
    assert result.final_text == "<think>merging 4</think>\\boxed{4} final"
    assert result.requests == 2 == srv.stats.requests
    assert result.ttc_tokens == srv.stats.completion_tokens
    # The synthesis prompt is the published template over the compacted messages,
    # in this problem's seeded order.
    messages = [f"A{i}" for i in range(4)]
    order = shuffle_references(messages, seed=3, problem="p1", round_index=2)
    sent = srv.stats.bodies[1]["messages"]
    assert sent == [{"role": "user", "content": render_default(QUESTION, order)}]
    r2_prompt = count_tokens(sent[0]["content"])
    assert result.max_prompt_tokens == r2_prompt == result.rounds[1].prompt_tokens
    final_tokens = result.rounds[1].trajectories[0].usage.completion_tokens
    assert result.max_context_tokens == r2_prompt + final_tokens


async def test_high_preset_three_rounds() -> None:
    async with FakeServer(FakeConfig(responder=labelled)) as srv, http(srv.url) as be:
        result = await Engine(be, PacoreConfig.from_preset("high")).solve(QUESTION)
    assert [r.width for r in result.rounds] == [32, 4, 1]
    assert [r.references for r in result.rounds] == [0, 32, 4]
    assert [b.get("n", 1) for b in srv.stats.bodies] == [32, 4, 1]
    assert result.answer == "\\boxed{4} final"


async def test_each_problem_gets_its_own_reference_order() -> None:
    async with FakeServer(FakeConfig(responder=labelled)) as srv, http(srv.url) as be:
        engine = Engine(be, PacoreConfig(widths=(16,), seed=0))
        for i in range(3):
            await engine.solve(QUESTION, problem_id=f"p{i}")
    prompts = [
        b["messages"][-1]["content"]
        for b in srv.stats.bodies
        if "Reference" in b["messages"][-1]["content"]
    ]
    assert len(prompts) == 3
    assert len(set(prompts)) == 3


async def test_multi_turn_keeps_earlier_turns() -> None:
    convo: list[Message] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": QUESTION},
    ]
    async with FakeServer(FakeConfig(responder=labelled)) as srv, http(srv.url) as be:
        await Engine(be, PacoreConfig(widths=(2,))).solve(convo)
    first, synth = srv.stats.bodies
    assert first["messages"] == convo
    assert synth["messages"][:3] == convo[:3]
    assert synth["messages"][3]["content"].startswith("You are given a problem")
    assert QUESTION in synth["messages"][3]["content"]


async def test_compaction_modes() -> None:
    async with FakeServer(FakeConfig(responder=labelled)) as srv, http(srv.url) as be:
        await Engine(be, PacoreConfig(widths=(2,), compaction="full")).solve(QUESTION)
        full_prompt = srv.stats.bodies[-1]["messages"][-1]["content"]
        assert "<think>thinking 0</think>A0" in full_prompt
        srv.config.responder = boxed
        result = await Engine(be, PacoreConfig(widths=(2,), compaction="answer")).solve(QUESTION)
    synth = srv.stats.bodies[-1]["messages"][-1]["content"]
    assert "Reference 1:\n4\n" in synth
    assert "think" not in synth
    assert result.answer == "4"  # only the boxed content is kept


# -- failure policy -------------------------------------------------------------


async def test_continue_goes_on_with_survivors() -> None:
    config = FakeConfig(responder=labelled, supports_n=False, fail_script=[500, "ok", "ok", "ok"])
    async with FakeServer(config) as srv, http(srv.url, use_n=False) as be:
        result = await Engine(be, PacoreConfig(widths=(4,), on_failure="continue")).solve(QUESTION)
    statuses = [t.status for t in result.rounds[0].trajectories]
    assert sorted(statuses) == ["error", "ok", "ok", "ok"]  # the failure is recorded, not dropped
    assert result.rounds[1].references == 3
    assert result.answer == "\\boxed{3} final"


async def test_resample_replaces_failed_trajectories() -> None:
    config = FakeConfig(responder=labelled, fail_script=[500, "ok", "ok"])
    async with FakeServer(config) as srv, http(srv.url) as be:
        engine = Engine(be, PacoreConfig(widths=(4,), on_failure="resample"))
        result = await engine.solve(QUESTION)
    round1 = result.rounds[0].trajectories
    # 4 final slots (re-sampled) plus the 4 failed first attempts, all kept.
    assert [t.status for t in round1[:4]] == ["ok"] * 4
    assert all(t.attempt == 1 for t in round1[:4])
    assert [t.status for t in round1[4:]] == ["error"] * 4
    assert result.rounds[1].references == 4
    assert result.requests == 3


async def test_fail_policy_fails_the_problem_with_a_reason() -> None:
    config = FakeConfig(responder=labelled, fail_script=[503])
    async with FakeServer(config) as srv, http(srv.url) as be:
        result = await Engine(be, PacoreConfig(widths=(4,), on_failure="fail")).solve(QUESTION)
    assert result.status == "failed"
    assert result.error is not None
    assert "round 1: 4 of 4 trajectories failed" in result.error
    assert "HTTP 503" in result.error
    assert result.answer == ""
    assert len(result.rounds) == 1


async def test_never_synthesises_from_nothing() -> None:
    config = FakeConfig(responder=labelled, fail_script=[500, 500, 500])
    async with FakeServer(config) as srv, http(srv.url) as be:
        engine = Engine(be, PacoreConfig(widths=(4,), on_failure="resample", max_resamples=2))
        result = await engine.solve(QUESTION)
    assert result.status == "failed"
    assert "only 0 of 4 trajectories usable" in (result.error or "")
    assert result.failure == "infrastructure"
    assert srv.stats.requests == 3  # first try + 2 re-samples, no synthesis call


async def test_final_round_failure_fails_the_problem() -> None:
    config = FakeConfig(responder=labelled, fail_script=["ok", 500])
    async with FakeServer(config) as srv, http(srv.url) as be:
        engine = Engine(be, PacoreConfig(widths=(2,), on_failure="continue"))
        result = await engine.solve(QUESTION)
    assert result.status == "failed"
    assert "final" in (result.error or "")


async def test_truncated_trajectories_dropped_or_kept() -> None:
    config = FakeConfig(responder=fixed_length_responder(40))
    async with FakeServer(config) as srv, http(srv.url) as be:
        dropped = await Engine(be, PacoreConfig(widths=(3,), max_tokens=5)).solve(QUESTION)
        assert dropped.status == "failed"
        assert "3 truncated" in (dropped.error or "")
        assert "raise max_tokens, or keep truncated" in (dropped.error or "")
        assert dropped.failure == "model"  # nothing failed on the wire
        kept = await Engine(be, PacoreConfig(widths=(3,), max_tokens=5, truncated="keep")).solve(
            QUESTION
        )
    assert [t.status for t in kept.rounds[0].trajectories] == ["truncated"] * 3
    assert kept.rounds[1].references == 3
    assert kept.status == "truncated"  # the final trajectory was cut too, and says so


async def test_context_overflow_in_synthesis_is_reported_not_resampled() -> None:
    prompt = count_tokens(QUESTION)
    config = FakeConfig(responder=labelled, context_limit=prompt + 10)
    async with FakeServer(config) as srv, http(srv.url) as be:
        result = await Engine(be, PacoreConfig(widths=(4,))).solve(QUESTION)
    assert result.status == "failed"
    assert "ContextLengthError" in (result.error or "")
    assert srv.stats.requests == 2  # the synthesis was not re-sampled: it cannot fit


# -- scheduling -----------------------------------------------------------------


class ScriptedBackend:
    """A backend whose calls for a problem can be held until a test releases them."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.in_flight = 0
        self.peak = 0

    name = "scripted"

    async def start(self) -> None:
        return None

    async def complete(
        self,
        messages: Sequence[Message],
        n: int,
        params: SamplingParams,
        *,
        affinity: str | None = None,
        on_tokens: ProgressCallback | None = None,
        counter: RequestCounter | None = None,
        on_text: TextCallback | None = None,
    ) -> list[Completion]:
        problem = (affinity or "").split(":")[0]
        if counter is not None:
            counter.requests += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            gate = self.gates.get(problem)
            if gate is not None:
                await gate.wait()
            await asyncio.sleep(0)
        finally:
            self.in_flight -= 1
        return [
            Completion(text=f"{problem}-{i}", finish_reason="stop", usage=Usage(3, 2))
            for i in range(n)
        ]

    async def aclose(self) -> None:
        return None


async def test_solve_many_has_no_barrier_between_problems() -> None:
    backend = ScriptedBackend()
    backend.gates["slow"] = asyncio.Event()
    engine = Engine(backend, PacoreConfig(widths=(2, 2)))
    problems = [
        Problem(id=name, messages=({"role": "user", "content": name},))
        for name in ("slow", "fast1", "fast2")
    ]
    order: list[str] = []
    async for result in engine.solve_many(problems):
        order.append(result.id)
        if len(order) == 2:
            backend.gates["slow"].set()  # the slow one was still in round 1 all along
    # Both fast problems may finish in the same step, in either order.
    assert sorted(order[:2]) == ["fast1", "fast2"]
    assert order[2] == "slow"


async def test_solve_many_bounds_problems_in_flight() -> None:
    backend = ScriptedBackend()
    engine = Engine(backend, PacoreConfig(widths=(2,), max_problems_in_flight=3))

    def source() -> Any:
        for i in range(20):
            yield Problem(id=f"p{i}", messages=({"role": "user", "content": str(i)},))

    results = [r async for r in engine.solve_many(source())]
    assert sorted(r.id for r in results) == sorted(f"p{i}" for i in range(20))
    assert backend.peak <= 3
    assert all(r.ttc_tokens == 2 * 2 + 2 for r in results)  # usage of every trajectory summed


async def test_progress_hooks_fire() -> None:
    events: list[tuple[str, object]] = []

    class Recorder(Progress):
        def round_started(self, problem_id: str, round_index: int, width: int) -> None:
            events.append(("round", (round_index, width)))

        def problem_done(self, result: Any) -> None:
            events.append(("done", result.id))

    engine = Engine(ScriptedBackend(), PacoreConfig(widths=(3,)), progress=Recorder())
    await engine.solve("q", problem_id="x")
    assert events == [("round", (1, 3)), ("round", (2, 1)), ("done", "x")]


async def test_result_dict_has_the_batch_fields() -> None:
    engine = Engine(ScriptedBackend(), PacoreConfig(widths=(2,)))
    d = (await engine.solve("q", problem_id="x")).to_dict()
    for key in ("id", "answer", "final_text", "rounds", "ttc_tokens", "max_context_tokens"):
        assert key in d
    assert d["requests"] == 2
    traj = d["rounds"][0][0]
    for key in ("text", "message", "status", "finish_reason", "usage"):
        assert key in traj
    assert traj["usage"]["completion_tokens"] == 2
    # Each round's prompt: the question, then the synthesis of round 1's two messages,
    # which the batch output and `pacore view` show.
    first, synthesis = d["prompts"]
    assert first == [{"role": "user", "content": "q"}]
    shown = synthesis[-1]["content"]
    assert all(t["message"] in shown for t in d["rounds"][0])
    assert "prompts" not in (await engine.solve("q", problem_id="x")).to_dict(include_text=False)


async def test_empty_question_is_rejected() -> None:
    from pacore.errors import ConfigError

    with pytest.raises(ConfigError, match="empty"):
        await Engine(ScriptedBackend()).solve("   ")


def test_trajectory_dict_matches_the_dataclass() -> None:
    import dataclasses

    from pacore.types import Trajectory

    t = Trajectory(0, "t", "m", "ok", "stop", Usage(1, 2, 3, True), 0.5, None, "http://x", 1)
    assert t.to_dict() == dataclasses.asdict(t)


async def test_solve_many_raises_a_bug_in_a_backend_once() -> None:
    class Broken(ScriptedBackend):
        async def complete(self, *args: Any, **kwargs: Any) -> list[Completion]:
            raise RuntimeError("backend bug")

    engine = Engine(Broken(), PacoreConfig(widths=(2,)))
    problems = [Problem(id=f"p{i}", messages=({"role": "user", "content": "q"},)) for i in range(3)]
    with pytest.raises(RuntimeError, match="backend bug"):
        async for _ in engine.solve_many(problems):
            pass


@pytest.mark.parametrize("retryable", [True, False])
async def test_resampling_follows_the_typed_retryable_field(retryable: bool) -> None:
    """The backend's `retryable`, not the error's class name, decides whether to resample."""
    from pacore.errors import ServerError

    class FailsOnce(ScriptedBackend):
        calls = 0

        async def complete(self, *args: Any, **kwargs: Any) -> list[Completion]:
            self.calls += 1
            if self.calls == 1:
                error = ServerError("HTTP 500: boom", retryable=retryable)
                return [Completion.failed(error)] * args[1]
            return await super().complete(*args, **kwargs)

    backend = FailsOnce()
    config = PacoreConfig(widths=(2,), on_failure="resample")
    result = await Engine(backend, config).solve(QUESTION)
    first = result.rounds[0].trajectories
    assert all(t.retryable is retryable for t in first if t.status == "error")
    if retryable:
        assert result.status == "ok"
        assert backend.calls == 3  # failed round, its resample, the synthesis
    else:
        assert result.status == "failed"
        assert backend.calls == 1
