"""One HTTP exchange with one endpoint: a chat completion (`/models` is `readiness.py`'s).

No policy lives here (no retries, no choice of endpoint): every failure becomes
one typed `BackendError`, for the client to act on.
"""

from __future__ import annotations

import time
from typing import Any

from pacore.backends.base import ProgressCallback, TextCallback
from pacore.backends.openai_compat import tls
from pacore.backends.openai_compat.retry import classify_http_error, parse_retry_after
from pacore.backends.openai_compat.tls import aiohttp
from pacore.backends.openai_compat.usage import Counted, build_completions, prompt_size
from pacore.backends.openai_compat.wire import (
    SSEDecoder,
    StreamAssembler,
    describe,
    parse_response,
)
from pacore.errors import BackendError, ConnectionFailed, RequestTimeout
from pacore.redact import redact_url

API_KEY_ENV = ("PACORE_API_KEY", "OPENAI_API_KEY")


async def post_chat(
    session: aiohttp.ClientSession,
    base_url: str,
    body: dict[str, Any],
    limits: aiohttp.ClientTimeout,
    on_tokens: ProgressCallback | None,
    *,
    context_window: int | None = None,
    on_text: TextCallback | None = None,
) -> Counted:
    """The completions of one `/chat/completions` request (streamed when `body` says so),
    within the time `limits`.

    A streamed request that fails part way raises with `partial_tokens` set to the
    deltas it had received: tokens the server generated and the caller must count.
    `on_text` gets a streamed answer's text as it arrives.
    """
    started = time.perf_counter()
    n = body.get("n")
    asked = n if type(n) is int and n > 0 else 1
    assembler = StreamAssembler(on_text, asked)
    shown = redact_url(base_url)  # what errors and outputs name: no credentials
    try:
        async with session.post(f"{base_url}/chat/completions", json=body, timeout=limits) as r:
            if r.status != 200:
                text = await r.text(errors="replace")
                retry_after = parse_retry_after(r.headers.get("Retry-After"))
                raise classify_http_error(r.status, text, retry_after)
            if body.get("stream"):
                await _read_stream(r, assembler, on_tokens)
                choices, report = assembler.choices(), assembler.report()
            else:
                choices, report = parse_response(await r.read(), asked)
    except BackendError as exc:
        exc.partial_tokens = max(exc.partial_tokens, assembler.spent())
        raise
    except TimeoutError:
        raise RequestTimeout(
            f"no complete answer from {shown} within {limits.total:g}s",
            partial_tokens=assembler.spent(),
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        late = " (redirected to https before the CA certificates were loaded; they are now)"
        raise ConnectionFailed(
            f"{shown}: {describe(exc)}" + (late if tls.loaded_late(exc) else ""),
            partial_tokens=assembler.spent(),
        ) from None
    counted = build_completions(
        choices,
        report,
        time.perf_counter() - started,
        shown,
        max_tokens=body.get("max_tokens") or body.get("max_completion_tokens"),
        context_window=context_window,
        prompt_chars=prompt_size(body.get("messages")),
    )
    if on_tokens is not None:
        # Progress has its deltas of a stream so far: the counted rest (a server that
        # sends several tokens a delta), or a whole answer's count.
        counted_tokens = sum(c.usage.completion_tokens for c in counted.completions)
        rest = counted_tokens - assembler.deltas if body.get("stream") else counted_tokens
        if rest > 0:
            on_tokens(rest)
    return counted


async def _read_stream(
    resp: aiohttp.ClientResponse, assembler: StreamAssembler, on_tokens: ProgressCallback | None
) -> None:
    """Feed a streamed answer to `assembler`, reporting progress as deltas arrive."""
    decoder = SSEDecoder()
    async for data in resp.content.iter_any():
        deltas = sum(assembler.feed(event) for event in decoder.feed(data))
        if deltas and on_tokens is not None:
            on_tokens(deltas)
        if decoder.done:
            break
