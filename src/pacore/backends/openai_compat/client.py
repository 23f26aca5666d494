"""`OpenAIBackend`: the endpoint pool and the retry policy over the transport's requests.

- one pooled keep-alive `ClientSession` per backend, its connector capped at
  the concurrency limit, so connections are bounded by requests in flight;
- the K samples of one call go to one endpoint as one request with `n=K` when
  the endpoint honours `n`, else as K requests (learnt once per endpoint);
- a concurrency slot is held only while a request is on the wire, never while
  it waits to be retried.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from pacore.backends.base import ProgressCallback, RequestCounter
from pacore.backends.openai_compat.endpoints import Endpoint, EndpointPool
from pacore.backends.openai_compat.retry import RetryPolicy, refuses_n
from pacore.backends.openai_compat.transport import API_KEY_ENV, list_models, post_chat
from pacore.backends.openai_compat.wire import describe, request_body
from pacore.config import BackendConfig, PacoreConfig, check_setting
from pacore.errors import BackendError, ConfigError, ConnectionFailed, RequestRejected, ServerError
from pacore.types import Completion, Message, SamplingParams

DEFAULT_MODEL = "default"
"""The model requests name when none was given and `start()` has not found one."""

Sleep = Callable[[float], Awaitable[None]]


class OpenAIBackend:
    """Samples from one or more OpenAI-compatible `/chat/completions` endpoints."""

    def __init__(
        self,
        base_urls: str | Sequence[str],
        *,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = PacoreConfig.concurrency,
        timeout: float = BackendConfig.timeout,
        connect_timeout: float = 10.0,
        max_retries: int = BackendConfig.retries,
        backoff_base: float = BackendConfig.backoff,
        backoff_max: float = 30.0,
        use_n: bool | None = None,
        endpoint_cooldown: float = 5.0,
        failures_before_cooldown: int = 3,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """A backend for `base_urls`; no connection is made before the first request.

        `use_n`: None learns per endpoint whether it honours `n`, False never sends it.
        `sleep`, `rng` and `clock` are for tests: a fake clock never waits.
        """
        check_setting(PacoreConfig, "concurrency", concurrency)
        check_setting(BackendConfig, "timeout", timeout)
        check_setting(BackendConfig, "retries", max_retries)
        check_setting(BackendConfig, "backoff", backoff_base)
        self.pool = EndpointPool(
            [base_urls] if isinstance(base_urls, str) else list(base_urls),
            cooldown=endpoint_cooldown,
            failures_before_cooldown=failures_before_cooldown,
            clock=clock,
        )
        self.retry = RetryPolicy(max_retries, backoff_base, backoff_max, rng or random.Random())
        self.model = model
        self.concurrency = concurrency
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.use_n = use_n
        self.requests_made = 0
        self._api_key = api_key if api_key is not None else _env_api_key()
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None

    @property
    def name(self) -> str:
        """The served model: the one named, else the first the server lists (after `start()`)."""
        return self.model or DEFAULT_MODEL

    @property
    def endpoints(self) -> list[str]:
        """The base URLs, normalised."""
        return [ep.url for ep in self.pool.endpoints]

    # -- lifecycle ---------------------------------------------------------

    def _ensure_session(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        if self._session is None or self._session.closed or self._slots is None:
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
        return self._session, self._slots

    async def start(self) -> None:
        """Reach every endpoint's `/models`, and learn the model name if none was given.

        Raises `ConnectionFailed` when no endpoint answers at all, `AuthenticationError`
        when one refuses the API key, and `ConfigError` when no model was named and
        none can be discovered.
        """
        session, _ = self._ensure_session()
        limits = aiohttp.ClientTimeout(total=max(self.connect_timeout, 1.0))
        reachable = False
        discovered: list[str] = []
        problems: list[str] = []
        for ep in self.pool.endpoints:
            try:
                discovered += await list_models(session, ep.url, limits)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                problems.append(f"{ep.url} ({describe(exc)})")
                self.pool.unreachable(ep)
            else:
                reachable = True
        if not reachable:
            raise ConnectionFailed("cannot reach backend " + "; ".join(problems))
        if self.model is None:
            if not discovered:
                raise ConfigError("the server lists no models; name one with --model")
            self.model = discovered[0]

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> OpenAIBackend:
        """The backend itself; `aclose()` runs on exit."""
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the connection pool."""
        await self.aclose()

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
        """Return `n` completions of `messages`; see `Backend.complete`."""
        if n < 1:
            return []
        self._ensure_session()
        counter = counter if counter is not None else RequestCounter()
        ep = self.pool.pick()
        body = request_body(self.name, messages, params)
        results: list[Completion] = []
        if n > 1 and self.use_n is not False and ep.honours_n is not False:
            try:
                results = await self._several(ep, body, n, counter, on_tokens)
            except BackendError as exc:
                return [Completion.failed(exc)] * n
            if len(results) == n:
                return results
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
        return results + singles

    async def _several(
        self,
        ep: Endpoint,
        body: dict[str, Any],
        n: int,
        counter: RequestCounter,
        on_tokens: ProgressCallback | None,
    ) -> list[Completion]:
        """Up to `n` choices from one request with `n`: fewer if `ep` ignores `n`, none if
        it refuses it; either way it is not asked for several again."""
        ep.inflight += 1
        try:
            got = await self._with_retries(ep, {**body, "n": n}, counter, on_tokens)
        except RequestRejected as exc:
            if not refuses_n(exc):
                raise
            ep.honours_n = False
            return []
        finally:
            ep.inflight -= 1
        if got:
            ep.honours_n = len(got) >= n
        return got[:n]

    async def _single(
        self,
        ep: Endpoint,
        body: dict[str, Any],
        params: SamplingParams,
        index: int,
        counter: RequestCounter,
        on_tokens: ProgressCallback | None,
    ) -> Completion:
        if params.seed is not None:  # each sample its own seed, or they would all be alike
            body = {**body, "seed": (params.seed + index) % 2**31}
        try:
            got = await self._with_retries(ep, body, counter, on_tokens)
        except BackendError as exc:
            return Completion.failed(exc, endpoint=ep.url)
        if not got:
            return Completion.failed(ServerError("the server returned no choices"), endpoint=ep.url)
        return got[0]

    async def _with_retries(
        self,
        ep: Endpoint,
        body: dict[str, Any],
        counter: RequestCounter,
        on_tokens: ProgressCallback | None,
    ) -> list[Completion]:
        session, slots = self._ensure_session()
        attempt = 0
        while True:
            async with slots:
                counter.requests += 1
                self.requests_made += 1
                try:
                    got = await self._send(session, ep, body, on_tokens)
                except BackendError as exc:
                    error = exc
                else:
                    self.pool.succeeded(ep)
                    return got
            delay = self.retry.delay(attempt, error)
            if delay is None:
                raise error
            self.pool.failed(ep, error)
            # Sleep outside the slot, then fail over if this endpoint is cooling down.
            await self._sleep(delay)
            attempt += 1
            if len(self.pool) > 1 and self.pool.is_down(ep):
                ep = self.pool.pick(avoid=ep)

    async def _send(
        self,
        session: aiohttp.ClientSession,
        ep: Endpoint,
        body: dict[str, Any],
        on_tokens: ProgressCallback | None,
    ) -> list[Completion]:
        limits = aiohttp.ClientTimeout(total=self.timeout, connect=self.connect_timeout)
        return await post_chat(session, ep.url, body, limits, on_tokens)


def _env_api_key() -> str | None:
    for name in API_KEY_ENV:
        value = os.environ.get(name)
        if value:
            return value
    return None
