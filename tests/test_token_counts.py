"""Token counts against each way servers report usage (the fake server plays each one)."""

from __future__ import annotations

import pytest

from pacore.backends.openai_compat import OpenAIBackend
from pacore.config import PacoreConfig
from pacore.engine import Engine
from pacore.types import SamplingParams
from tests.conftest import FakeSleep
from tests.fake_server import (
    FakeConfig,
    FakeServer,
    count_tokens,
    fixed_length_responder,
    split_chunks,
)

MSGS = [{"role": "user", "content": "What is six times seven?"}]


def backend(url: str, **kw: object) -> OpenAIBackend:
    """A backend on `url` whose retries never really wait."""
    options: dict[str, object] = {"model": "fake-model", "max_retries": 3, "sleep": FakeSleep()}
    return OpenAIBackend(url, **{**options, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize("stream", [False, True])
async def test_per_choice_usage_chunks_count_every_choice_exactly(stream: bool) -> None:
    """llama.cpp: one usage chunk per choice. Every choice's count is its own, exact."""
    config = FakeConfig(usage_style="llama.cpp")
    async with FakeServer(config) as srv, backend(srv.url) as be:
        out = await be.complete(MSGS, 3, SamplingParams(stream=stream))
        assert srv.stats.requests == 1
        assert srv.stats.bodies[0]["n"] == 3
        assert srv.stats.bodies[0]["stream"] is True  # n > 1 is always asked streamed
    assert [c.usage.completion_tokens for c in out] == [count_tokens(c.text) for c in out]
    assert not any(c.usage.estimated for c in out)
    assert sum(c.usage.completion_tokens for c in out) == srv.stats.completion_tokens


async def test_a_whole_request_usage_keeps_the_total_exact() -> None:
    """vLLM, SGLang, OpenAI: one usage for all the choices; shares are estimates."""
    async with FakeServer(FakeConfig()) as srv, backend(srv.url) as be:
        out = await be.complete(MSGS, 4, SamplingParams())
    assert sum(c.usage.completion_tokens for c in out) == srv.stats.completion_tokens
    assert all(c.usage.estimated for c in out)


async def test_no_usage_at_all_is_estimated_never_zero() -> None:
    async with FakeServer(FakeConfig(include_usage=False)) as srv, backend(srv.url) as be:
        out = await be.complete(MSGS, 2, SamplingParams())
    assert all(c.usage.completion_tokens > 0 for c in out)
    assert all(c.usage.estimated for c in out)


async def test_a_usage_short_of_its_choices_switches_the_endpoint_to_one_per_request() -> None:
    """A usage that cannot cover its choices is not trusted: measured from the text this
    time, and that server gets one request per sample from then on, said once."""
    config = FakeConfig(usage_style="first_only", responder=fixed_length_responder(30))
    params = SamplingParams(max_tokens=10)  # every choice is cut at 10: 3 x 10 > 10
    notes: list[str] = []
    async with FakeServer(config) as srv, backend(srv.url, notify=notes.append) as be:
        first = await be.complete(MSGS, 3, params)
        assert srv.stats.requests == 1
        again = await be.complete(MSGS, 3, params)
        assert srv.stats.requests == 4  # three requests with n=1
        assert all("n" not in body for body in srv.stats.bodies[1:])
        await be.complete(MSGS, 3, params)
    assert all(c.usage.estimated for c in first)
    assert [c.usage.completion_tokens for c in again] == [10, 10, 10]
    assert not any(c.usage.estimated for c in again)
    assert len(notes) == 1
    assert "cannot be trusted" in notes[0]
    assert srv.url in notes[0]


async def test_a_first_choice_usage_is_caught_without_any_cut_choice() -> None:
    """The same server when no choice is cut: the check needed only a token for each
    uncut choice, so a usage of the first choice alone (30 tokens for 4 x 30) was
    trusted and the answer under-counted by three quarters. A whole-request usage must
    now hold a token per 16 characters of its choices."""
    config = FakeConfig(usage_style="first_only", responder=fixed_length_responder(30))
    async with FakeServer(config) as srv, backend(srv.url, notify=lambda _: None) as be:
        first = await be.complete(MSGS, 4, SamplingParams())
        chars = sum(len(c.text) for c in first)
        reported = srv.stats.completion_tokens // 4  # what the first-only usage said
        assert chars / reported > 16  # the case: more characters a token than any text
        again = await be.complete(MSGS, 4, SamplingParams())
    assert all(c.usage.estimated for c in first)
    assert sum(c.usage.completion_tokens for c in first) > 2 * reported
    assert [c.usage.completion_tokens for c in again] == [30, 30, 30, 30]  # one per request
    assert not any(c.usage.estimated for c in again)


async def test_a_whole_request_usage_of_dense_text_is_trusted() -> None:
    """A true whole-request usage is kept, at any ordinary density of characters."""
    config = FakeConfig(responder=fixed_length_responder(30))
    async with FakeServer(config) as srv, backend(srv.url) as be:
        out = await be.complete(MSGS, 4, SamplingParams())
    assert sum(c.usage.completion_tokens for c in out) == srv.stats.completion_tokens == 120
    assert srv.stats.requests == 1


async def test_tokens_streamed_by_a_cut_attempt_count_in_ttc() -> None:
    """An attempt cut midway had generated tokens: they are spent, so they are counted."""
    config = FakeConfig(fail_script=["drop_mid", "ok"], responder=fixed_length_responder(20))
    async with FakeServer(config) as srv, backend(srv.url) as be:
        (c,) = await be.complete(MSGS, 1, SamplingParams(stream=True))
        assert srv.stats.requests == 2
    assert c.error is None
    assert c.usage.completion_tokens == 20
    assert c.usage.discarded_tokens == 10  # half of the first attempt's 20 deltas
    assert c.usage.generated == 30
    assert c.usage.estimated


async def test_a_cut_stream_of_several_tokens_a_delta_is_not_counted_a_delta_a_token() -> None:
    """A server that sends three tokens a delta, cut part way: it had generated three
    times the deltas it sent, and the cut attempt was counted as its deltas. It is now
    counted from the characters received when they say more, within what was sent."""
    config = FakeConfig(
        fail_script=["drop_mid", "ok"], responder=fixed_length_responder(20), chunk_tokens=3
    )
    async with FakeServer(config) as srv, backend(srv.url) as be:
        (c,) = await be.complete(MSGS, 1, SamplingParams(stream=True))
    text = fixed_length_responder(20)(MSGS, 0, {})
    assert isinstance(text, str)
    chunks = split_chunks(text, 3)
    sent = chunks[: len(chunks) // 2]  # what the cut stream had sent (the fake's rule)
    words = sum(count_tokens(piece) for piece in sent)
    assert words == 3 * len(sent)
    assert 2 * words <= 3 * c.usage.discarded_tokens <= 3 * words  # within a third, never over
    assert c.usage.discarded_tokens > len(sent)  # was: one a delta


async def test_a_sample_that_fails_for_good_keeps_the_tokens_it_streamed() -> None:
    config = FakeConfig(fail_script=["drop_mid", "drop_mid"], responder=fixed_length_responder(8))
    async with FakeServer(config) as srv:
        be = backend(srv.url, max_retries=1)
        async with be:
            (c,) = await be.complete(MSGS, 1, SamplingParams(stream=True))
    assert c.error is not None
    assert c.usage.discarded_tokens == 8  # 4 + 4 streamed before each cut
    assert c.usage.generated == 8


async def test_ttc_sums_every_token_generated_failed_attempts_included() -> None:
    config = FakeConfig(fail_script=["drop_mid"], responder=fixed_length_responder(12))
    async with FakeServer(config) as srv, backend(srv.url) as be:
        engine = Engine(be, PacoreConfig(widths=(1,), stream=True))
        result = await engine.solve("Q?")
    assert result.status == "ok"
    trajectories = [t for r in result.rounds for t in r.trajectories]
    assert result.ttc_tokens == sum(t.usage.generated for t in trajectories)
    assert result.ttc_tokens == 12 + 12 + 6  # two trajectories and the cut half of one


@pytest.mark.parametrize(("style", "second_streamed"), [("whole", False), ("llama.cpp", True)])
async def test_a_server_whose_stream_shows_whole_request_usage_is_asked_plainly_after(
    style: str, second_streamed: bool
) -> None:
    """The first n > 1 request streams; a server that then reports one usage for the whole
    request (vLLM) counts every choice in plain answers too, so it is not streamed again;
    llama.cpp, which reports per choice (and counts one choice in plain answers), is."""
    async with FakeServer(FakeConfig(usage_style=style)) as srv, backend(srv.url) as be:
        await be.complete(MSGS, 3, SamplingParams())
        again = await be.complete(MSGS, 3, SamplingParams())
        bodies = srv.stats.bodies
    assert bodies[0].get("stream") is True
    assert bool(bodies[1].get("stream")) is second_streamed
    assert sum(c.usage.completion_tokens for c in again) == sum(count_tokens(c.text) for c in again)


@pytest.mark.parametrize(
    ("owner", "first_streamed"),
    [("vllm", False), ("sglang", False), ("llamacpp", True), ("fake", True)],
)
async def test_a_server_known_to_count_whole_requests_is_asked_plainly_at_once(
    owner: str, first_streamed: bool
) -> None:
    """vLLM and SGLang say who they are in `/models`: their usage for `n > 1` covers every
    choice, so no request needs streaming to learn it; any other server's first does."""
    config = FakeConfig(owned_by=owner)
    async with FakeServer(config) as srv, backend(srv.url) as be:
        await be.start()  # reads /models
        out = await be.complete(MSGS, 3, SamplingParams())
        bodies = srv.stats.bodies
    assert srv.stats.model_requests == 1
    assert bool(bodies[0].get("stream")) is first_streamed
    assert sum(c.usage.completion_tokens for c in out) == srv.stats.completion_tokens


@pytest.mark.parametrize(
    ("config", "stream"),
    [
        (FakeConfig(responder=fixed_length_responder(20), chunk_tokens=4), True),
        (FakeConfig(responder=fixed_length_responder(20), include_usage=False), False),
        (FakeConfig(responder=fixed_length_responder(20)), False),
    ],
    ids=["four-tokens-a-delta", "no-usage", "plain"],
)
async def test_progress_tokens_add_up_to_the_counted_tokens(
    config: FakeConfig, stream: bool
) -> None:
    """Progress showed a quarter of a stream of four tokens a delta (a delta each, never
    reconciled with its usage) and nothing of a plain answer without usage."""
    shown: list[int] = []
    async with FakeServer(config) as srv, backend(srv.url) as be:
        out = await be.complete(MSGS, 3, SamplingParams(stream=stream), on_tokens=shown.append)
    assert sum(shown) == sum(c.usage.completion_tokens for c in out) > 0
