"""Servers that are still loading: `start()` waits for them, and a run outlasts a reload.

Every wait runs on `FakeTime`, whose sleep moves its clock: nothing here really waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from pacore.backends import make_backend
from pacore.backends.openai_compat import OpenAIBackend
from pacore.backends.openai_compat.readiness import Probe, ReadyWait
from pacore.config import BackendConfig
from pacore.errors import AuthenticationError, ConfigError, ConnectionFailed
from pacore.types import SamplingParams
from tests.conftest import dead_url, serve_routes
from tests.fake_server import FakeConfig, FakeServer

MSGS = [{"role": "user", "content": "What is six times seven?"}]
LOADING = "HTTP 503: Loading model"


class FakeTime:
    """A clock, and a sleep that moves it instead of waiting."""

    def __init__(self) -> None:
        """Start at 0 s, with no sleep yet."""
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        """The time now."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Record `seconds` and move the clock by them."""
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def backend(url: str | list[str], time: FakeTime, lines: list[str], **kw: object) -> OpenAIBackend:
    opts: dict[str, object] = {"sleep": time.sleep, "clock": time, "notify": lines.append}
    opts.update(kw)
    return OpenAIBackend(url, **opts)  # type: ignore[arg-type]


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@contextlib.asynccontextmanager
async def serve_models(handler: Callable[[web.Request], web.Response]) -> AsyncIterator[str]:
    """A server whose only route is `GET /v1/models`; yields its base URL."""

    async def models(request: web.Request) -> web.Response:
        return handler(request)

    async with serve_routes({("GET", "/v1/models"): models}) as url:
        yield url


# ------------------------------------------------------------------ start()


async def test_start_waits_while_the_model_loads(time: FakeTime) -> None:
    """llama.cpp's 503 "Loading model" is waited out, said once, then said to be over."""
    lines: list[str] = []
    async with FakeServer(FakeConfig(loading_requests=3)) as srv:
        async with backend(srv.url, time, lines) as be:
            await be.start()
            assert be.name == "fake-model"
        assert srv.stats.model_requests == 4
        assert srv.stats.loading == 3
    assert time.sleeps == [0.5, 1.0, 2.0]  # polls back off, doubling
    assert lines == [
        f"waiting for {srv.url} ({LOADING}); giving up after 300s",
        f"{srv.url} ready after 4s",
    ]


async def test_long_loads_show_progress_and_polls_stay_frequent(time: FakeTime) -> None:
    """A load of a minute (on the server's clock) gets a line about every 10 s."""
    lines: list[str] = []
    async with (
        FakeServer(FakeConfig(loading_s=60.0, clock=time)) as srv,
        backend(srv.url, time, lines) as be,
    ):
        await be.start()
    assert max(time.sleeps) == 5.0
    assert 60.0 <= time.now <= 65.0
    assert lines[0].endswith("; giving up after 300s")
    progress = [line for line in lines if line.startswith("still waiting")]
    assert 4 <= len(progress) <= 6
    assert lines[-1].startswith(f"{srv.url} ready after")
    assert len(lines) == 2 + len(progress)


async def test_a_server_that_never_loads_fails_after_the_limit(time: FakeTime) -> None:
    """The error is one line naming the URL, what it last said, and the limit."""
    async with (
        FakeServer(FakeConfig(loading_s=1e9, clock=time)) as srv,
        backend(srv.url, time, [], wait_ready=30) as be,
    ):
        with pytest.raises(ConnectionFailed) as caught:
            await be.start()
    assert (
        str(caught.value) == f"backend not ready: {srv.url} ({LOADING}); waited 30s (--wait-ready)"
    )
    assert sum(time.sleeps) == pytest.approx(30.0)  # the last wait stops at the limit


async def test_wait_ready_zero_fails_at_once(time: FakeTime) -> None:
    lines: list[str] = []
    async with (
        FakeServer(FakeConfig(loading_requests=1)) as srv,
        backend(srv.url, time, lines, wait_ready=0) as be,
    ):
        with pytest.raises(ConnectionFailed, match=f"backend not ready: .*{LOADING}\\)$"):
            await be.start()
    assert time.sleeps == []
    assert lines == []


