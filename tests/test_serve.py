"""`pacore serve` end to end: the official openai SDK against the app and a fake upstream."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from pacore.config import PacoreConfig, ServeConfig
from pacore.types import Message
from tests.fake_server import FakeConfig, Responder, echo_responder, fixed_length_responder
from tests.serve_helpers import pacore_server

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 6 * 7?"}]


def client(url: str, key: str = "none", **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=30, **kw)


def test_whole_answer_usage_and_breakdown() -> None:
    log: list[dict[str, Any]] = []
    with pacore_server(use_n=False, log=log) as (url, upstream):
        reply = client(url).chat.completions.create(model="pacore-low", messages=QUESTION)
        stats = upstream.stats
    choice = reply.choices[0]
    assert choice.message.content == "The answer is \\boxed{42}."
    assert (choice.message.model_extra or {})["reasoning_content"] == "reasoning about it, sample 0"
    assert choice.finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == stats.completion_tokens
    assert reply.usage.prompt_tokens == stats.prompt_tokens  # one request per trajectory
    pacore = (reply.model_extra or {})["pacore"]
    assert pacore["widths"] == [4, 1]
    rounds = pacore["choices"][0]["rounds"]
    assert [r["width"] for r in rounds] == [4, 1]
    assert rounds[1]["references"] == 4
    assert sum(r["completion_tokens"] for r in rounds) == stats.completion_tokens
    assert [r["status"] for r in log] == [200]
    assert log[0]["widths"] == [4, 1]
    assert log[0]["completion_tokens"] == stats.completion_tokens


def test_options_field_upstream_model_n_and_sampling() -> None:
    with pacore_server() as (url, upstream):
        reply = client(url).chat.completions.create(
            model="pacore-medium:other-model",
            messages=QUESTION,
            n=2,
            temperature=0.5,
            top_p=0.9,
            max_tokens=100,
            seed=3,
            stop=["END"],
            extra_body={"pacore": {"widths": [2, 2], "compaction": "full"}},
        )
        bodies = upstream.stats.bodies
    assert len(reply.choices) == 2
    assert (reply.model_extra or {})["pacore"]["widths"] == [2, 2, 1]
    assert all(b["model"] == "other-model" for b in bodies)
    assert all(b["temperature"] == 0.5 and b["top_p"] == 0.9 for b in bodies)
    assert all(b["max_tokens"] == 100 and b["stop"] == ["END"] for b in bodies)
    assert len({b["seed"] for b in bodies if b.get("n", 1) == 2}) == 4  # all distinct


def test_multi_turn_keeps_earlier_turns() -> None:
    turns: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "What is 6 * 7?"},
    ]
    with pacore_server(FakeConfig(responder=echo_responder)) as (url, upstream):
        client(url).chat.completions.create(model="pacore-low", messages=turns)
        final = upstream.stats.bodies[-1]["messages"]
    assert final[:3] == list(turns[:3])
    assert "Original Problem:\nWhat is 6 * 7?" in final[3]["content"]


async def test_streamed_progress_content_and_usage() -> None:
    with pacore_server() as (url, upstream):
        aclient = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
        stream = await aclient.chat.completions.create(
            model="pacore-low",
            messages=QUESTION,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        await aclient.close()
        served = upstream.stats.completion_tokens
    reasoning = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
        for c in chunks
        if c.choices
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Round 1: 4 parallel trajectories" in reasoning
    assert "trajectory 4/4 (ok): The answer is \\boxed{42}." in reasoning
    assert "reasoning about it, sample 0" in reasoning  # the final round's own thinking
    assert content == "The answer is \\boxed{42}."
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish[-1].choices[0].finish_reason == "stop"
    assert (finish[-1].model_extra or {})["pacore"]["widths"] == [4, 1]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == served


def wait_for(condition: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    """Wait until `condition()` (a state the fake upstream or the app reports) holds; the
    limit only bounds a failure, it orders nothing."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.005)


