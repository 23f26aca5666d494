"""The OpenAI-compatible backend against the in-process fake server."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiohttp import web

from pacore.backends import Backend, RequestCounter
from pacore.backends.openai_compat import OpenAIBackend
from pacore.errors import (
    AuthenticationError,
    ConnectionFailed,
)
from pacore.types import SamplingParams
from tests.conftest import FakeSleep, dead_url, serve_chat, serve_routes
from tests.fake_server import FakeConfig, FakeServer, count_tokens, fixed_length_responder

MSGS = [{"role": "user", "content": "What is six times seven?"}]
PARAMS = SamplingParams()


def backend(url: str | list[str], sleep: FakeSleep | None = None, **kw: object) -> OpenAIBackend:
    opts: dict[str, object] = {"model": "fake-model", "max_retries": 3}
    opts.update(kw)
    if sleep is not None:
        opts["sleep"] = sleep
    return OpenAIBackend(url, **opts)  # type: ignore[arg-type]


async def test_n_is_one_request_with_honest_usage(server: FakeServer) -> None:
    counter = RequestCounter()
    async with backend(server.url) as be:
        out = await be.complete(MSGS, 4, PARAMS, counter=counter)
    assert counter.requests == 1
    assert server.stats.requests == 1
    assert server.stats.bodies[0]["n"] == 4
    assert len(out) == 4
    assert len({c.text for c in out}) == 4
    assert all(c.error is None and c.finish_reason == "stop" for c in out)
    # The server reports one total for the request; it is split over the choices exactly.
    assert sum(c.usage.completion_tokens for c in out) == server.stats.completion_tokens
    assert all(c.usage.estimated for c in out)
    assert all(c.usage.prompt_tokens == count_tokens(MSGS[0]["content"]) for c in out)


async def test_single_sample_usage_is_exact(server: FakeServer) -> None:
    async with backend(server.url) as be:
        (c,) = await be.complete(MSGS, 1, PARAMS)
    assert "n" not in server.stats.bodies[0]
    assert not c.usage.estimated
    assert c.usage.completion_tokens == count_tokens(c.text)


async def test_fallback_when_server_ignores_n() -> None:
    async with FakeServer(FakeConfig(supports_n=False)) as srv, backend(srv.url) as be:
        first = await be.complete(MSGS, 4, SamplingParams(seed=10))
        assert len(first) == 4
        assert all(c.error is None for c in first)
        assert srv.stats.requests == 4  # one n=4 request answered with 1 choice, then 3 singles
        second = await be.complete(MSGS, 3, SamplingParams(seed=20))
        assert srv.stats.requests == 7  # n is not tried again on this endpoint
    assert len(second) == 3
    singles = srv.stats.bodies[4:]
    assert all("n" not in b for b in singles)
    assert sorted(b["seed"] for b in singles) == [20, 21, 22]  # each sample its own seed
    # Each single request's usage is exact.
    assert all(not c.usage.estimated for c in second)


async def test_fallback_when_server_rejects_n() -> None:
    async with FakeServer(FakeConfig(reject_n=True)) as srv, backend(srv.url) as be:
        out = await be.complete(MSGS, 3, PARAMS)
        assert len(out) == 3
        assert all(c.error is None for c in out)
        # n=3 refused without naming a cap: n=2 is tried (with one single beside it)
        # before n is given up for the endpoint.
        assert [b.get("n") for b in srv.stats.bodies] == [3, 2, None, None, None]


async def test_use_n_false_never_sends_n(server: FakeServer) -> None:
    async with backend(server.url, use_n=False) as be:
        out = await be.complete(MSGS, 3, PARAMS)
    assert len(out) == 3
    assert server.stats.requests == 3
    assert all("n" not in b for b in server.stats.bodies)


async def test_streaming_with_usage_and_split_reasoning() -> None:
    def responder(messages: object, index: int, body: object) -> tuple[str, str, str]:
        return (f"Final answer {index}: \\boxed{{7}}", "stop", f"think hard number {index}")

    ticks: list[int] = []
    config = FakeConfig(responder=responder, report_reasoning_tokens=True)
    async with FakeServer(config) as srv, backend(srv.url) as be:
        out = await be.complete(MSGS, 2, SamplingParams(stream=True), on_tokens=ticks.append)
    body = srv.stats.bodies[0]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert [c.text for c in out] == ["Final answer 0: \\boxed{7}", "Final answer 1: \\boxed{7}"]
    assert [c.reasoning for c in out] == ["think hard number 0", "think hard number 1"]
    assert sum(c.usage.completion_tokens for c in out) == srv.stats.completion_tokens
    assert sum(c.usage.reasoning_tokens or 0 for c in out) == 8
    assert sum(ticks) == srv.stats.completion_tokens  # one word per streamed delta


async def test_stream_without_usage_is_estimated_not_zero() -> None:
    async with FakeServer(FakeConfig(include_usage=False)) as srv, backend(srv.url) as be:
        (c,) = await be.complete(MSGS, 1, SamplingParams(stream=True))
    assert c.usage.estimated
    assert c.usage.completion_tokens > 0


async def test_retries_on_5xx_and_429_then_succeeds(fake_sleep: FakeSleep) -> None:
    config = FakeConfig(fail_script=[500, 503, 429, "ok"])
    counter = RequestCounter()
    async with FakeServer(config) as srv, backend(srv.url, fake_sleep) as be:
        out = await be.complete(MSGS, 2, PARAMS, counter=counter)
    assert all(c.error is None for c in out)
    assert counter.requests == 4 == srv.stats.requests
    assert len(fake_sleep.calls) == 3


async def test_backoff_is_exponential_with_jitter(fake_sleep: FakeSleep) -> None:
    class Extremes(random.Random):
        """Jitter that always draws the top (or bottom) of its range."""

        def __init__(self, top: bool) -> None:
            super().__init__(0)
            self.top = top

        def uniform(self, a: float, b: float) -> float:
            return b if self.top else a

    for top, expected in ((True, [1.0, 2.0, 4.0, 6.0]), (False, [0.0] * 4)):
        sleep = FakeSleep()
        config = FakeConfig(fail_script=[500] * 5)
        async with FakeServer(config) as srv:
            be = backend(
                srv.url, sleep, max_retries=4, backoff_base=1.0, backoff_max=6.0, rng=Extremes(top)
            )
            async with be:
                await be.complete(MSGS, 1, PARAMS)
        # attempt k sleeps uniformly in [0, cap], cap = base * 2**k, capped at backoff_max
        assert sleep.calls == expected


async def test_retry_after_is_honoured(fake_sleep: FakeSleep) -> None:
    config = FakeConfig(fail_script=[429, "ok"], retry_after=7.0)
    async with FakeServer(config) as srv, backend(srv.url, fake_sleep) as be:
        (c,) = await be.complete(MSGS, 1, PARAMS)
    assert c.error is None
    assert fake_sleep.calls == [7.0]


async def test_retries_exhausted_reports_error(fake_sleep: FakeSleep) -> None:
    config = FakeConfig(fail_script=[500] * 10)
    counter = RequestCounter()
    async with FakeServer(config) as srv, backend(srv.url, fake_sleep, max_retries=2) as be:
        out = await be.complete(MSGS, 3, PARAMS, counter=counter)
    assert counter.requests == 3  # 1 + 2 retries of the one n=3 request
    assert len(out) == 3
    assert all(c.error_type == "ServerError" for c in out)
    assert "HTTP 500" in (out[0].error or "")


async def test_waiting_for_a_retry_does_not_hold_the_slot() -> None:
    gate = asyncio.Event()
    sleeping = asyncio.Event()

    async def blocking_sleep(seconds: float) -> None:
        sleeping.set()
        await gate.wait()

    config = FakeConfig(fail_script=[429, "ok", "ok"])
    async with FakeServer(config) as srv:
        be = OpenAIBackend(srv.url, model="m", concurrency=1, sleep=blocking_sleep)
        async with be:
            first = asyncio.ensure_future(be.complete(MSGS, 1, PARAMS))
            await sleeping.wait()
            # The only slot is free while `first` sleeps: another call goes through.
            (other,) = await asyncio.wait_for(be.complete(MSGS, 1, PARAMS), timeout=5)
            assert other.error is None
            assert not first.done()
            gate.set()
            (retried,) = await first
    assert retried.error is None


async def test_timeout_is_honoured_and_retried(fake_sleep: FakeSleep) -> None:
    config = FakeConfig(fail_script=["hang", "ok"], hang_s=30)
    async with FakeServer(config) as srv:
        async with backend(srv.url, fake_sleep, timeout=0.3, max_retries=0) as be:
            (c,) = await be.complete(MSGS, 1, PARAMS)
        assert c.error_type == "RequestTimeout"
        assert "0.3s" in (c.error or "")
        async with backend(srv.url, fake_sleep, timeout=0.3, max_retries=1) as be:
            srv.push_script("hang", "ok")
            (c,) = await be.complete(MSGS, 1, PARAMS)
        assert c.error is None


async def test_context_length_error_is_classified_and_not_retried(fake_sleep: FakeSleep) -> None:
    config = FakeConfig(context_limit=3)
    counter = RequestCounter()
    async with FakeServer(config) as srv, backend(srv.url, fake_sleep) as be:
        out = await be.complete(MSGS, 2, PARAMS, counter=counter)
    assert counter.requests == 1
    assert fake_sleep.calls == []
    assert all(c.error_type == "ContextLengthError" for c in out)
    assert "maximum context length" in (out[0].error or "")


async def test_dropped_connection_is_retried(fake_sleep: FakeSleep) -> None:
    config = FakeConfig(fail_script=["drop", "ok"])
    async with FakeServer(config) as srv, backend(srv.url, fake_sleep) as be:
        (c,) = await be.complete(MSGS, 1, PARAMS)
    assert c.error is None
    assert srv.stats.requests == 2


async def test_auth_error_not_retried(fake_sleep: FakeSleep) -> None:
    config = FakeConfig(fail_script=[401])
    async with FakeServer(config) as srv, backend(srv.url, fake_sleep) as be:
        (c,) = await be.complete(MSGS, 1, PARAMS)
    assert c.error_type == "AuthenticationError"
    assert srv.stats.requests == 1


async def test_failing_endpoint_leaves_rotation(fake_sleep: FakeSleep) -> None:
    dead = dead_url()
    async with FakeServer(FakeConfig()) as srv:
        be = backend([dead, srv.url], fake_sleep, endpoint_cooldown=60)
        async with be:
            results = [await be.complete(MSGS, 2, PARAMS) for _ in range(6)]
    assert all(c.error is None and c.endpoint == srv.url for out in results for c in out)
    assert be.requests_made == 6 + 1  # only the first call ever tried the dead endpoint
    assert srv.stats.requests == 6


async def test_samples_of_one_call_stay_on_one_endpoint(fake_sleep: FakeSleep) -> None:
    async with (
        FakeServer(FakeConfig(supports_n=False, ttft_s=0.02)) as a,
        FakeServer(FakeConfig(supports_n=False, ttft_s=0.02)) as b,
    ):
        be = backend([a.url, b.url], fake_sleep)
        async with be:
            outs = await asyncio.gather(*(be.complete(MSGS, 4, PARAMS) for _ in range(8)))
    for out in outs:
        assert len({c.endpoint for c in out}) == 1
    # Least-loaded choice spreads the calls over both servers.
    assert a.stats.requests == b.stats.requests == 16


async def test_calls_of_one_affinity_share_an_endpoint(fake_sleep: FakeSleep) -> None:
    """A round's calls (its resamples, a pool's chunks) go where its prompt is cached."""
    async with FakeServer(FakeConfig()) as a, FakeServer(FakeConfig()) as b:
        be = backend([a.url, b.url], fake_sleep)
        async with be:
            same = [await be.complete(MSGS, 2, PARAMS, affinity="p1:2") for _ in range(6)]
            assert len({c.endpoint for out in same for c in out}) == 1
            spread = await asyncio.gather(
                *(be.complete(MSGS, 1, PARAMS, affinity=f"p{i}:1") for i in range(40))
            )
    assert {c.endpoint for out in spread for c in out} == {a.url, b.url}
    assert a.stats.requests + b.stats.requests == 46


async def test_connections_are_pooled(server: FakeServer) -> None:
    async with backend(server.url, concurrency=4) as be:
        for _ in range(10):
            await be.complete(MSGS, 2, PARAMS)
        assert server.stats.connections == 1
        await asyncio.gather(*(be.complete(MSGS, 1, PARAMS) for _ in range(40)))
    assert server.stats.requests == 50
    assert server.stats.connections <= 4


async def test_concurrency_limit_bounds_requests_in_flight() -> None:
    async with FakeServer(FakeConfig(ttft_s=0.02)) as srv, backend(srv.url, concurrency=3) as be:
        await asyncio.gather(*(be.complete(MSGS, 1, PARAMS) for _ in range(12)))
    assert srv.stats.peak_concurrency == 3


async def test_start_discovers_the_model(server: FakeServer) -> None:
    """`start()` names the model the server lists; requests then ask for it."""
    be = OpenAIBackend(server.url)
    assert isinstance(be, Backend)
    async with be:
        await be.start()
        assert be.name == "fake-model"
        assert server.stats.model_requests == 1
        (c,) = await be.complete(MSGS, 1, PARAMS)
    assert c.error is None
    assert server.stats.bodies[0]["model"] == "fake-model"


async def test_start_keeps_the_model_named(server: FakeServer) -> None:
    """A model given to the constructor is the backend's name before and after `start()`."""
    async with OpenAIBackend(server.url, model="mine") as be:
        assert be.name == "mine"
        await be.start()
        assert be.name == "mine"


