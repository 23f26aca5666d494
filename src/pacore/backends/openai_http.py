"""The OpenAI-compatible HTTP backend (vLLM, SGLang, llama.cpp server, Ollama, OpenAI).

Policy lives here; aiohttp does the I/O:
- one pooled keep-alive `ClientSession` per backend, its connector capped at
  the concurrency limit, so connections are bounded by requests in flight;
- the K samples of one call go to one endpoint as one request with `n=K` when
  the server honours `n`, else as K requests (detected once per endpoint);
- retries with exponential backoff and full jitter on 429, 5xx, connection
  errors and timeouts, honouring `Retry-After`; the concurrency slot is held
  only while a request is on the wire, never while sleeping;
- context-length and other 4xx errors are classified and not retried;
- several base URLs: least-loaded healthy endpoint per call, and an endpoint
  that keeps failing is taken out of rotation for a growing cool-down.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from pacore.backends.base import ProgressCallback, RequestCounter
from pacore.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    ConnectionFailed,
    ContextLengthError,
    RateLimited,
    RequestRejected,
    RequestTimeout,
    ServerError,
)
from pacore.types import Completion, Message, SamplingParams, Usage

API_KEY_ENV = ("PACORE_API_KEY", "OPENAI_API_KEY")

_CONTEXT_PATTERNS = re.compile(
    r"context length|context window|context size|context_length|maximum context|"
    r"too many tokens|prompt is too long|exceeds the (?:available )?context|"
    r"input is too long|reduce the length",
    re.IGNORECASE,
)
_N_PATTERNS = re.compile(r"\bn\b|\bn\s*[<>=]|'n'|\"n\"|multiple choices", re.IGNORECASE)

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Endpoint:
    url: str
    inflight: int = 0
    consecutive_failures: int = 0
    down_until: float = 0.0
    supports_n: bool | None = None


def normalize_base_url(url: str) -> str:
    """A base URL as the openai SDK takes it: `/chat/completions` is appended to it."""
    url = url.strip()
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"backend URL must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or err)[:300]
        return str(err)[:300]
    return str(data)[:300]


def classify_http_error(status: int, body: str, retry_after: float | None) -> BackendError:
    """The typed error of a non-2xx response."""
    message = f"HTTP {status}: {_error_message(body)}"
    if status == 429:
        return RateLimited(message, status=status, retry_after=retry_after)
    if status >= 500:
        return ServerError(message, status=status, retry_after=retry_after)
    if status in (401, 403):
        return AuthenticationError(message, status=status)
    if status in (400, 413, 422) and _CONTEXT_PATTERNS.search(body):
        return ContextLengthError(message, status=status)
    return RequestRejected(message, status=status)


def _split_tokens(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` over choices in proportion to `weights` (largest remainder)."""
    if not weights:
        return []
    wsum = sum(weights)
    if wsum == 0:
        base = [total // len(weights)] * len(weights)
        for i in range(total - sum(base)):
            base[i] += 1
        return base
    raw = [total * w / wsum for w in weights]
    out = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def _estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


@dataclass
class _Choice:
    text: str
    reasoning: str | None
    finish_reason: str | None


def _build_completions(
    choices: list[_Choice],
    usage: dict[str, Any] | None,
    latency_s: float,
    endpoint: str,
) -> list[Completion]:
    """Completions with honest token counts: exact for one choice, apportioned for several."""
    weights = [len(c.text) + len(c.reasoning or "") for c in choices]
    prompt = 0
    reasoning_total: int | None = None
    if usage:
        prompt = int(usage.get("prompt_tokens") or 0)
        details = usage.get("completion_tokens_details") or {}
        if isinstance(details, dict) and details.get("reasoning_tokens") is not None:
            reasoning_total = int(details["reasoning_tokens"])
    if usage and usage.get("completion_tokens") is not None:
        per_choice = _split_tokens(int(usage["completion_tokens"]), weights)
        estimated = len(choices) > 1
    else:
        per_choice = [_estimate_tokens(c.text + (c.reasoning or "")) for c in choices]
        estimated = True
    reasoning_split: list[int | None]
    if reasoning_total is not None:
        reasoning_split = (
            list(_split_tokens(reasoning_total, [len(c.reasoning or "") for c in choices]))
            if len(choices) > 1
            else [reasoning_total]
        )
    else:
        reasoning_split = [None] * len(choices)
    return [
        Completion(
            text=c.text,
            reasoning=c.reasoning,
            finish_reason=c.finish_reason,
            usage=Usage(
                prompt_tokens=prompt,
                completion_tokens=tokens,
                reasoning_tokens=rtok,
                estimated=estimated,
            ),
            latency_s=latency_s,
            endpoint=endpoint,
        )
        for c, tokens, rtok in zip(choices, per_choice, reasoning_split, strict=True)
    ]


class OpenAIBackend:
    """Samples from one or more OpenAI-compatible `/chat/completions` endpoints."""

    def __init__(
        self,
        base_urls: str | Sequence[str],
        *,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = 64,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.2,
        backoff_max: float = 30.0,
        use_n: bool | None = None,
        endpoint_cooldown: float = 5.0,
        failures_before_cooldown: int = 3,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        if not urls:
            raise ConfigError("at least one backend URL is needed")
        if concurrency < 1:
            raise ConfigError("concurrency must be at least 1")
        if timeout <= 0:
            raise ConfigError("timeout must be positive")
        if max_retries < 0:
            raise ConfigError("max_retries must be >= 0")
        self._endpoints = [_Endpoint(normalize_base_url(u)) for u in urls]
        self.model = model
        self._api_key = api_key if api_key is not None else _env_api_key()
        self.concurrency = concurrency
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.use_n = use_n
        self.endpoint_cooldown = endpoint_cooldown
        self.failures_before_cooldown = failures_before_cooldown
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._turn = 0
        self.requests_made = 0

    # -- lifecycle ---------------------------------------------------------

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Content-Type": "application/json"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            connector = aiohttp.TCPConnector(
                limit=self.concurrency, keepalive_timeout=75, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers=headers, json_serialize=json.dumps
            )
            self._slots = asyncio.Semaphore(self.concurrency)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> OpenAIBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def endpoints(self) -> list[str]:
        return [ep.url for ep in self._endpoints]

    async def check(self) -> str:
        """Reach every endpoint's `/models`; return the model name to use.

        Raises `ConnectionFailed` when no endpoint answers at all, and
        `ConfigError` when no model was named and none can be discovered.
        """
        session = self._ensure_session()
        reachable: list[str] = []
        discovered: list[str] = []
        problems: list[str] = []
        timeout = aiohttp.ClientTimeout(total=max(self.connect_timeout, 1.0))
        for ep in self._endpoints:
            try:
                async with session.get(f"{ep.url}/models", timeout=timeout) as resp:
                    body = await resp.text()
                    reachable.append(ep.url)
                    if resp.status in (401, 403):
                        raise AuthenticationError(
                            f"{ep.url} refused the API key (HTTP {resp.status}); "
                            f"set {API_KEY_ENV[0]} or {API_KEY_ENV[1]}",
                            status=resp.status,
                        )
                    if resp.status == 200:
                        with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                            data = json.loads(body).get("data") or []
                            discovered += [str(m["id"]) for m in data if "id" in m]
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                problems.append(f"{ep.url} ({_describe(exc)})")
                ep.down_until = self._clock() + self.endpoint_cooldown
        if not reachable:
            raise ConnectionFailed("cannot reach backend " + "; ".join(problems))
        if self.model is None:
            if not discovered:
                raise ConfigError("the server lists no models; name one with --model")
            self.model = discovered[0]
        return self.model

    # -- endpoint choice -----------------------------------------------------

    def _pick(self, avoid: _Endpoint | None = None) -> _Endpoint:
        now = self._clock()
        candidates = [ep for ep in self._endpoints if ep is not avoid] or list(self._endpoints)
        healthy = [ep for ep in candidates if ep.down_until <= now]
        if not healthy:
            # Everything is cooling down: try the one that comes back first.
            return min(candidates, key=lambda ep: ep.down_until)
        self._turn += 1
        count = len(self._endpoints)
        return min(
            healthy,
            key=lambda ep: (ep.inflight, (self._endpoints.index(ep) - self._turn) % count),
        )

    def _record_failure(self, ep: _Endpoint, exc: BackendError) -> None:
        ep.consecutive_failures += 1
        threshold = 1 if isinstance(exc, ConnectionFailed) else self.failures_before_cooldown
        if ep.consecutive_failures >= threshold and len(self._endpoints) > 1:
            strikes = ep.consecutive_failures - threshold
            ep.down_until = self._clock() + min(self.endpoint_cooldown * 2**strikes, 300.0)

    @staticmethod
    def _record_success(ep: _Endpoint) -> None:
        ep.consecutive_failures = 0
        ep.down_until = 0.0

    # -- the protocol --------------------------------------------------------

    async def complete(
        self,
        messages: Sequence[Message],
        n: int,
        params: SamplingParams,
        *,
        affinity: str | None = None,
        on_tokens: ProgressCallback | None = None,
        counter: RequestCounter | None = None,
    ) -> list[Completion]:
        if n < 1:
            return []
        self._ensure_session()
        counter = counter if counter is not None else RequestCounter()
        ep = self._pick()
        body = self._body(messages, params)
        try_n = n > 1 and self.use_n is not False and ep.supports_n is not False
        results: list[Completion] = []
        if try_n:
            ep.inflight += 1
            try:
                got = await self._with_retries(ep, {**body, "n": n}, counter, on_tokens)
            except RequestRejected as exc:
                if (
                    exc.status == 400
                    and _N_PATTERNS.search(str(exc))
                    and not isinstance(exc, ContextLengthError)
                ):
                    ep.supports_n = False
                    got = []
                else:
                    return [Completion.failed(exc)] * n
            except BackendError as exc:
                return [Completion.failed(exc)] * n
            finally:
                ep.inflight -= 1
            if len(got) >= n:
                ep.supports_n = True
                return got[:n]
            if got:
                ep.supports_n = False
            results.extend(got)
        missing = n - len(results)
        ep.inflight += missing
        try:
            singles = await asyncio.gather(
                *(
                    self._single(ep, body, params, len(results) + i, counter, on_tokens)
                    for i in range(missing)
                )
            )
        finally:
            ep.inflight -= missing
        results.extend(singles)
        return results

    async def _single(
        self,
        ep: _Endpoint,
        body: dict[str, Any],
        params: SamplingParams,
        index: int,
        counter: RequestCounter,
        on_tokens: ProgressCallback | None,
    ) -> Completion:
        if params.seed is not None:
            body = {**body, "seed": (params.seed + index) % 2**31}
        try:
            got = await self._with_retries(ep, body, counter, on_tokens)
        except BackendError as exc:
            return Completion.failed(exc, endpoint=ep.url)
        if not got:
            return Completion.failed(ServerError("the server returned no choices"), endpoint=ep.url)
        return got[0]

    def _body(self, messages: Sequence[Message], params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model or "default",
            "messages": list(messages),
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.max_tokens is not None:
            body["max_tokens"] = params.max_tokens
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        body.update(params.extra_body)
        return body

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max * 4)
        # Full jitter: spreads retries of requests that failed together.
        cap = min(self.backoff_max, self.backoff_base * 2**attempt)
        return self._rng.uniform(0.0, cap)

    async def _with_retries(
        self,
        ep: _Endpoint,
        body: dict[str, Any],
        counter: RequestCounter,
        on_tokens: ProgressCallback | None,
    ) -> list[Completion]:
        session = self._ensure_session()
        assert self._slots is not None
        attempt = 0
        while True:
            async with self._slots:
                counter.requests += 1
                self.requests_made += 1
                try:
                    got = await self._send(session, ep, body, on_tokens)
                except BackendError as exc:
                    error: BackendError = exc
                else:
                    self._record_success(ep)
                    return got
            if not error.retryable or attempt >= self.max_retries:
                raise error
            self._record_failure(ep, error)
            # Sleep outside the slot, then fail over if this endpoint is cooling down.
            await self._sleep(self._backoff(attempt, error.retry_after))
            attempt += 1
            if len(self._endpoints) > 1 and ep.down_until > self._clock():
                ep = self._pick(avoid=ep)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        ep: _Endpoint,
        body: dict[str, Any],
        on_tokens: ProgressCallback | None,
    ) -> list[Completion]:
        url = f"{ep.url}/chat/completions"
        timeout = aiohttp.ClientTimeout(total=self.timeout, connect=self.connect_timeout)
        started = time.perf_counter()
        try:
            async with session.post(url, json=body, timeout=timeout) as resp:
                if resp.status != 200:
                    text = await resp.text(errors="replace")
                    raise classify_http_error(
                        resp.status, text, _retry_after(resp.headers.get("Retry-After"))
                    )
                if body.get("stream"):
                    choices, usage = await _read_stream(resp, on_tokens)
                else:
                    choices, usage = _parse_response(await resp.read())
                    if on_tokens is not None and usage:
                        on_tokens(int(usage.get("completion_tokens") or 0))
        except BackendError:
            raise
        except TimeoutError:
            raise RequestTimeout(
                f"no complete answer from {ep.url} within {self.timeout:g}s"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionFailed(f"{ep.url}: {_describe(exc)}") from None
        return _build_completions(choices, usage, time.perf_counter() - started, ep.url)


def _json_loads(data: bytes) -> Any:
    return json.loads(data)


try:  # orjson parses a stream event ~4x faster than json; optional, same results
    import orjson

    _fast_loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = _json_loads


def _env_api_key() -> str | None:
    for name in API_KEY_ENV:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _choice_from_message(ch: dict[str, Any]) -> _Choice:
    msg = ch.get("message") or {}
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    return _Choice(
        text=msg.get("content") or "",
        reasoning=reasoning or None,
        finish_reason=ch.get("finish_reason"),
    )


def _parse_response(raw: bytes) -> tuple[list[_Choice], dict[str, Any] | None]:
    try:
        data = _fast_loads(raw)
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        parsed = [_choice_from_message(c) for c in choices]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ServerError(f"malformed response from server: {_describe(exc)}") from None
    usage = data.get("usage")
    return parsed, usage if isinstance(usage, dict) else None


async def _read_stream(
    resp: aiohttp.ClientResponse, on_tokens: ProgressCallback | None
) -> tuple[list[_Choice], dict[str, Any] | None]:
    """Assemble server-sent events into choices.

    Reads whatever bytes have arrived and parses every complete line in them, rather
    than awaiting line by line: a stream of single-token events is mostly overhead
    per await, and this halves the client's CPU per event.
    """
    texts: dict[int, list[str]] = {}
    reasons: dict[int, list[str]] = {}
    finish: dict[int, str | None] = {}
    usage: dict[str, Any] | None = None
    pending = b""
    finished = False
    loads = _fast_loads
    async for data in resp.content.iter_any():
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        deltas = 0
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                finished = True
                break
            try:
                chunk = loads(payload)
            except ValueError:
                raise ServerError("malformed stream chunk from server") from None
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error"):
                raise ServerError(f"error in stream: {_error_message(json.dumps(chunk))}")
            if chunk.get("usage"):
                usage = chunk["usage"]
            for ch in chunk.get("choices") or ():
                idx = ch.get("index", 0)
                delta = ch.get("delta") or {}
                content = delta.get("content")
                if content:
                    texts.setdefault(idx, []).append(content)
                    deltas += 1
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning:
                    reasons.setdefault(idx, []).append(reasoning)
                    deltas += 1
                reason = ch.get("finish_reason")
                if reason is not None:
                    finish[idx] = reason
                elif idx not in finish:
                    finish[idx] = None
        if deltas and on_tokens is not None:
            on_tokens(deltas)
        if finished:
            break
    indices = sorted(set(texts) | set(reasons) | set(finish))
    choices = [
        _Choice(
            text="".join(texts.get(i, ())),
            reasoning="".join(reasons[i]) if i in reasons else None,
            finish_reason=finish.get(i),
        )
        for i in indices
    ]
    return choices, usage


__all__ = ["OpenAIBackend", "classify_http_error", "normalize_base_url"]