def synthesis_slow(n_words: int) -> Responder:
    """Round 1 answers at once; a synthesis (its prompt carries references) answers,
    then goes on for `n_words` more words, far longer than a test waits: it is still
    generating whenever the client looks, however loaded the machine."""
    short = fixed_length_responder(8)
    long = "<think> short </think>The answer is \\boxed{42}." + " Indeed." * n_words

    def respond(messages: list[Message], index: int, body: dict[str, Any]) -> str:
        synthesis = "Reference" in str(messages[-1].get("content"))
        return long if synthesis else str(short(messages, index, body))

    return respond


def test_final_round_streams_before_the_upstream_finishes() -> None:
    slow = FakeConfig(responder=synthesis_slow(10_000), per_token_s=0.01)
    with pacore_server(slow) as (url, upstream):
        stream = client(url).chat.completions.create(
            model="pacore-low", messages=QUESTION, stream=True
        )
        seen_in_flight = None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                seen_in_flight = upstream.stats.in_flight
                break
        stream.close()
    assert seen_in_flight == 1  # the final request was still generating


def test_client_leaving_cancels_upstream_work() -> None:
    """Round 1 writes 10,000 words at 10 ms each: it is still generating when the client
    leaves (after the upstream sent a chunk), however slow the machine."""
    slow = FakeConfig(responder=fixed_length_responder(10_000), per_token_s=0.01)
    log: list[dict[str, Any]] = []
    with pacore_server(slow, log=log) as (url, upstream):
        stats = upstream.stats
        with httpx.stream(
            "POST",
            f"{url}/chat/completions",
            json={"model": "pacore-low", "messages": QUESTION, "stream": True},
        ):
            wait_for(lambda: stats.in_flight > 0 and stats.completion_tokens > 0, "a chunk")
        wait_for(lambda: bool(log), "the request's log line")  # the request is over
        # The upstream sees its connection close in its own time (its next write).
        wait_for(lambda: stats.in_flight == 0 and stats.cancelled >= 1, "the upstream's cancel")
        # No later round started: every request the upstream saw is round 1's.
        assert stats.bodies
        assert all(body["messages"] == QUESTION for body in stats.bodies)
    assert [r["status"] for r in log] == [499]


def test_passthrough_whole_and_streamed() -> None:
    with pacore_server() as (url, upstream):
        c = client(url)
        reply = c.chat.completions.create(model="fake-model", messages=QUESTION)
        assert reply.choices[0].message.content is not None
        assert "boxed{42}" in reply.choices[0].message.content
        chunks = list(c.chat.completions.create(model="fake-model", messages=QUESTION, stream=True))
        assert upstream.stats.requests == 2
        assert "pacore" not in upstream.stats.bodies[0]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.endswith("The answer is \\boxed{42}.")


async def test_passthrough_async_and_upstream_errors() -> None:
    with pacore_server(retries=0) as (url, upstream):
        aclient = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
        reply = await aclient.chat.completions.create(model="fake-model", messages=QUESTION)
        assert reply.usage is not None
        assert reply.usage.completion_tokens > 0
        upstream.push_script(500)
        with pytest.raises(openai.APIStatusError) as caught:
            await aclient.chat.completions.create(model="fake-model", messages=QUESTION)
        assert caught.value.status_code == 502
        upstream.push_script(400)
        with pytest.raises(openai.BadRequestError):
            await aclient.chat.completions.create(model="fake-model", messages=QUESTION)
        await aclient.close()


