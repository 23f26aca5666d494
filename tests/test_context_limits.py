"""Context windows: an input that can never fit, and trajectories the window cut short."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from pacore.backends.openai_compat import OpenAIBackend
from pacore.backends.openai_compat.readiness import probe_models
from pacore.cli import main
from pacore.config import PacoreConfig
from pacore.engine import Engine
from tests.conftest import FakeSleep, serve_routes
from tests.fake_server import FakeConfig, FakeServer, fixed_length_responder, run_in_thread

LONG = "word " * 60  # 60 prompt tokens for the fake tokenizer


def backend(url: str) -> OpenAIBackend:
    """A backend whose retries never really wait."""
    return OpenAIBackend(url, model="fake-model", sleep=FakeSleep())


async def test_an_input_longer_than_the_window_fails_as_input_naming_both_sizes() -> None:
    async with FakeServer(FakeConfig(context_limit=50)) as srv, backend(srv.url) as be:
        result = await Engine(be, PacoreConfig(widths=(2,))).solve(LONG)
        assert srv.stats.requests == 1  # refused once: neither retried nor re-sampled
    assert result.status == "failed"
    assert result.failure == "input"
    assert result.error is not None
    assert "does not fit the model's context window" in result.error
    assert "60 tokens needed" in result.error
    assert "a context window of 50" in result.error
    (t,) = result.rounds[0].trajectories[:1]
    assert t.input_too_long
    assert not t.retryable


async def test_a_synthesis_prompt_over_the_window_is_the_methods_failure_not_the_inputs() -> None:
    """The question fits; the question and its references do not. Other references (or
    shorter ones) may: the failure is `model` (rerun by --retry-failed), never `input`
    ("can never fit")."""

    def long_conclusions(messages: object, index: int, body: object) -> str:
        return "word " * 50 + "so \\boxed{42}"  # no reasoning: all of it is passed on

    config = FakeConfig(context_limit=120, responder=long_conclusions)
    async with FakeServer(config) as srv, backend(srv.url) as be:
        result = await Engine(be, PacoreConfig(widths=(2,))).solve("What is 6 * 7?")
    assert result.status == "failed"
    assert (result.failure, len(result.rounds)) == ("model", 2)
    assert result.error is not None
    assert "round 2: the synthesis prompt (the question and 2 references)" in result.error
    assert "lower the widths or --max-tokens" in result.error


async def test_a_trajectory_the_window_cut_short_names_the_window_not_max_tokens() -> None:
    # llama.cpp: a prompt that fits but leaves too little room stops by `length`.
    config = FakeConfig(
        context_limit=70, responder=fixed_length_responder(40), usage_style="llama.cpp"
    )
    async with FakeServer(config) as srv, backend(srv.url) as be:
        engine = Engine(be, PacoreConfig(widths=(2,), max_tokens=30))
        result = await engine.solve(LONG)  # 60 + 30 > 70: each stops at 10 tokens
    assert result.failure == "model"
    trajectories = result.rounds[0].trajectories
    assert all(t.cut_by == "context" for t in trajectories)
    assert result.error is not None
    assert "context window was full" in result.error
    assert "60-token prompt + 10 generated = 70 tokens" in result.error
    assert "raise max_tokens" not in result.error


async def test_a_trajectory_cut_at_max_tokens_says_raise_max_tokens() -> None:
    config = FakeConfig(responder=fixed_length_responder(40))
    async with FakeServer(config) as srv, backend(srv.url) as be:
        result = await Engine(be, PacoreConfig(widths=(2,), max_tokens=5)).solve("Q?")
    assert all(t.cut_by == "max_tokens" for t in result.rounds[0].trajectories)
    assert result.error is not None
    assert "raise max_tokens" in result.error


def test_retry_failed_does_not_resend_an_input_that_cannot_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"id": "short", "question": "Q?"}) + "\n"
        + json.dumps({"id": "long", "question": LONG}) + "\n"
    )  # fmt: skip
    out = tmp_path / "out.jsonl"
    # One problem at a time: "short" meets the one 500 (an infrastructure failure).
    with run_in_thread(FakeConfig(context_limit=50, fail_script=[500])) as srv:
        args = ["run", "--input", str(src), "--output", str(out), "--backend", srv.url]
        args += ["--retries", "0", "--on-failure", "fail", "--concurrency", "1", "--quiet"]
        args += ["--widths", "1"]
        assert main(args) == 1
        first = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
        assert (first["short"]["failure"], first["long"]["failure"]) == ("infrastructure", "input")
        before = srv.stats.requests
        assert main([*args, "--retry-failed"]) == 1  # "short" now succeeds; "long" is kept
        resent = srv.stats.requests - before
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["long", "short"]
    assert resent == 2  # "short" only: its round and its synthesis
    status = {r["id"]: r["status"] for r in records}
    assert status["long"] == "failed"
    assert status["short"] != "failed"
    err = capsys.readouterr().err
    assert "resuming: 1 of 2" in err
    assert "1 failed in earlier runs; 1 of them cannot fit the model's context window" in err


def test_eval_grades_an_input_that_cannot_fit_as_wrong_and_counts_it_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps({"id": "long", "question": LONG, "answer": "42"}) + "\n"
        + json.dumps({"id": "short", "question": "Q?", "answer": "42"}) + "\n"
    )  # fmt: skip
    out = tmp_path / "out"
    answer = fixed_length_responder(3)
    with run_in_thread(FakeConfig(context_limit=50, responder=answer)) as srv:
        argv = ["eval", "--dataset", str(data), "--out", str(out), "--backend", srv.url]
        argv += ["--method", "single", "--runs", "1", "--pool", "1", "--quiet", "--no-plots"]
        assert main(argv) == 0
        before = srv.stats.requests
        assert main(argv) == 0  # a rerun resends nothing: the input cannot fit
        assert srv.stats.requests == before
    records = {
        r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())
    }
    assert records["long"]["status"] == "input_too_long"
    assert records["long"]["correct"] is False
    assert "context window" in records["long"]["error"]
    summary = json.loads((out / "summary.json").read_text())["methods"]["single"]
    assert summary["statuses"]["input_too_long"] == 1
    assert summary["failures"] == 0
    capsys.readouterr()


async def test_the_window_a_server_lists_is_learnt_and_names_a_cut_without_a_cap() -> None:
    """vLLM lists `max_model_len`: with no `max_tokens`, the window still tells the cause,
    and a whole-request usage of choices the window cut is trusted."""
    config = FakeConfig(context_limit=70, responder=fixed_length_responder(40))
    async with FakeServer(config) as srv, backend(srv.url) as be:
        await be.start()
        assert be.pool.endpoints[0].context_window == 70
        result = await Engine(be, PacoreConfig(widths=(2,))).solve(LONG)
        assert srv.stats.requests == 1  # one n=2 request: its usage was trusted
    trajectories = result.rounds[0].trajectories
    assert all(t.cut_by == "context" for t in trajectories)
    assert result.error is not None
    assert "context window was full" in result.error


@pytest.mark.parametrize(
    ("listed", "window"),
    [
        ({"id": "m", "max_model_len": 32768}, 32768),  # vLLM
        ({"id": "m", "meta": {"n_ctx": 4096, "n_ctx_train": 8192}}, 4096),  # llama.cpp
        ({"id": "m", "context_length": 8192}, 8192),
        ({"id": "m"}, None),
    ],
)
async def test_the_window_is_read_from_each_servers_model_list(
    listed: dict[str, object], window: int | None
) -> None:
    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [listed]})

    async with (
        serve_routes({("GET", "/v1/models"): models}) as url,
        aiohttp.ClientSession() as session,
    ):
        probe = await probe_models(session, url, aiohttp.ClientTimeout(total=5))
    assert probe.models == ("m",)
    assert probe.context_window == window


async def test_a_request_too_large_for_the_server_fails_as_its_input() -> None:
    """An HTTP 413 (a body larger than the server or its proxy takes) was an
    infrastructure failure, "rerun to retry", though the same input is refused every
    time. It is the input's failure: sent once, neither retried nor re-sampled."""
    config = FakeConfig(fail_script=[413] * 5)
    async with FakeServer(config) as srv, backend(srv.url) as be:
        result = await Engine(be, PacoreConfig(widths=(2,))).solve("Q?")
        assert srv.stats.requests == 1
    assert (result.status, result.failure) == ("failed", "input")
    assert result.error is not None
    assert "the request is larger than the server accepts: HTTP 413" in result.error
