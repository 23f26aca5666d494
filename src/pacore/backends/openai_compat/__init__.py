"""The OpenAI-compatible HTTP backend (vLLM, SGLang, llama.cpp server, Ollama, OpenAI).

One idea per module: `endpoints` chooses a server and benches failing ones,
`retry` classifies HTTP errors and spaces the retries, `wire` builds requests and
parses answers (streamed ones included), `usage` counts tokens per choice,
`transport` makes one HTTP exchange with one endpoint, `readiness` waits at
start-up for servers still loading their model, and `client` is the
`OpenAIBackend` that holds the policy: pooled session, concurrency, `n`, retries.
"""

from __future__ import annotations

from pacore.backends.openai_compat.client import OpenAIBackend

__all__ = ["OpenAIBackend"]