def test_pacore_upstream_failure_is_502_and_timeout_504() -> None:
    defaults = PacoreConfig(on_failure="fail")
    with pacore_server(defaults=defaults, retries=0, timeout=0.3) as (url, upstream):
        c = client(url)
        upstream.push_script(500)
        with pytest.raises(openai.APIStatusError) as caught:
            c.chat.completions.create(model="pacore-low", messages=QUESTION)
        assert caught.value.status_code == 502
        assert caught.value.body["type"] == "upstream_error"  # type: ignore[index]
        upstream.push_script("hang")
        with pytest.raises(openai.APIStatusError) as caught:
            c.chat.completions.create(model="pacore-low", messages=QUESTION)
        assert caught.value.status_code == 504
        upstream.push_script(500)
        with pytest.raises(openai.APIError):
            list(c.chat.completions.create(model="pacore-low", messages=QUESTION, stream=True))


def test_api_keys() -> None:
    with pacore_server(settings=ServeConfig(api_key=("k1", "k2"))) as (url, _):
        with pytest.raises(openai.AuthenticationError):
            client(url, "wrong").chat.completions.create(model="pacore-low", messages=QUESTION)
        for header in ({"Authorization": "Bearer"}, {"Authorization": "Basic k1"}):
            r = httpx.post(f"{url}/chat/completions", json={"model": "x"}, headers=header)
            assert r.status_code == 401
        missing = httpx.post(f"{url}/chat/completions", json={"model": "pacore-low"})
        assert missing.status_code == 401
        assert missing.json()["error"]["type"] == "authentication_error"
        assert client(url, "k2").chat.completions.create(model="pacore-low", messages=QUESTION)
        assert httpx.get(f"{url}/models").status_code == 401
        assert httpx.get(f"{url[:-3]}/health").status_code == 200


