"""Shared fixtures: the fake OpenAI-compatible server and a fake clock for backoff."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

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


def dead_url() -> str:
    """A loopback URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
