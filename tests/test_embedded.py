"""The embedded llama.cpp backend, mostly against the real default model (SmolLM2-135M).

The model loads once for the module (~1 s); every sample is a few tokens long.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pacore.backends.base import Backend, RequestCounter
from pacore.backends.embedded import (
    EmbeddedBackend,
    _StreamReader,
    default_model_path,
    request_body,
)
from pacore.backends.openai_compat.wire import stream_error as error_from_response
from pacore.errors import ConfigError, ContextLengthError, RequestRejected, ServerError
from pacore.types import SamplingParams

pytestmark = pytest.mark.embedded

HELLO = [{"role": "user", "content": "Say hello to Ada in one sentence."}]
CTX_PER_SLOT = 512


@pytest.fixture(scope="module")
def model_path() -> str:
    pytest.importorskip("xllamacpp")
    try:
        return default_model_path()
    except ConfigError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def backend(model_path: str) -> Iterator[EmbeddedBackend]:
    # Loop-agnostic on purpose: the model loads on a worker thread in the first test's loop.
    b = EmbeddedBackend(model_path, slots=2, ctx_per_slot=CTX_PER_SLOT, threads=2)
    yield b
    asyncio.run(b.aclose())


async def test_smoke_two_samples(backend: EmbeddedBackend) -> None:
    assert isinstance(backend, Backend)
    counter = RequestCounter()
    progress: list[int] = []
    out = await backend.complete(
        HELLO, 2, SamplingParams(max_tokens=16), counter=counter, on_tokens=progress.append
    )
    assert len(out) == 2
    for c in out:
        assert c.error is None, c.error
        assert c.text.strip()
        assert c.finish_reason in {"stop", "length"}
        assert 0 < c.usage.completion_tokens <= 16
        assert c.usage.prompt_tokens > 0
        assert not c.usage.estimated
        assert c.latency_s > 0
        assert c.endpoint == "embedded:SmolLM2-135M-Instruct.Q4_1"
    assert counter.requests == 1
    assert sum(progress) == sum(c.usage.completion_tokens for c in out)
    assert backend.name == "SmolLM2-135M-Instruct.Q4_1"


async def test_start_loads_the_model_and_names_it(backend: EmbeddedBackend) -> None:
    """The embedded backend is a `Backend`: `start()` loads the model, `name` is the GGUF stem."""
    assert isinstance(backend, Backend)
    await backend.start()
    assert backend.name == "SmolLM2-135M-Instruct.Q4_1"
    assert backend.endpoint == f"embedded:{backend.name}"


async def test_event_loop_keeps_running_during_a_request(backend: EmbeddedBackend) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    params = SamplingParams(max_tokens=32, extra_body={"ignore_eos": True})
    (out,) = await backend.complete(HELLO, 1, params)
    ticker.cancel()
    assert out.usage.completion_tokens == 32
    assert ticks >= 3  # a blocked loop (GIL held, or a call on the loop thread) gives 0


async def test_seed_gives_distinct_reproducible_samples(backend: EmbeddedBackend) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=12, seed=1234)
    first = [c.text for c in await backend.complete(HELLO, 3, params)]
    again = [c.text for c in await backend.complete(HELLO, 3, params)]
    assert first == again
    assert len(set(first)) > 1


async def test_more_samples_than_slots_split_into_requests(backend: EmbeddedBackend) -> None:
    counter = RequestCounter()
    out = await backend.complete(HELLO, 3, SamplingParams(max_tokens=4), counter=counter)
    assert len(out) == 3
    assert all(c.error is None and 0 < c.usage.completion_tokens <= 4 for c in out)
    assert counter.requests == 2


async def test_context_overflow_is_a_failed_completion(backend: EmbeddedBackend) -> None:
    long_prompt = [{"role": "user", "content": "lighthouse " * (2 * CTX_PER_SLOT)}]
    out = await backend.complete(long_prompt, 2, SamplingParams(max_tokens=8))
    assert len(out) == 2
    for c in out:
        assert c.error_type == "ContextLengthError"
        assert "context" in (c.error or "")
        assert c.text == ""


async def test_malformed_request_is_rejected_not_raised(backend: EmbeddedBackend) -> None:
    bad_field = SamplingParams(extra_body={"max_tokens": "many"})
    (out,) = await backend.complete(HELLO, 1, bad_field)
    assert out.error_type == "RequestRejected"
    (out,) = await backend.complete([{"role": "user"}], 1, SamplingParams(max_tokens=4))
    assert out.error_type == "RequestRejected"


async def test_cancel_stops_the_request_and_backend_still_works(
    backend: EmbeddedBackend,
) -> None:
    endless = SamplingParams(max_tokens=256, extra_body={"ignore_eos": True})
    task = asyncio.create_task(backend.complete(HELLO, 2, endless))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (out,) = await backend.complete(HELLO, 1, SamplingParams(max_tokens=4))
    assert out.error is None


async def test_closed_backend_returns_failed_completions(model_path: str) -> None:
    b = EmbeddedBackend(model_path, slots=1, ctx_per_slot=256)
    await b.aclose()  # never loaded: nothing to free but the threads
    out = await b.complete(HELLO, 2, SamplingParams(max_tokens=4))
    assert [c.error_type for c in out] == ["BackendError", "BackendError"]
    assert not any(c.retryable for c in out)  # sampling again cannot help


def test_bad_model_paths_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        EmbeddedBackend(tmp_path / "missing.gguf")
    with pytest.raises(ConfigError, match="not a file"):
        EmbeddedBackend(tmp_path)
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ConfigError, match="not a GGUF"):
        EmbeddedBackend(not_gguf)


def test_bad_sizes_are_config_errors(model_path: str) -> None:
    for kwargs in ({"slots": 0}, {"ctx_per_slot": 8}, {"threads": 0}):
        with pytest.raises(ConfigError):
            EmbeddedBackend(model_path, **kwargs)


def test_truncated_gguf_fails_to_load_with_config_error(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 60)
    b = EmbeddedBackend(broken, slots=1, ctx_per_slot=256)

    async def run() -> None:
        try:
            with pytest.raises(ConfigError, match="could not load"):
                await b.complete(HELLO, 1, SamplingParams(max_tokens=4))
        finally:
            await b.aclose()

    asyncio.run(run())


# -- the stream reader and request body, without the model ---------------------


def _chunk(index: int | None = None, finish: str | None = None, **delta: str) -> dict[str, Any]:
    if index is None:
        return {"choices": []}
    return {"choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def test_stream_reader_assigns_usage_to_the_choice_that_just_finished() -> None:
    progress: list[int] = []
    reader = _StreamReader(2, progress.append, [threading.Event()])
    chunks = [
        _chunk(0, role="assistant"),
        _chunk(1, reasoning_content="think"),
        _chunk(0, content="A"),
        _chunk(1, content="B"),
        _chunk(1, finish="stop"),
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 5}},
        _chunk(0, content="AA"),
        _chunk(0, finish="length"),
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}},
    ]
    assert not any(reader(c) for c in chunks)
    first, second = reader.completions(0.0, "e")
    assert (first.text, first.reasoning, first.finish_reason) == ("AAA", None, "length")
    assert (first.usage.prompt_tokens, first.usage.completion_tokens) == (7, 3)
    assert (second.text, second.reasoning, second.finish_reason) == ("B", "think", "stop")
    assert second.usage.completion_tokens == 5
    assert sum(progress) == 8


def test_stream_reader_failures() -> None:
    reader = _StreamReader(2, None, [threading.Event()])
    reader(_chunk(0, content="x"))
    reader(_chunk(0, finish="stop"))  # its usage never comes: counted from the stream
    assert reader("garbage") is True
    done, broken = reader.completions(0.0, "e")
    assert done.text == "x"
    assert done.usage.estimated
    assert done.usage.completion_tokens == 1
    assert broken.error_type == "MalformedReply"
    assert broken.retryable  # an unreadable reply may not happen again

    stop = threading.Event()
    reader = _StreamReader(1, None, [stop])
    stop.set()
    assert reader(_chunk(0, content="x")) is True
    assert reader.completions(0.0, "e")[0].error_type == "BackendError"

    reader = _StreamReader(2, None, [threading.Event()])
    assert reader({"error": {"code": 400, "type": "exceed_context_size_error"}}) is True
    assert [c.error_type for c in reader.completions(0.0, "e")] == ["ContextLengthError"] * 2


def test_error_mapping() -> None:
    overflow = {"code": 400, "message": "too long", "type": "exceed_context_size_error"}
    assert isinstance(error_from_response(overflow), ContextLengthError)
    rejected = error_from_response({"code": 400, "message": "bad", "type": "invalid_request"})
    assert type(rejected) is RequestRejected
    assert rejected.status == 400
    assert type(error_from_response({"code": 500, "message": "x"})) is ServerError
    assert error_from_response({"code": 500, "message": "x"}).retryable
    assert not rejected.retryable


def test_request_body_keeps_n_and_streaming() -> None:
    params = SamplingParams(
        temperature=0.5, max_tokens=9, extra_body={"top_k": 1, "n": 8, "stream": False}
    )
    body = request_body(HELLO, 3, params, seed=2**32 + 5)
    assert body["n"] == 3
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["max_tokens"], body["top_k"]) == (0.5, 9, 1)
    assert 0 <= body["seed"] < 2**32 - 1
    assert "max_tokens" not in request_body(HELLO, 1, SamplingParams(), seed=0)
