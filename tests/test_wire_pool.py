"""One endpoint pool, counted in samples, for the backend and serve's passthrough.

A request for n samples holds n on its endpoint while it is in flight (one per
single request), the count moves with a request that fails over, and everything
comes back to zero when the requests end, cancelled ones included. Requests are
held in flight by the fake server's "hang"; the tests wait on what the server
reports, never on the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pacore.backends.openai_compat import OpenAIBackend
from pacore.backends.openai_compat.endpoints import EndpointPool
from pacore.config import BackendConfig
from pacore.serve.app import create_app
from pacore.serve.passthrough import Upstream
from pacore.types import SamplingParams
from tests.conftest import FakeSleep, dead_url
from tests.fake_server import FakeServer

MSGS = [{"role": "user", "content": "What is six times seven?"}]


async def until(condition: Callable[[], bool]) -> None:
    """Wait (on the loop, not the clock) until `condition` holds."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the condition never held")


def backend(urls: list[str], sleep: FakeSleep, **kw: object) -> OpenAIBackend:
    return OpenAIBackend(urls, model="fake-model", max_retries=2, sleep=sleep, **kw)  # type: ignore[arg-type]


async def test_a_request_for_n_samples_counts_n(fake_sleep: FakeSleep) -> None:
    async with (
        FakeServer(fail_script=["hang"], hang_s=60) as srv,
        backend([srv.url], fake_sleep) as be,
    ):
        (ep,) = be.pool.endpoints
        call = asyncio.ensure_future(be.complete(MSGS, 4, SamplingParams()))
        await until(lambda: srv.stats.hangs == 1)
        assert srv.stats.bodies[0]["n"] == 4
        assert ep.inflight == 4  # was 1: one per request, not per sample
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        assert ep.inflight == 0


async def test_single_requests_count_one_each(fake_sleep: FakeSleep) -> None:
    async with (
        FakeServer(fail_script=["hang"] * 3, hang_s=60) as srv,
        backend([srv.url], fake_sleep, use_n=False) as be,
    ):
        (ep,) = be.pool.endpoints
        call = asyncio.ensure_future(be.complete(MSGS, 3, SamplingParams()))
        await until(lambda: srv.stats.hangs == 3)
        assert ep.inflight == 3
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        assert ep.inflight == 0


async def test_the_count_moves_with_a_request_that_fails_over(fake_sleep: FakeSleep) -> None:
    async with (
        FakeServer(fail_script=["hang"], hang_s=60) as srv,
        backend([srv.url, dead_url()], fake_sleep) as be,
    ):
        live, dead = be.pool.endpoints
        call = asyncio.ensure_future(be.complete(MSGS, 4, SamplingParams()))
        await until(lambda: srv.stats.hangs == 1)
        assert dead.consecutive_failures == 1  # tried first, refused, benched
        assert (dead.inflight, live.inflight) == (0, 4)  # was (1, 0)
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        assert (dead.inflight, live.inflight) == (0, 0)


async def test_finished_calls_leave_nothing_counted(fake_sleep: FakeSleep) -> None:
    async with FakeServer(max_n=2, fail_script=[500]) as srv, backend([srv.url], fake_sleep) as be:
        out = await be.complete(MSGS, 5, SamplingParams())
        assert all(c.error is None for c in out)
        assert be.pool.endpoints[0].inflight == 0


async def test_passthrough_counts_samples_on_the_shared_pool() -> None:
    async with FakeServer(fail_script=["hang"], hang_s=60) as srv:
        pool = EndpointPool([srv.url], cooldown=1.0, failures_before_cooldown=1, clock=lambda: 0)
        upstream = Upstream([srv.url], api_key=None, timeout=60, concurrency=4, pool=pool)
        body = b'{"model": "fake-model", "n": 3, "messages": [{"role": "user", "content": "x"}]}'
        try:
            opening = asyncio.ensure_future(upstream.open(body, 3))
            await until(lambda: srv.stats.hangs == 1)
            assert pool.endpoints[0].inflight == 3
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
            assert pool.endpoints[0].inflight == 0
            passage = await upstream.open(body, 3)
            assert pool.endpoints[0].inflight == 3  # until its body has been read
            assert passage.status == 200
            await passage.read()
            assert pool.endpoints[0].inflight == 0
        finally:
            await upstream.aclose()


def test_serve_shares_the_backends_pool() -> None:
    app = create_app(BackendConfig(backend=("http://127.0.0.1:9/v1",)))
    server = app.state.server
    assert server.upstream.pool is server.backend.pool
