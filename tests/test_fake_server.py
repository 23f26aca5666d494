"""Tests of the fake OpenAI-compatible server, with a plain aiohttp client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fake_server import (
    FakeConfig,
    FakeServer,
    FakeStats,
    count_tokens,
    fixed_length_responder,
    split_chunks,
    truncate_tokens,
)

REPO = Path(__file__).resolve().parent.parent
MESSAGES = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "What is six times seven?"},
]
PROMPT_TOKENS = 3 + 5


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": MESSAGES, **extra}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def post(
    session: aiohttp.ClientSession, srv: FakeServer, body: Any
) -> tuple[int, dict[str, Any], Any]:
    async with session.post(f"{srv.url}/chat/completions", json=body) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def read_stream(
    session: aiohttp.ClientSession, srv: FakeServer, body: dict[str, Any]
) -> list[Any]:
    """Every SSE event of a streamed request: parsed JSON chunks, then the string "[DONE]"."""
    events: list[Any] = []
    async with session.post(f"{srv.url}/chat/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        raw = (await resp.read()).decode()
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: ")
        data = block[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


# ---------------------------------------------------------------------- helpers


def test_token_helpers() -> None:
    assert count_tokens("a  b\nc") == 3
    assert count_tokens("") == 0
    assert count_tokens(None) == 0
    assert truncate_tokens("one  two\nthree four", 3) == "one  two\nthree"
    assert truncate_tokens("one two", 5) == "one two"
    assert truncate_tokens("one two", 0) == ""
    text = "  alpha beta\n\ngamma delta epsilon "
    for k in (1, 2, 3, 10):
        pieces = split_chunks(text, k)
        assert "".join(pieces) == text
        assert all(count_tokens(p) <= k for p in pieces)
    assert count_tokens(str(fixed_length_responder(50)([], 0, {}))) == 50
    assert count_tokens(str(fixed_length_responder(3)([], 0, {}))) == 3


def test_bad_script_entry_rejected() -> None:
    with pytest.raises(ValueError, match="bad fail_script entry 'explode'"):
        FakeConfig(fail_script=["explode"])


# -------------------------------------------------------------------- non-stream


async def test_non_stream_shape_and_usage(session: aiohttp.ClientSession) -> None:
    async with FakeServer(FakeConfig()) as srv:
        assert srv.url == f"http://127.0.0.1:{srv.port}/v1"
        status, _, data = await post(session, srv, chat_body())
    assert status == 200
    assert data["object"] == "chat.completion"
    assert data["id"]
    assert isinstance(data["created"], int)
    assert data["model"] == "fake-model"
    (choice,) = data["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    text = choice["message"]["content"]
    assert "\\boxed{42}" in text
    assert "<think>" in text
    assert "reasoning_content" not in choice["message"]
    assert data["usage"] == {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": count_tokens(text),
        "total_tokens": PROMPT_TOKENS + count_tokens(text),
    }
    assert srv.stats.requests == 1
    assert srv.stats.bodies == [chat_body()]
    assert srv.stats.completion_tokens == count_tokens(text)
    assert srv.stats.statuses[200] == 1


async def test_n_choices_aggregate_usage(session: aiohttp.ClientSession) -> None:
    async with FakeServer() as srv:
        _, _, data = await post(session, srv, chat_body(n=3))
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    texts = [c["message"]["content"] for c in data["choices"]]
    assert len(set(texts)) == 3  # the default responder mentions the choice index
    completion = sum(count_tokens(t) for t in texts)
    assert data["usage"]["prompt_tokens"] == PROMPT_TOKENS  # counted once
    assert data["usage"]["completion_tokens"] == completion
    assert data["usage"]["total_tokens"] == PROMPT_TOKENS + completion
    assert srv.stats.choices == 3


async def test_n_ignored_or_rejected(session: aiohttp.ClientSession) -> None:
    async with FakeServer(supports_n=False) as srv:
        status, _, data = await post(session, srv, chat_body(n=4))
        assert status == 200
        assert len(data["choices"]) == 1
    async with FakeServer(reject_n=True) as srv:
        status, _, data = await post(session, srv, chat_body(n=2))
        assert status == 400
        assert data["error"]["message"] == "n > 1 is not supported"
        status, _, data = await post(session, srv, chat_body(n=1))
        assert status == 200


async def test_responder_tuple_reasoning_and_max_tokens(session: aiohttp.ClientSession) -> None:
    def responder(messages: list[dict[str, Any]], index: int, body: dict[str, Any]) -> Any:
        return ("final answer is 7", None, "let me think hard")

    async with FakeServer(responder=responder, report_reasoning_tokens=True) as srv:
        _, _, data = await post(session, srv, chat_body())
        msg = data["choices"][0]["message"]
        assert msg["content"] == "final answer is 7"
        assert msg["reasoning_content"] == "let me think hard"
        assert data["choices"][0]["finish_reason"] == "stop"
        assert data["usage"]["completion_tokens"] == 8
        assert data["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}

        _, _, data = await post(session, srv, chat_body(max_tokens=6))
        msg = data["choices"][0]["message"]
        assert msg["reasoning_content"] == "let me think hard"
        assert msg["content"] == "final answer"
        assert data["choices"][0]["finish_reason"] == "length"
        assert data["usage"]["completion_tokens"] == 6

        srv.config.responder = lambda m, i, b: ("cut short", "length")
        _, _, data = await post(session, srv, chat_body())
        assert data["choices"][0]["finish_reason"] == "length"
        assert "reasoning_content" not in data["choices"][0]["message"]


async def test_bad_requests(session: aiohttp.ClientSession) -> None:
    async with FakeServer() as srv:
        async with session.post(f"{srv.url}/chat/completions", data=b"{not json") as resp:
            assert resp.status == 400
            assert "error" in await resp.json()
        bodies: list[Any] = [{"model": "x"}, {"messages": []}, [1, 2], chat_body(n=0)]
        for body in bodies:
            status, _, data = await post(session, srv, body)
            assert status == 400, body
            assert data["error"]["code"] == 400


async def test_models_endpoint_and_base_path(session: aiohttp.ClientSession) -> None:
    async with FakeServer(model_name="m1", base_path="/api/v1") as srv:
        assert srv.url.endswith("/api/v1")
        async with session.get(f"{srv.url}/models") as resp:
            data = await resp.json()
        assert data == {
            "object": "list",
            "data": [{"id": "m1", "object": "model", "owned_by": "fake", "created": 0}],
        }
        _, _, chat = await post(session, srv, chat_body())
        assert chat["model"] == "m1"
        assert srv.stats.model_requests == 1


# ------------------------------------------------------------------------ stream


async def test_stream_reassembles_with_usage(session: aiohttp.ClientSession) -> None:
    async with FakeServer(chunk_tokens=2) as srv:
        _, _, plain = await post(session, srv, chat_body(n=2))
        events = await read_stream(
            session, srv, chat_body(n=2, stream=True, stream_options={"include_usage": True})
        )
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    texts = ["", ""]
    finish: dict[int, str] = {}
    roles: dict[int, str] = {}
    for c in chunks[:-1]:
        (choice,) = c["choices"]
        i = choice["index"]
        delta = choice["delta"]
        if "role" in delta:
            assert i not in roles
            assert texts[i] == ""
            roles[i] = delta["role"]
        texts[i] += delta.get("content") or ""
        assert count_tokens(delta.get("content")) <= 2
        if choice["finish_reason"]:
            finish[i] = choice["finish_reason"]
    assert roles == {0: "assistant", 1: "assistant"}
    assert finish == {0: "stop", 1: "stop"}
    assert texts == [c["message"]["content"] for c in plain["choices"]]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == plain["usage"]


async def test_stream_reasoning_and_no_usage_by_default(session: aiohttp.ClientSession) -> None:
    def responder(messages: list[dict[str, Any]], index: int, body: dict[str, Any]) -> Any:
        return ("it is 42", "stop", "six sevens")

    async with FakeServer(responder=responder) as srv:
        events = await read_stream(session, srv, chat_body(stream=True))
    assert events[-1] == "[DONE]"
    reasoning = content = ""
    for c in events[:-1]:
        assert "usage" not in c
        (choice,) = c["choices"]
        reasoning += choice["delta"].get("reasoning_content") or ""
        content += choice["delta"].get("content") or ""
    assert (reasoning, content) == ("six sevens", "it is 42")


# ---------------------------------------------------------------------- failures


async def test_fail_script_statuses_and_retry_after(session: aiohttp.ClientSession) -> None:
    config = FakeConfig(fail_script=[429, "ok", 500, 503], retry_after=1.5)
    async with FakeServer(config) as srv:
        results = [await post(session, srv, chat_body()) for _ in range(5)]
        assert [r[0] for r in results] == [429, 200, 500, 503, 200]
        assert results[0][1]["Retry-After"] == "1.5"
        assert results[3][1]["Retry-After"] == "1.5"
        assert "Retry-After" not in results[2][1]
        assert results[2][2]["error"]["code"] == 500
        assert srv.stats.statuses == {429: 1, 500: 1, 503: 1, 200: 2}
        assert not srv.script
        srv.push_script(502)
        status, _, _ = await post(session, srv, chat_body())
        assert status == 502
    assert config.fail_script == [429, "ok", 500, 503]  # the config is not consumed


async def test_loading_for_the_first_requests(session: aiohttp.ClientSession) -> None:
    """llama.cpp while it loads: 503 "Loading model" on every route, no Retry-After."""
    async with FakeServer(loading_requests=3, retry_after=9.0) as srv:
        async with session.get(f"{srv.url}/models") as resp:
            assert resp.status == 503
            assert "Retry-After" not in resp.headers
            error = (await resp.json())["error"]
        status, headers, data = await post(session, srv, chat_body())
        assert status == 503
        assert "Retry-After" not in headers
        assert data["error"]["message"] == "Loading model"
        assert (await post(session, srv, chat_body()))[0] == 503
        assert (await post(session, srv, chat_body()))[0] == 200
        async with session.get(f"{srv.url}/models") as resp:
            assert resp.status == 200
        assert srv.stats.loading == 3
        assert (srv.stats.requests, srv.stats.model_requests) == (3, 2)
    assert error == {
        "message": "Loading model",
        "type": "unavailable_error",
        "param": None,
        "code": 503,
    }


async def test_loading_for_a_while_of_its_clock(session: aiohttp.ClientSession) -> None:
    now = [100.0]
    async with FakeServer(loading_s=30.0, clock=lambda: now[0], fail_script=[500]) as srv:
        assert (await post(session, srv, chat_body()))[0] == 503
        now[0] += 29.0
        assert (await post(session, srv, chat_body()))[0] == 503
        now[0] += 1.0
        assert (await post(session, srv, chat_body()))[0] == 500  # the script waited its turn
        assert (await post(session, srv, chat_body()))[0] == 200
        assert srv.stats.loading == 2


async def test_max_n_answers_llama_cpps_refusal(session: aiohttp.ClientSession) -> None:
    async with FakeServer(max_n=4) as srv:
        status, _, data = await post(session, srv, chat_body(n=6))
        assert status == 400
        assert data["error"]["message"] == "Field 'n': Value must be between 1 <= value <= 4"
        assert data["error"]["type"] == "invalid_request_error"
        status, _, data = await post(session, srv, chat_body(n=4))
        assert status == 200
        assert len(data["choices"]) == 4
        srv.config.max_n_named = False
        _, _, data = await post(session, srv, chat_body(n=5))
        assert data["error"]["message"] == "Field 'n': Value is out of range"


async def test_drop_and_hang(session: aiohttp.ClientSession) -> None:
    async with FakeServer(fail_script=["drop", "hang", "drop_mid"], hang_s=30.0) as srv:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await post(session, srv, chat_body())
        with pytest.raises(TimeoutError):
            async with session.post(
                f"{srv.url}/chat/completions",
                json=chat_body(),
                timeout=aiohttp.ClientTimeout(total=0.2),
            ) as resp:
                await resp.read()
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_stream(session, srv, chat_body(stream=True))
        status, _, _ = await post(session, srv, chat_body())
        assert status == 200
        assert srv.stats.drops == 2
        assert srv.stats.hangs == 1


async def test_streams_that_end_without_finishing(session: aiohttp.ClientSession) -> None:
    """`end_mid` ends the stream cleanly halfway; `no_finish` completes it with null reasons."""
    body = chat_body(n=2, stream=True, stream_options={"include_usage": True})
    async with FakeServer(fail_script=["end_mid", "no_finish", "end_mid"]) as srv:
        cut = await read_stream(session, srv, body)
        unfinished = await read_stream(session, srv, body)
        _, _, plain = await post(session, srv, chat_body())  # stream only: served normally
        assert srv.stats.drops == 0
    assert "[DONE]" not in cut
    assert all("usage" not in c or c["usage"] is None for c in cut)
    assert not any(ch["finish_reason"] for c in cut for ch in c["choices"])
    assert unfinished[-1] == "[DONE]"
    assert unfinished[-2]["usage"]["completion_tokens"] > 0
    assert not any(ch["finish_reason"] for c in unfinished[:-1] for ch in c["choices"])
    assert plain["choices"][0]["finish_reason"] == "stop"


async def test_hang_does_not_delay_shutdown(session: aiohttp.ClientSession) -> None:
    srv = await FakeServer(fail_script=["hang"], hang_s=60.0).start()
    pending = asyncio.ensure_future(post(session, srv, chat_body()))
    while srv.stats.hangs == 0:  # noqa: ASYNC110 - the server offers no event to wait on
        await asyncio.sleep(0.01)
    await srv.stop()  # would take 60 s if the hang were not interrupted
    with pytest.raises(aiohttp.ClientError):
        await pending


async def test_fail_rate_is_seeded(session: aiohttp.ClientSession) -> None:
    async def statuses(seed: int) -> list[int]:
        async with FakeServer(fail_rate=0.5, fail_seed=seed) as srv:
            return [(await post(session, srv, chat_body()))[0] for _ in range(12)]

    first = await statuses(7)
    assert set(first) == {200, 500}
    assert await statuses(7) == first


async def test_context_limit(session: aiohttp.ClientSession) -> None:
    async with FakeServer(context_limit=PROMPT_TOKENS - 1) as srv:
        status, _, data = await post(session, srv, chat_body())
    assert status == 400
    err = data["error"]
    assert err["type"] == "BadRequestError"
    assert err["code"] == 400
    assert err["message"].startswith(
        f"This model's maximum context length is {PROMPT_TOKENS - 1} tokens. "
        f"However, you requested {PROMPT_TOKENS} tokens"
    )

    async with FakeServer(context_limit=PROMPT_TOKENS + 3) as srv:
        status, _, data = await post(session, srv, chat_body())
        assert status == 200  # fits, but the output is cut to the room left
        assert data["usage"]["completion_tokens"] == 3
        assert data["choices"][0]["finish_reason"] == "length"
        srv.config.context_counts_max_tokens = True
        status, _, _ = await post(session, srv, chat_body(max_tokens=10))
        assert status == 400


# ------------------------------------------------------------------------- stats


async def test_connection_counting() -> None:
    async with FakeServer() as srv:
        async with aiohttp.ClientSession() as s:
            for _ in range(10):
                assert (await post(s, srv, chat_body()))[0] == 200
        assert srv.stats.connections == 1
        assert srv.stats.requests == 10

        srv.stats.reset()
        for _ in range(10):
            async with aiohttp.ClientSession() as s:
                await post(s, srv, chat_body())
        assert srv.stats.connections == 10

        srv.stats.reset()
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as s:
            for _ in range(3):
                await post(s, srv, chat_body())
        assert srv.stats.connections == 3


async def test_peak_concurrency_and_record_bodies(session: aiohttp.ClientSession) -> None:
    async with FakeServer(ttft_s=0.05, record_bodies=False) as srv:
        await asyncio.gather(*(post(session, srv, chat_body()) for _ in range(5)))
        assert srv.stats.peak_concurrency == 5
        assert srv.stats.in_flight == 0
        assert srv.stats.bodies == []
        assert srv.stats.requests == 5


def test_two_servers_are_independent() -> None:
    a, b = FakeServer(), FakeServer(supports_n=False)
    assert a.stats is not b.stats
    assert isinstance(a.stats, FakeStats)
    assert a.config.supports_n
    assert not b.config.supports_n


# ----------------------------------------------------------------------- running


def test_run_in_thread_from_sync_code() -> None:
    from tests.fake_server import run_in_thread

    with run_in_thread(FakeConfig(supports_n=False)) as srv:
        request = urllib.request.Request(
            f"{srv.url}/chat/completions",
            data=json.dumps(chat_body(n=2)).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            data = json.load(resp)
        assert len(data["choices"]) == 1
        assert srv.stats.requests == 1
        url = srv.url
    with pytest.raises(urllib.error.URLError):  # stopped: the port is closed
        urllib.request.urlopen(f"{url}/models", timeout=1)


def test_cli_prints_url_and_writes_stats(tmp_path: Path) -> None:
    stats_file = tmp_path / "stats.json"
    command = [sys.executable, "-m", "tests.fake_server", "--port", "0", "--tokens", "7"]
    command += ["--no-n", "--stats-file", str(stats_file)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            assert url.endswith("/v1")
            request = urllib.request.Request(
                f"{url}/chat/completions",
                data=json.dumps(chat_body(n=3)).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=5) as resp:
                data = json.load(resp)
            assert len(data["choices"]) == 1
            assert data["usage"]["completion_tokens"] == 7
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    stats = json.loads(stats_file.read_text())
    assert stats["requests"] == 1
    assert stats["connections"] == 1
    assert stats["peak_concurrency"] == 1
    assert stats["completion_tokens"] == 7
