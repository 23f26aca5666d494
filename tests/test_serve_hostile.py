"""`pacore serve` against what clients and upstreams really send, through the openai SDK.

Each case here was a defect: a stream's error glued to half an event, the SDK's own
`n: null` refused, fields PaCoRe cannot honour silently dropped, a model name echoed by
the megabyte, an upstream's `Retry-After` lost, its 4xx on a PaCoRe model turned into
a retried 502, and passed-through requests outside the `--concurrency` budget.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from pacore.config import PacoreConfig
from tests.fake_server import FakeConfig
from tests.serve_helpers import pacore_server

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 6 * 7?"}]
EVENT = json.dumps(
    {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
     "choices": [{"index": 0, "delta": {"content": "hello "}, "finish_reason": None}]}
)  # fmt: skip
MODELS = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=30)


@contextlib.contextmanager
def raw_upstream(*answer: bytes) -> Iterator[str]:
    """An upstream that answers `/models` and then every chat request with the parts of
    `answer`, raw bytes, 0.2 s apart, and closes the connection (mid-event, mid-chunk:
    whatever it holds)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    request += chunk
                head = request.split(b"\r\n\r\n", 1)[0]
                if head.startswith(b"GET"):
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(MODELS) + MODELS
                    )
                    continue
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")), 0,
                )  # fmt: skip
                body = request.split(b"\r\n\r\n", 1)[1]
                while len(body) < length:
                    body += conn.recv(65536)
                for i, part in enumerate(answer):
                    if i:
                        time.sleep(0.2)  # the part before is read on its own
                    conn.sendall(part)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    finally:
        stop.set()
        server.close()
        thread.join(5)


def _chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)


@contextlib.contextmanager
def app_before(upstream: str, **settings: Any) -> Iterator[str]:
    from pacore.config import BackendConfig
    from pacore.serve.app import create_app
    from tests.serve_helpers import serving

    app = create_app(BackendConfig(backend=(upstream,), wait_ready=0.0, timeout=5.0), **settings)
    with serving(app) as url:
        yield url


def test_a_passthrough_stream_broken_mid_event_ends_on_an_event_boundary() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    whole = f"data: {EVENT}\n\n".encode()
    half = b'data: {"id": "x", "choices": [{"index": 0, "delta": {"content": "hel'
    with (
        raw_upstream(head + _chunked(whole), _chunked(half)) as upstream,
        app_before(upstream) as url,
    ):
        body = {"model": "m", "messages": QUESTION, "stream": True}
        with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=30) as r:
            assert r.status_code == 200
            lines = [line for line in r.iter_lines() if line]
        events = [line[len("data: ") :] for line in lines if line.startswith("data: ")]
        assert events[-1] == "[DONE]", lines
        parsed = [json.loads(e) for e in events[:-1]]  # every event is whole JSON
        assert parsed[0]["choices"][0]["delta"]["content"] == "hello "
        assert parsed[-1]["error"]["type"] == "upstream_error"
        stream = client(url).chat.completions.create(model="m", messages=QUESTION, stream=True)
        with pytest.raises(openai.APIError, match="broke off"):  # not a JSON decode error
            for _ in stream:
                pass


def test_an_upstream_error_body_keeps_its_retry_after_and_openai_shape() -> None:
    with pacore_server(FakeConfig(fail_script=[429, 429], retry_after=7)) as (url, _):
        for stream in (False, True):
            with pytest.raises(openai.RateLimitError) as caught:
                client(url).chat.completions.create(
                    model="fake-model", messages=QUESTION, stream=stream
                )
            assert caught.value.response.headers["retry-after"] == "7"
    text = b"Maximum request body size 1048576 exceeded."
    answer = (
        b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(text) + text
    )
    with (
        raw_upstream(answer) as upstream,
        app_before(upstream) as url,
        pytest.raises(openai.APIStatusError) as refused,
    ):
        client(url).chat.completions.create(model="m", messages=QUESTION)
    assert refused.value.status_code == 413
    error: dict[str, Any] = refused.value.body  # type: ignore[assignment]
    assert error["type"] == "invalid_request_error"
    assert "Maximum request body size" in error["message"]


