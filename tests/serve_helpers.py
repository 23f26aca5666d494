"""Serve a `pacore serve` app on uvicorn in a background thread, against a fake upstream."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette

from pacore.config import BackendConfig, PacoreConfig, ServeConfig
from pacore.serve.app import create_app
from tests.fake_server import FakeConfig, FakeServer, run_in_thread


@contextlib.contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """The app on uvicorn at a free loopback port; yields its base URL (`.../v1`)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@contextlib.contextmanager
def pacore_server(
    fake: FakeConfig | None = None,
    *,
    settings: ServeConfig | None = None,
    defaults: PacoreConfig | None = None,
    log: list[dict[str, Any]] | None = None,
    **backend: Any,
) -> Iterator[tuple[str, FakeServer]]:
    """A fake upstream and a pacore app in front of it: (the app's base URL, the fake)."""
    with run_in_thread(fake or FakeConfig()) as upstream:
        config = BackendConfig(backend=(upstream.url,), **{"wait_ready": 0.0, **backend})
        records = log if log is not None else []
        app = create_app(config, defaults, settings, log=records.append)
        with serving(app) as url:
            yield url, upstream