async def test_start_reports_an_unreachable_backend() -> None:
    """No endpoint answering `/models` is a `ConnectionFailed` before any work starts."""
    be = OpenAIBackend(dead_url(), connect_timeout=2, wait_ready=0)
    async with be:
        with pytest.raises(ConnectionFailed, match="cannot reach backend"):
            await be.start()


async def test_start_reports_a_refused_key() -> None:
    """A 401 from `/models` is an `AuthenticationError` naming the variables to set."""

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "bad key"}}, status=401)

    async with (
        serve_routes({("GET", "/v1/models"): models}) as url,
        OpenAIBackend(url, model="m") as be,
    ):
        with pytest.raises(AuthenticationError, match="PACORE_API_KEY"):
            await be.start()


async def test_api_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    async def chat(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response(
            {"choices": [{"index": 0, "message": {"content": "ok"}, "finish_reason": "stop"}]}
        )

    monkeypatch.setenv("PACORE_API_KEY", "sk-test")
    async with serve_chat(chat) as url, OpenAIBackend(url, model="m") as be:
        (c,) = await be.complete(MSGS, 1, PARAMS)
    assert seen == ["Bearer sk-test"]
    assert c.text == "ok"
    assert c.usage.estimated


async def test_long_outputs_are_truncated_with_length() -> None:
    config = FakeConfig(responder=fixed_length_responder(50))
    async with FakeServer(config) as srv, backend(srv.url) as be:
        (c,) = await be.complete(MSGS, 1, SamplingParams(max_tokens=10))
    assert c.finish_reason == "length"
    assert c.usage.completion_tokens == 10


async def test_vllm_reasoning_field_is_read() -> None:
    def responder(messages: object, index: int, body: object) -> tuple[str, str, str]:
        return ("42", "stop", "long thought")

    config = FakeConfig(responder=responder, reasoning_field="reasoning")
    async with FakeServer(config) as srv, backend(srv.url) as be:
        (plain,) = await be.complete(MSGS, 1, PARAMS)
        (streamed,) = await be.complete(MSGS, 1, SamplingParams(stream=True))
    assert (plain.text, plain.reasoning) == ("42", "long thought")
    assert (streamed.text, streamed.reasoning) == ("42", "long thought")


async def test_stream_cut_midway_is_retried(fake_sleep: FakeSleep) -> None:
    config = FakeConfig(fail_script=["drop_mid", "ok"], responder=fixed_length_responder(20))
    async with FakeServer(config) as srv, backend(srv.url, fake_sleep) as be:
        (c,) = await be.complete(MSGS, 1, SamplingParams(stream=True))
    assert c.error is None
    assert c.finish_reason == "stop"
    assert srv.stats.requests == 2
    assert len(fake_sleep.calls) == 1
    assert c.usage.completion_tokens == count_tokens(c.text) + count_tokens(c.reasoning)


@pytest.mark.parametrize("cut", ["no_finish", "end_mid"])
async def test_stream_ending_unfinished_is_retried(cut: str, fake_sleep: FakeSleep) -> None:
    """A stream that ends cleanly but leaves a choice without finish_reason was cut short."""
    config = FakeConfig(fail_script=[cut, "ok"], responder=fixed_length_responder(20))
    async with FakeServer(config) as srv, backend(srv.url, fake_sleep) as be:
        out = await be.complete(MSGS, 2, SamplingParams(stream=True))
    assert [c.finish_reason for c in out] == ["stop", "stop"]
    assert srv.stats.requests == 2
    assert len(fake_sleep.calls) == 1


async def test_stream_never_finishing_fails_retryably(fake_sleep: FakeSleep) -> None:
    """Once retries run out, the samples fail as a broken connection would: resamplable."""
    config = FakeConfig(fail_script=["no_finish"] * 3)
    async with FakeServer(config) as srv, backend(srv.url, fake_sleep, max_retries=2) as be:
        out = await be.complete(MSGS, 2, SamplingParams(stream=True))
    assert srv.stats.requests == 3
    assert [c.error_type for c in out] == ["ConnectionFailed"] * 2
    assert all(c.retryable and "finish_reason" in (c.error or "") for c in out)


async def test_failed_samples_say_whether_to_try_again(fake_sleep: FakeSleep) -> None:
    """Exhausted server errors may be resampled; a refused request may not."""
    async with FakeServer(FakeConfig(fail_script=[500, 500])) as srv:
        async with backend(srv.url, fake_sleep, max_retries=1) as be:
            (failed,) = await be.complete(MSGS, 1, PARAMS)
        srv.push_script(400)
        async with backend(srv.url, fake_sleep) as be:
            (refused,) = await be.complete(MSGS, 1, PARAMS)
    assert (failed.error_type, failed.retryable) == ("ServerError", True)
    assert (refused.error_type, refused.retryable) == ("RequestRejected", False)


async def test_malformed_success_body_is_a_retryable_server_error(fake_sleep: FakeSleep) -> None:
    calls = 0

    async def chat(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(text="<html>gateway hiccup</html>", content_type="text/html")
        return web.json_response(
            {"choices": [{"index": 0, "message": {"content": "fine"}, "finish_reason": "stop"}]}
        )

    async with serve_chat(chat) as url, backend(url, fake_sleep) as be:
        (c,) = await be.complete(MSGS, 1, PARAMS)
    assert c.text == "fine"
    assert calls == 2
    assert len(fake_sleep.calls) == 1
