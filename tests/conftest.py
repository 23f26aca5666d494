"""Shared fixtures: the fake OpenAI-compatible server and a fake clock for backoff."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from tests.fake_server import FakeConfig, FakeServer


class FakeSleep:
    """Records requested sleeps and returns at once, so backoff tests never wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    async with FakeServer(FakeConfig()) as srv:
        yield srv


@contextlib.asynccontextmanager
async def serve_routes(
    routes: dict[tuple[str, str], Callable[[web.Request], Awaitable[web.StreamResponse]]],
) -> AsyncIterator[str]:
    """A loopback server with only `routes` ((method, path) -> handler); yields its
    base URL, `http://127.0.0.1:PORT/v1`."""
    app = web.Application()
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_chat(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A one-route server for `POST /v1/chat/completions`; yields its base URL."""
    async with serve_routes({("POST", "/v1/chat/completions"): handler}) as url:
        yield url


def dead_url() -> str:
    """A loopback URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