BAD_BODIES: list[tuple[Any, str | None]] = [
    (b"{not json", None),
    (b"[1, 2]", None),
    ({"model": "pacore-low"}, "messages"),
    ({"model": "pacore-low", "messages": []}, "messages"),
    ({"model": "pacore-low", "messages": "hi"}, "messages"),
    ({"model": "pacore-low", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0"),
    ({"model": "pacore-low", "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"model": "pacore-low", "messages": [{"role": "system", "content": "x"}]}, "messages"),
    ({"model": "pacore-low", "messages": QUESTION, "temperature": "hot"}, "temperature"),
    ({"model": "pacore-low", "messages": QUESTION, "n": 0}, "n"),
    ({"model": "pacore-ultra", "messages": QUESTION}, "model"),
    ({"model": 7, "messages": QUESTION}, "model"),
    ({"model": "m", "messages": QUESTION, "pacore": {"widths": [5000]}}, "pacore.widths"),
    ({"model": "m", "messages": QUESTION, "pacore": {"widths": [0]}}, "pacore.widths"),
    ({"model": "m", "messages": QUESTION, "pacore": {"preset": "huge"}}, "pacore.widths"),
    ({"model": "m", "messages": QUESTION, "pacore": {"colour": "red"}}, "pacore.colour"),
    ({"model": "m", "messages": QUESTION, "pacore": {"max_resamples": -1}}, "pacore.max_resamples"),
    ({"model": "pacore-high", "messages": QUESTION, "n": 8}, "pacore.widths"),
    ({"model": "pacore-low", "messages": QUESTION, "n": 9}, "n"),
    ({"model": "pacore-low", "messages": QUESTION, "max_tokens": 10**6}, "max_tokens"),
]


def test_bad_bodies_get_400_in_openai_shape() -> None:
    settings = ServeConfig(max_trajectories=200, max_body=2000)
    with pacore_server(settings=settings) as (url, upstream):
        for body, param in BAD_BODIES:
            if isinstance(body, bytes):
                r = httpx.post(f"{url}/chat/completions", content=body)
            else:
                r = httpx.post(f"{url}/chat/completions", json=body)
            assert r.status_code == 400, (body, r.text)
            error = r.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert error["type"] == "invalid_request_error"
            assert error["param"] == param, (body, error)
        big = {"model": "pacore-low", "messages": [{"role": "user", "content": "x" * 5000}]}
        assert httpx.post(f"{url}/chat/completions", json=big).status_code == 413
        chunked = httpx.post(f"{url}/chat/completions", content=iter([b"x" * 1500] * 2))
        assert chunked.status_code == 413
        assert httpx.get(f"{url}/nowhere").json()["error"]["type"] == "invalid_request_error"
        assert upstream.stats.requests == 0


def test_limits_answer_429() -> None:
    """Each request holds its place upstream for 3 s: the refusals are sent once the
    upstream reports the requests they wait behind, and long before those end."""
    slow = FakeConfig(ttft_s=3.0)
    with pacore_server(slow, settings=ServeConfig(api_key=("a", "b"), per_key=1, queue=2)) as (
        url,
        upstream,
    ):
        body = {"model": "fake-model", "messages": QUESTION}

        def post(key: str) -> httpx.Response:
            headers = {"Authorization": f"Bearer {key}"}
            return httpx.post(f"{url}/chat/completions", json=body, headers=headers, timeout=10)

        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            first = pool.submit(post, "a")
            wait_for(lambda: upstream.stats.in_flight == 1, "the first request upstream")
            same_key = post("a")
            other = pool.submit(post, "b")
            wait_for(lambda: upstream.stats.in_flight == 2, "the second request upstream")
            queue_full = post("b")
            assert first.result().status_code == 200
            assert other.result().status_code == 200
        assert same_key.status_code == 429
        assert same_key.json()["error"]["type"] == "rate_limit_error"
        assert queue_full.status_code == 429
        assert post("a").status_code == 200  # places are given back


def test_models_health_and_metrics() -> None:
    with pacore_server() as (url, _):
        c = client(url)
        ids = [m.id for m in c.models.list()]
        assert ids == ["pacore-low", "pacore-medium", "pacore-high", "fake-model"]
        c.chat.completions.create(model="pacore-low", messages=QUESTION)
        c.chat.completions.create(model="fake-model", messages=QUESTION)
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="pacore-nope", messages=QUESTION)
        root = url[:-3]
        assert httpx.get(f"{root}/health").json() == {"status": "ok"}
        text = httpx.get(f"{root}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests = {
        (s.labels["model"], s.labels["status"]): s.value
        for s in families["pacore_requests"].samples
        if s.name == "pacore_requests_total"
    }
    assert requests == {("pacore-low", "200"): 1, ("passthrough", "200"): 1, ("invalid", "400"): 1}
    trajectories = {s.labels["status"]: s.value for s in families["pacore_trajectories"].samples}
    assert trajectories.get("ok") == 5
    assert "pacore_request_duration_seconds" in families
    assert "pacore_requests_in_flight" in families
    assert "pacore_tokens" in families
    assert "pacore_upstream_errors" in families


def test_health_and_requests_before_the_upstream_answers() -> None:
    with pacore_server(FakeConfig(loading_s=60)) as (url, _):
        assert httpx.get(f"{url[:-3]}/health").status_code == 503
        with pytest.raises(openai.APIStatusError) as caught:
            client(url).chat.completions.create(model="pacore-low", messages=QUESTION)
        assert caught.value.status_code == 502
        assert "not ready" in caught.value.message


def test_a_model_that_leaves_nothing_usable_is_422_and_not_retried() -> None:
    """Every round-1 trajectory cut by max_tokens: the same request would fail the same
    way, so the answer is a 4xx the SDK does not retry, not a 5xx it would."""
    from tests.fake_server import fixed_length_responder

    fake = FakeConfig(responder=fixed_length_responder(40))
    with pacore_server(fake) as (url, upstream):
        c = openai.OpenAI(base_url=url, api_key="x", max_retries=2, timeout=30)
        with pytest.raises(openai.UnprocessableEntityError) as caught:
            c.chat.completions.create(model="pacore-low", messages=QUESTION, max_tokens=5)
        assert upstream.stats.requests == 1  # one round-1 request; no retry by the SDK
    assert "left nothing to synthesise" in caught.value.message
    assert "raise max_tokens" in caught.value.message
