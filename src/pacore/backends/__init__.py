"""Model backends: the OpenAI-compatible HTTP client and the embedded llama.cpp model.

Both are imported lazily so `import pacore` and `pacore --help` stay quick. `BACKENDS`
names them (`openai`, `embedded`); other packages add backends as `pacore.backends`
entry points, each a factory `(BackendConfig, concurrency) -> Backend` that
`make_backend(config, name=...)` calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pacore.backends.base import Backend, ProgressCallback, RequestCounter, TextCallback
from pacore.config import EMBEDDED, BackendConfig
from pacore.registry import Registry

if TYPE_CHECKING:
    from pacore.backends.embedded import EmbeddedBackend
    from pacore.backends.openai_compat import OpenAIBackend


BackendFactory = Callable[[BackendConfig, int | None], Backend]
"""Builds a backend, not yet started, from its config and the most requests in flight
(None: the backend's default)."""


def make_backend(
    config: BackendConfig, *, concurrency: int | None = None, name: str | None = None
) -> Backend:
    """The backend a checked `BackendConfig` names, not yet started.

    Server URLs get the HTTP client with at most `concurrency` requests in flight
    (the engine's default when None); no URL, or `embedded`, gets the in-process
    model. `name` picks another registered backend (`BACKENDS`). Call
    `await backend.start()` before use and `aclose()` after.
    """
    chosen = name or (EMBEDDED if config.embedded else "openai")
    return BACKENDS.get(chosen)(config, concurrency)


def _embedded(config: BackendConfig, concurrency: int | None) -> Backend:
    from pacore.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(config.model_path, slots=config.slots)


def _openai(config: BackendConfig, concurrency: int | None) -> Backend:
    from pacore.backends.openai_compat import OpenAIBackend

    options: dict[str, Any] = {} if concurrency is None else {"concurrency": concurrency}
    return OpenAIBackend(
        list(config.backend),
        model=config.model,
        timeout=config.timeout,
        max_retries=config.retries,
        backoff_base=config.backoff,
        use_n=config.use_n,
        wait_ready=config.wait_ready,
        **options,
    )


BACKENDS: Registry[BackendFactory] = Registry(
    "backend", "pacore.backends", {"openai": _openai, EMBEDDED: _embedded}
)
"""Every backend by name: the built-ins, then `pacore.backends` entry points."""


def __getattr__(name: str) -> Any:
    if name == "OpenAIBackend":
        from pacore.backends.openai_compat import OpenAIBackend

        return OpenAIBackend
    if name == "EmbeddedBackend":
        from pacore.backends.embedded import EmbeddedBackend

        return EmbeddedBackend
    raise AttributeError(name)


__all__ = [
    "BACKENDS",
    "EMBEDDED",
    "Backend",
    "BackendFactory",
    "EmbeddedBackend",
    "OpenAIBackend",
    "ProgressCallback",
    "RequestCounter",
    "TextCallback",
    "make_backend",
]
