"""Upstream faults through `pacore serve`, seen by the openai SDK and in the log.

An upstream that sends its headers and then stalls is a 504 `timeout_error` (a whole
answer) or an error event of that type (a stream), for passthrough and PaCoRe models
alike. Every upstream fault ends in exactly one log line carrying the request id and
the error, and no traceback reaches the log or stderr.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from pacore.config import PacoreConfig
from tests.fake_server import FakeConfig
from tests.serve_helpers import pacore_server

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 6 * 7?"}]
TIMEOUT_S = 0.5
"""The upstream timeout of these servers: a stalled upstream costs each test this long."""


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=30)


def error_events(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `error` objects of a streamed answer, read as raw SSE."""
    events = []
    with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: {"):
                data = orjson.loads(line[len("data: ") :])
                if "error" in data:
                    events.append(data["error"])
    return events


@pytest.fixture
def quiet(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> Any:  # the check runs after the test's body
    caplog.set_level(logging.DEBUG)
    yield
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records), logged
    assert "Traceback" not in logged
    err = capfd.readouterr().err
    assert "Traceback" not in err, err


def one_line_per_request(log: list[dict[str, Any]], status: int) -> dict[str, Any]:
    assert len(log) == 1, log
    line = log[0]
    assert line["status"] == status
    assert line["id"].startswith("chatcmpl-")
    return line


@pytest.mark.usefixtures("quiet")
def test_passthrough_upstream_stalling_after_headers_is_504() -> None:
    log: list[dict[str, Any]] = []
    with pacore_server(FakeConfig(fail_script=["stall"]), log=log, timeout=TIMEOUT_S) as (
        url,
        upstream,
    ):
        with pytest.raises(openai.APIStatusError) as caught:
            client(url).chat.completions.create(model="fake-model", messages=QUESTION)
        assert upstream.stats.stalls == 1
    assert caught.value.status_code == 504
    error: dict[str, Any] = caught.value.body  # type: ignore[assignment]
    assert error["type"] == "timeout_error"
    assert "did not finish its answer" in error["message"]
    line = one_line_per_request(log, 504)
    assert line["error"] == error["message"]


@pytest.mark.usefixtures("quiet")
def test_passthrough_stream_stalling_after_headers_ends_with_a_timeout_event() -> None:
    log: list[dict[str, Any]] = []
    with pacore_server(FakeConfig(fail_script=["stall", "stall"]), log=log, timeout=TIMEOUT_S) as (
        url,
        upstream,
    ):
        body = {"model": "fake-model", "messages": QUESTION, "stream": True}
        events = error_events(url, body)
        assert [e["type"] for e in events] == ["timeout_error"]
        assert "did not finish its answer" in events[0]["message"]
        line = one_line_per_request(log, 504)
        assert line["error"] == events[0]["message"]
        with pytest.raises(openai.APIError) as caught:  # the SDK raises on the event
            list(client(url).chat.completions.create(**body))  # type: ignore[call-overload]
        assert "did not finish its answer" in caught.value.message
        assert upstream.stats.stalls == 2


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("stream", [False, True])
def test_pacore_round_stalling_after_headers_is_504(stream: bool) -> None:
    log: list[dict[str, Any]] = []
    fake = FakeConfig(fail_script=["stall"])
    defaults = PacoreConfig(on_failure="fail")
    with pacore_server(fake, defaults=defaults, log=log, retries=0, timeout=TIMEOUT_S) as (
        url,
        upstream,
    ):
        body = {"model": "pacore-low", "messages": QUESTION, "stream": stream}
        if stream:
            events = error_events(url, body)
            assert [e["type"] for e in events] == ["timeout_error"]
            message = events[0]["message"]
        else:
            with pytest.raises(openai.APIStatusError) as caught:
                client(url).chat.completions.create(**body)  # type: ignore[call-overload]
            assert caught.value.status_code == 504
            message = caught.value.message
        assert upstream.stats.stalls == 1
    assert "did not answer in time" in message
    line = one_line_per_request(log, 504)
    assert "did not answer in time" in line["error"]


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize(("script", "status"), [("drop", 502), (500, 502), ("hang", 504)])
@pytest.mark.parametrize("stream", [False, True])
def test_other_passthrough_faults_log_one_line_and_no_traceback(
    script: str | int, status: int, stream: bool
) -> None:
    log: list[dict[str, Any]] = []
    fake = FakeConfig(fail_script=[script], hang_s=30)
    with pacore_server(fake, log=log, timeout=TIMEOUT_S) as (url, _):
        r = httpx.post(
            f"{url}/chat/completions",
            json={"model": "fake-model", "messages": QUESTION, "stream": stream},
            timeout=30,
        )
    assert r.status_code == status
    assert r.json()["error"]["type"] == ("timeout_error" if status == 504 else "upstream_error")
    one_line_per_request(log, status)
