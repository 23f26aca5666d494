"""Upstream faults through `pacore serve`, seen by the openai SDK and in the log.

An upstream that sends its headers and then stalls is a 504 `timeout_error` (a whole
answer) or an error event of that type (a stream), for passthrough and PaCoRe models
alike. Every upstream fault ends in exactly one log line carrying the request id and
the error, and no traceback reaches the log or stderr.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from pacore.config import PacoreConfig
from tests.fake_server import FakeConfig, fixed_length_responder
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


# ---------------------------------------------- what a request spent, however it ends


def _metric(url: str, name: str) -> float:
    """One sample of the app's /metrics page (0 when absent)."""
    page = httpx.get(url.rsplit("/v1", 1)[0] + "/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines() if line.startswith(name))


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_request_logs_and_counts_what_the_upstream_generated(stream: bool) -> None:
    """Round 1 is answered (4 x 20 tokens), the synthesis fails three times. A streamed
    request logged no tokens and counted nothing in /metrics (the failed choice's result
    was never kept); both now say the 80 tokens the upstream generated."""
    log: list[dict[str, Any]] = []
    fake = FakeConfig(responder=fixed_length_responder(20), fail_script=["ok", 500, 500, 500])
    with pacore_server(fake, log=log, defaults=PacoreConfig(max_tokens=100), retries=0) as (
        url,
        upstream,
    ):
        body = {"model": "pacore-low", "messages": QUESTION, "stream": stream}
        if stream:
            assert error_events(url, body)
        else:
            assert httpx.post(f"{url}/chat/completions", json=body, timeout=30).status_code == 502
        generated = upstream.stats.completion_tokens
        line = one_line_per_request(log, 502)
        assert generated == 80
        assert line["completion_tokens"] == generated
        assert _metric(url, 'pacore_tokens_total{kind="completion"}') == generated
        assert _metric(url, 'pacore_trajectories_total{status="error"}') == 3


def _leave_early(url: str, body: dict[str, Any]) -> None:
    """Ask, and give up after two seconds (a client that leaves while the synthesis
    hangs; round 1 is answered at once, well within them on a loaded machine)."""
    if body["stream"]:
        with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=2.0) as r:
            for _ in r.iter_lines():
                pass
    else:
        httpx.post(f"{url}/chat/completions", json=body, timeout=2.0)


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_is_logged_with_what_was_spent(stream: bool) -> None:
    """The client leaves while the synthesis hangs: round 1's 80 tokens were spent, and
    the 499 line said nothing of them."""
    log: list[dict[str, Any]] = []
    fake = FakeConfig(responder=fixed_length_responder(20), fail_script=["ok", "hang"], hang_s=8)
    with pacore_server(fake, log=log, defaults=PacoreConfig(max_tokens=100)) as (url, _):
        body = {"model": "pacore-low", "messages": QUESTION, "stream": stream}
        with pytest.raises(httpx.TimeoutException):
            _leave_early(url, body)
        for _ in range(400):  # the app sees the client go
            if log:
                break
            time.sleep(0.05)
        line = one_line_per_request(log, 499)
        assert line["completion_tokens"] == 80
        assert _metric(url, 'pacore_tokens_total{kind="completion"}') == 80
