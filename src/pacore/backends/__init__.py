"""Model backends: the OpenAI-compatible HTTP client and the embedded llama.cpp model.

Both are imported lazily so `import pacore` and `pacore --help` stay quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pacore.backends.base import Backend, ProgressCallback, RequestCounter, TextCallback
from pacore.config import EMBEDDED, BackendConfig

if TYPE_CHECKING:
    from pacore.backends.embedded import EmbeddedBackend
    from pacore.backends.openai_compat import OpenAIBackend


def make_backend(config: BackendConfig, *, concurrency: int | None = None) -> Backend:
    """The backend a checked `BackendConfig` names, not yet started.

    Server URLs get the HTTP client with at most `concurrency` requests in flight
    (the engine's default when None); no URL, or `embedded`, gets the in-process
    model. Call `await backend.start()` before use and `aclose()` after.
    """
    if config.embedded:
        from pacore.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(config.model_path, slots=config.slots)
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


def __getattr__(name: str) -> Any:
    if name == "OpenAIBackend":
        from pacore.backends.openai_compat import OpenAIBackend

        return OpenAIBackend
    if name == "EmbeddedBackend":
        from pacore.backends.embedded import EmbeddedBackend

        return EmbeddedBackend
    raise AttributeError(name)


__all__ = [
    "EMBEDDED",
    "Backend",
    "EmbeddedBackend",
    "OpenAIBackend",
    "ProgressCallback",
    "RequestCounter",
    "TextCallback",
    "make_backend",
]
