"""The OpenAI-compatible HTTP backend (vLLM, SGLang, llama.cpp server, Ollama, OpenAI).

One idea per module: `endpoints` chooses a server and benches failing ones,
`retry` classifies HTTP errors and spaces the retries, `wire` builds requests and
reads and checks every OpenAI reply (streamed ones included; the embedded backend's
and serve's passthrough's too), `usage` counts tokens per choice (distrusting what
could not be true),
`transport` makes one HTTP exchange with one endpoint, `readiness` waits at
start-up for servers still loading their model, and `client` is the
`OpenAIBackend` that holds the policy: pooled session, concurrency, `n`, retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pacore.backends.openai_compat.client import OpenAIBackend


def __getattr__(name: str) -> Any:
    # Lazy: the embedded backend and serve read the wire format (`wire`, `usage`)
    # without loading the HTTP client.
    if name == "OpenAIBackend":
        from pacore.backends.openai_compat.client import OpenAIBackend

        return OpenAIBackend
    raise AttributeError(name)


__all__ = ["OpenAIBackend"]
