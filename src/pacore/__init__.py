"""PaCoRe: Parallel Coordinated Reasoning.

Sample many trajectories in parallel, compact each to its conclusion, and let the next
round synthesise them; the final width-1 round gives the answer. Use it as a library::

    import asyncio

    from pacore import OpenAIBackend, PacoreConfig, solve


    async def main() -> None:
        async with OpenAIBackend("http://127.0.0.1:8000/v1") as backend:
            await backend.start()  # checks the server and learns its model's name
            result = await solve("What is 17 * 23?", backend, PacoreConfig(widths=(8,)))
        print(result.answer, result.ttc_tokens)


    asyncio.run(main())

`Engine` runs many problems on one backend (`Engine.solve_many`); `solve` is one
problem, one call. The backends load lazily, so `import pacore` stays quick and does
not import the HTTP stack or the embedded model until one is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pacore.backends.base import Backend
from pacore.config import PacoreConfig
from pacore.engine import Engine
from pacore.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    ConnectionFailed,
    ContextLengthError,
    PacoreError,
    RateLimited,
    RequestRejected,
    RequestTimeout,
    ServerError,
)
from pacore.types import Message, Problem, Result, RoundResult, Trajectory, Usage

if TYPE_CHECKING:
    from pacore.backends import EmbeddedBackend, OpenAIBackend

__version__ = "0.1.0"


async def solve(
    question: str | Sequence[Message] | Problem,
    backend: Backend,
    config: PacoreConfig | None = None,
) -> Result:
    """Solve one question with PaCoRe on `backend` (the caller opens and closes it)."""
    return await Engine(backend, config).solve(question)


_LAZY = frozenset({"OpenAIBackend", "EmbeddedBackend"})


def __getattr__(name: str) -> Any:
    """Import a backend class on first use: aiohttp and xllamacpp are heavy."""
    if name in _LAZY:
        import pacore.backends

        return getattr(pacore.backends, name)
    raise AttributeError(f"module 'pacore' has no attribute {name!r}")


__all__ = [
    "AuthenticationError",
    "Backend",
    "BackendError",
    "ConfigError",
    "ConnectionFailed",
    "ContextLengthError",
    "EmbeddedBackend",
    "Engine",
    "OpenAIBackend",
    "PacoreConfig",
    "PacoreError",
    "Problem",
    "RateLimited",
    "RequestRejected",
    "RequestTimeout",
    "Result",
    "RoundResult",
    "ServerError",
    "Trajectory",
    "Usage",
    "__version__",
    "solve",
]
