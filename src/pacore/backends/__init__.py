"""Model backends: the OpenAI-compatible HTTP client and the embedded llama.cpp model.

Both are imported lazily so `import pacore` and `pacore --help` stay quick.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pacore.backends.base import Backend, ProgressCallback, RequestCounter

if TYPE_CHECKING:
    from pacore.backends.embedded import EmbeddedBackend
    from pacore.backends.openai_compat import OpenAIBackend

EMBEDDED = "embedded"


def make_backend(targets: Sequence[str] | None, **options: Any) -> Backend:
    """A backend for `targets`: base URLs, or `["embedded"]` / nothing for the embedded model.

    HTTP options: model, api_key, concurrency, timeout, max_retries, use_n, backoff_base.
    Embedded options: model_path, slots, ctx_per_slot.
    """
    if not targets or list(targets) == [EMBEDDED]:
        from pacore.backends.embedded import EmbeddedBackend

        allowed = {"model_path", "slots", "ctx_per_slot", "threads"}
        return EmbeddedBackend(**{k: v for k, v in options.items() if k in allowed})
    if EMBEDDED in targets:
        from pacore.errors import ConfigError

        raise ConfigError("'embedded' cannot be mixed with server URLs in --backend")
    from pacore.backends.openai_compat import OpenAIBackend

    allowed = {"model", "api_key", "concurrency", "timeout", "max_retries", "use_n", "backoff_base"}
    return OpenAIBackend(list(targets), **{k: v for k, v in options.items() if k in allowed})


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
    "make_backend",
]