async def test_an_unreachable_server_is_waited_for_then_reported(time: FakeTime) -> None:
    url = dead_url()
    lines: list[str] = []
    async with backend(url, time, lines, wait_ready=5) as be:
        with pytest.raises(ConnectionFailed, match=f"^cannot reach backend {url} .*; waited 5s"):
            await be.start()
    assert time.sleeps == [0.5, 1.0, 2.0, 1.5]
    assert len(lines) == 1
    assert lines[0].startswith(f"waiting for {url} (")


async def test_a_server_that_refuses_connections_until_it_is_up(time: FakeTime) -> None:
    """vLLM refuses connections while it loads: with `--wait-ready`, the wait lasts until
    it listens."""
    url = dead_url()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    server = FakeServer(FakeConfig(), port=port)

    async def sleep_then_come_up(seconds: float) -> None:
        await time.sleep(seconds)
        if len(time.sleeps) == 2:
            await server.start()

    lines: list[str] = []
    try:
        async with backend(url, time, lines, sleep=sleep_then_come_up, wait_ready=60) as be:
            await be.start()
    finally:
        await server.stop()
    assert be.name == "fake-model"
    assert time.sleeps == [0.5, 1.0]
    assert lines[-1] == f"{url} ready after 2s"


async def test_a_refused_key_is_not_waited_for(time: FakeTime) -> None:
    def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "bad key"}}, status=401)

    async with serve_models(refuse) as url, backend(url, time, []) as be:
        with pytest.raises(AuthenticationError, match="PACORE_API_KEY"):
            await be.start()
    assert time.sleeps == []


async def test_an_empty_model_list_is_waited_for_unless_a_model_is_named(time: FakeTime) -> None:
    listed: list[list[dict[str, str]]] = [[], [], [{"id": "late-model"}]]

    def models(request: web.Request) -> web.Response:
        return web.json_response({"data": listed.pop(0) if len(listed) > 1 else listed[0]})

    async with serve_models(models) as url:
        async with backend(url, time, [], model="mine") as be:
            await be.start()  # a named model needs no list
            assert be.name == "mine"
        assert time.sleeps == []
        async with backend(url, time, []) as be:
            await be.start()
            assert be.name == "late-model"
        assert time.sleeps == [0.5]
        listed[:] = [[]]
        async with backend(url, time, [], wait_ready=0) as be:
            with pytest.raises(ConfigError, match=r"lists no models; name one with --model$"):
                await be.start()


async def test_a_server_without_models_is_not_waited_for(time: FakeTime) -> None:
    """A 404 from `/models` cannot change by waiting: with no model named, stop at once."""

    def missing(request: web.Request) -> web.Response:
        return web.json_response({"error": "not found"}, status=404)

    lines: list[str] = []
    async with serve_models(missing) as url:
        async with backend(url, time, lines, model="mine") as be:
            await be.start()  # named: it goes on, warned that the path looks wrong
        async with backend(url, time, []) as be:
            with pytest.raises(ConfigError, match="lists no models") as caught:
                await be.start()
    assert time.sleeps == []
    assert "answered HTTP 404" in str(caught.value)
    assert "usually ends in /v1" in str(caught.value)
    assert [line for line in lines if "404" in line and "/v1" in line], lines


async def test_a_named_model_the_server_does_not_list_is_warned_about(time: FakeTime) -> None:
    def models(request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "smol"}]})

    lines: list[str] = []
    async with serve_models(models) as url:
        async with backend(url, time, lines, model="gpt-4o") as be:
            await be.start()
            assert be.name == "gpt-4o"  # its choice, not refused: servers may alias
        async with backend(url, time, lines, model="smol") as be:
            await be.start()
    warned = [line for line in lines if "does not list the model" in line]
    assert len(warned) == 1, lines
    assert "'gpt-4o'" in warned[0]
    assert "smol" in warned[0]


