"""What a command opens once its plan is checked: the backend, and small shared helpers."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from pacore.backends import Backend
from pacore.config import BackendConfig
from pacore.types import Message


async def open_backend(
    stack: AsyncExitStack, config: BackendConfig, *, concurrency: int
) -> Backend:
    """The backend `config` names, started: a server must answer before any work starts.

    It is closed by `stack`, even when starting it fails.
    """
    from pacore.backends import make_backend

    backend = make_backend(config, concurrency=concurrency)
    stack.push_async_callback(backend.aclose)
    await backend.start()
    return backend


def with_system(messages: tuple[Message, ...], system: str | None) -> tuple[Message, ...]:
    """`messages` with a system message first, unless there is none to add or one already."""
    if system is None or any(m.get("role") == "system" for m in messages):
        return messages
    return ({"role": "system", "content": system}, *messages)


def quiet_stream() -> Any:
    """A stream that swallows progress output (`--quiet`)."""
    import io

    return io.StringIO()