def test_sdk_nulls_unsupported_fields_and_the_stop_param() -> None:
    with pacore_server() as (url, _):
        answer = client(url).chat.completions.create(
            model="pacore-low", messages=QUESTION, n=None, stream=None, seed=None, stop=None
        )
        assert answer.choices[0].message.content
        for field, value in [("tools", [{"type": "function", "function": {"name": "f"}}]),
                             ("response_format", {"type": "json_object"}),
                             ("logprobs", True), ("top_logprobs", 3),
                             ("tool_choice", "required")]:  # fmt: skip
            with pytest.raises(openai.BadRequestError) as caught:
                client(url).chat.completions.create(
                    model="pacore-low", messages=QUESTION, extra_body={field: value}
                )
            error: dict[str, Any] = caught.value.body  # type: ignore[assignment]
            assert error["param"] == field, error
            assert "do not support" in error["message"]
        for stop in (5, [5]):
            with pytest.raises(openai.BadRequestError) as bad:
                client(url).chat.completions.create(
                    model="pacore-low", messages=QUESTION, extra_body={"stop": stop}
                )
            assert bad.value.body["param"] == "stop"  # type: ignore[index]
        # the defaults of those fields still pass, and a plain model passes them through
        client(url).chat.completions.create(
            model="pacore-low",
            messages=QUESTION,
            extra_body={"tool_choice": "none", "logprobs": False},
        )
        client(url).chat.completions.create(
            model="fake-model", messages=QUESTION, extra_body={"logprobs": True}
        )


def test_models_retrieve_and_names_that_are_not_echoed_whole() -> None:
    log: list[dict[str, Any]] = []
    with pacore_server(log=log) as (url, _):
        assert client(url).models.retrieve("pacore-low").id == "pacore-low"
        assert client(url).models.retrieve("fake-model").id == "fake-model"
        with pytest.raises(openai.NotFoundError):
            client(url).models.retrieve("no-such-model")
        huge = "pacore-" + "x" * 1_000_000
        with pytest.raises(openai.BadRequestError) as caught:
            client(url).chat.completions.create(model=huge, messages=QUESTION)
        assert len(caught.value.message) < 1000
        nested: Any = "m"
        for _ in range(300):  # deeper than the JSON encoder of the log goes
            nested = [nested]
        r = httpx.post(f"{url}/chat/completions", json={"model": nested, "messages": QUESTION})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "model"
    assert all(len(json.dumps(line)) < 2000 for line in log), [len(json.dumps(x)) for x in log]
    assert log[-1]["model"] == "<list>"


def test_an_upstream_refusal_on_a_pacore_model_is_400_with_its_reason() -> None:
    fake = FakeConfig(fail_rate=1.0, fail_rate_status=404)
    with pacore_server(fake) as (url, upstream), pytest.raises(openai.BadRequestError) as caught:
        client(url).chat.completions.create(model="pacore-low", messages=QUESTION)
    error: dict[str, Any] = caught.value.body  # type: ignore[assignment]
    assert error["code"] == "upstream_refused"
    assert "404" in error["message"] or "not" in error["message"], error
    assert upstream.stats.requests <= 4  # one round's requests, not retried as a 502


def test_passthrough_and_pacore_requests_share_the_concurrency_budget() -> None:
    import concurrent.futures

    fake = FakeConfig(ttft_s=0.3, supports_n=False)
    with pacore_server(fake, defaults=PacoreConfig(concurrency=4)) as (url, upstream):

        def one(i: int) -> str:
            model = "pacore-low" if i % 2 else "fake-model"
            answer = client(url).chat.completions.create(model=model, messages=QUESTION)
            return answer.choices[0].message.content or ""

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(one, range(12)))
        assert all(answers)
        assert upstream.stats.peak_concurrency <= 4, upstream.stats.peak_concurrency


def test_a_final_answer_cut_inside_its_reasoning_splits_alike_whole_and_streamed() -> None:
    """Cut by `max_tokens` inside `<think>`: a stream sends it all as reasoning; the
    whole answer sent `<think>reasoning...` as its content."""
    keep = {"pacore": {"truncated": "keep"}}
    with pacore_server() as (url, _):
        whole = client(url).chat.completions.create(
            model="pacore-low", messages=QUESTION, max_tokens=3, extra_body=keep
        )
        message = whole.choices[0].message
        reasoning = getattr(message, "reasoning_content", None) or ""
        content, streamed = "", ""
        chunks = client(url).chat.completions.create(
            model="pacore-low", messages=QUESTION, max_tokens=3, extra_body=keep, stream=True
        )
        for chunk in chunks:
            for choice in chunk.choices:
                content += choice.delta.content or ""
                streamed += getattr(choice.delta, "reasoning_content", None) or ""
    assert (message.content, content) == ("", "")
    assert reasoning
    assert "<think>" not in reasoning
    assert streamed.endswith(reasoning)  # after the rounds' progress lines
    assert whole.choices[0].finish_reason == "length"