async def test_one_ready_endpoint_is_enough_and_the_others_sit_out(time: FakeTime) -> None:
    dead = dead_url()
    async with (
        FakeServer(FakeConfig()) as srv,
        backend([dead, srv.url], time, [], endpoint_cooldown=60) as be,
    ):
        await be.start()
        assert be.pool.is_down(be.pool.endpoints[0])
        assert not be.pool.is_down(be.pool.endpoints[1])
    assert time.sleeps == []


def test_make_backend_passes_wait_ready_on() -> None:
    be = make_backend(BackendConfig(backend=("http://127.0.0.1:9/v1",), wait_ready=7))
    assert isinstance(be, OpenAIBackend)
    assert be.wait_ready == 7
    assert OpenAIBackend("http://127.0.0.1:9/v1").wait_ready is BackendConfig().wait_ready is None
    with pytest.raises(ConfigError, match="wait_ready must be at least 0"):
        OpenAIBackend("http://127.0.0.1:9/v1", wait_ready=-1)


# ------------------------------------------------------------ the schedule alone


def test_ready_wait_schedule_and_lines() -> None:
    time = FakeTime()
    lines: list[str] = []
    wait = ReadyWait(20.0, clock=time, notify=lines.append)
    probes = [Probe("http://a/v1", "loading", said=LOADING)]
    pauses = []
    while time.now < 20.0:
        pauses.append(wait.pause(probes))
        time.now += pauses[-1]
    with pytest.raises(ConnectionFailed, match="backend not ready: http://a/v1"):
        wait.pause(probes)
    assert pauses == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 2.5]  # the last stops at the limit
    assert lines == [
        f"waiting for http://a/v1 ({LOADING}); giving up after 20s",
        f"still waiting (12s) for http://a/v1 ({LOADING})",
    ]


def test_probe_readiness() -> None:
    assert Probe("u", "listed", models=("m",)).ready(named=False)
    assert not Probe("u", "listed").ready(named=False)
    assert Probe("u", "listed").ready(named=True)
    assert Probe("u", "unlisted", said="HTTP 404: nope").ready(named=True)
    assert not Probe("u", "unlisted").ready(named=False)
    assert not Probe("u", "loading").ready(named=True)
    assert not Probe("u", "unreachable").ready(named=True)
    assert str(Probe("u", "loading", said=LOADING)) == f"u ({LOADING})"


# ------------------------------------------------------------- during a run


async def test_a_reload_during_a_run_is_outlasted(time: FakeTime) -> None:
    """503s go on past the retry count while the request's time budget lasts."""
    async with (
        FakeServer(FakeConfig(loading_requests=8)) as srv,
        backend(srv.url, time, [], model="m", max_retries=2, timeout=600) as be,
    ):
        (c,) = await be.complete(MSGS, 1, SamplingParams())
    assert c.error is None
    assert srv.stats.requests == 9
    assert len(time.sleeps) == 8


async def test_retrying_503s_stops_at_the_request_timeout(time: FakeTime) -> None:
    async with FakeServer(FakeConfig(loading_s=1e9, clock=time)) as srv:
        be = backend(srv.url, time, [], model="m", max_retries=2, timeout=20, rng=random.Random(0))
        async with be:
            (c,) = await be.complete(MSGS, 1, SamplingParams())
    assert c.error_type == "ServerError"
    assert "Loading model" in (c.error or "")
    assert srv.stats.requests > 3  # past the retry count ...
    assert sum(time.sleeps) <= 20.0  # ... but not past the timeout


async def test_other_errors_keep_the_retry_count(time: FakeTime) -> None:
    async with (
        FakeServer(FakeConfig(fail_script=[500] * 10)) as srv,
        backend(srv.url, time, [], model="m", max_retries=2) as be,
    ):
        (c,) = await be.complete(MSGS, 1, SamplingParams())
    assert c.error_type == "ServerError"
    assert srv.stats.requests == 3
