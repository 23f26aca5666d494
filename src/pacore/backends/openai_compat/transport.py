"""One HTTP exchange with one endpoint: a chat completion, or the list of models.

No policy lives here (no retries, no choice of endpoint): every failure becomes
one typed `BackendError`, for the client to act on.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import aiohttp

from pacore.backends.base import ProgressCallback
from pacore.backends.openai_compat.retry import classify_http_error, parse_retry_after
from pacore.backends.openai_compat.usage import build_completions
from pacore.backends.openai_compat.wire import (
    SSEDecoder,
    StreamAssembler,
    WireChoice,
    describe,
    parse_response,
)
from pacore.errors import AuthenticationError, BackendError, ConnectionFailed, RequestTimeout
from pacore.types import Completion

API_KEY_ENV = ("PACORE_API_KEY", "OPENAI_API_KEY")


async def post_chat(
    session: aiohttp.ClientSession,
    base_url: str,
    body: dict[str, Any],
    limits: aiohttp.ClientTimeout,
    on_tokens: ProgressCallback | None,
) -> list[Completion]:
    """The completions of one `/chat/completions` request (streamed when `body` says so),
    within the time `limits`."""
    started = time.perf_counter()
    try:
        async with session.post(f"{base_url}/chat/completions", json=body, timeout=limits) as r:
            if r.status != 200:
                text = await r.text(errors="replace")
                retry_after = parse_retry_after(r.headers.get("Retry-After"))
                raise classify_http_error(r.status, text, retry_after)
            if body.get("stream"):
                choices, usage = await _read_stream(r, on_tokens)
            else:
                choices, usage = parse_response(await r.read())
                if on_tokens is not None and usage:
                    on_tokens(int(usage.get("completion_tokens") or 0))
    except BackendError:
        raise
    except TimeoutError:
        raise RequestTimeout(
            f"no complete answer from {base_url} within {limits.total:g}s"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ConnectionFailed(f"{base_url}: {describe(exc)}") from None
    return build_completions(choices, usage, time.perf_counter() - started, base_url)


async def _read_stream(
    resp: aiohttp.ClientResponse, on_tokens: ProgressCallback | None
) -> tuple[list[WireChoice], dict[str, Any] | None]:
    """The choices and usage of a streamed answer, reporting progress as deltas arrive."""
    decoder, assembler = SSEDecoder(), StreamAssembler()
    async for data in resp.content.iter_any():
        deltas = sum(assembler.feed(event) for event in decoder.feed(data))
        if deltas and on_tokens is not None:
            on_tokens(deltas)
        if decoder.done:
            break
    return assembler.choices(), assembler.usage


async def list_models(
    session: aiohttp.ClientSession, base_url: str, limits: aiohttp.ClientTimeout
) -> list[str]:
    """The model ids `/models` lists (none when it answers something else).

    Raises `AuthenticationError` for 401/403; network errors propagate as aiohttp's.
    """
    async with session.get(f"{base_url}/models", timeout=limits) as resp:
        body = await resp.text()
    if resp.status in (401, 403):
        raise AuthenticationError(
            f"{base_url} refused the API key (HTTP {resp.status}); "
            f"set {API_KEY_ENV[0]} or {API_KEY_ENV[1]}",
            status=resp.status,
        )
    if resp.status != 200:
        return []
    with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
        data = json.loads(body).get("data") or []
        return [str(m["id"]) for m in data if "id" in m]
    return []
