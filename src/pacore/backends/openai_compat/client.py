"""`OpenAIBackend`: the endpoint pool and the retry policy over the transport's requests.

- one pooled keep-alive `ClientSession` per backend, its connector capped at
  the concurrency limit, so connections are bounded by requests in flight;
- the K samples of one call go to one endpoint as one request with `n=K` when
  the endpoint honours `n`, as requests of at most its cap when it caps `n`,
  else as K requests (learnt once per endpoint);
- `start()` waits for servers that are still loading (see `readiness`);
- a concurrency slot is held only while a request is on the wire, never while
  it waits to be retried.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from pacore.backends.base import ProgressCallback, RequestCounter, TextCallback, TextKind
from pacore.backends.openai_compat import tls
from pacore.backends.openai_compat.endpoints import Endpoint, EndpointPool, Lease
from pacore.backends.openai_compat.readiness import (
    ReadyWait,
    path_hint,
    print_to_stderr,
    probe_models,
)
from pacore.backends.openai_compat.retry import RetryPolicy, n_limit, refuses_n
from pacore.backends.openai_compat.tls import aiohttp
from pacore.backends.openai_compat.transport import API_KEY_ENV, post_chat
from pacore.backends.openai_compat.usage import Counted, split_tokens
from pacore.backends.openai_compat.wire import request_body
from pacore.config import BackendConfig, PacoreConfig, check_setting
from pacore.errors import (
    BackendError,
    ConfigError,
    ContextLengthError,
    RequestRejected,
    ServerError,
)
from pacore.types import Completion, Message, SamplingParams

DEFAULT_MODEL = "default"
"""The model requests name when none was given and `start()` has not found one."""
WHOLE_USAGE_SERVERS = frozenset({"vllm", "sglang"})
"""`owned_by` values of servers whose usage for an `n > 1` answer covers every choice,
streamed or not: their endpoints are asked plainly from the first request, instead of
streaming it to learn that (`Endpoint.whole_usage`; the usage is still checked)."""

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
        wait_ready: float | None = BackendConfig.wait_ready,
        notify: Callable[[str], None] = print_to_stderr,
    ) -> None:
        """A backend for `base_urls`; no connection is made before the first request.

        `use_n`: None learns per endpoint whether it honours `n` (and up to which `n`),
        False never sends it. `wait_ready`: how long `start()` waits for a server that
        is still loading (None: a 503 for up to 300 s, a refused connection not at all);
        `notify` gets the lines that say so (default: stderr).
        `sleep`, `rng` and `clock` are for tests: a fake clock never waits.
        """
        check_setting(PacoreConfig, "concurrency", concurrency)
        check_setting(BackendConfig, "timeout", timeout)
        check_setting(BackendConfig, "retries", max_retries)
        check_setting(BackendConfig, "backoff", backoff_base)
        check_setting(BackendConfig, "wait_ready", wait_ready)
        self.pool = EndpointPool(
            [base_urls] if isinstance(base_urls, str) else list(base_urls),
            cooldown=endpoint_cooldown,
            failures_before_cooldown=failures_before_cooldown,
            clock=clock,
        )
        # A 503 (a model loading) is retried for as long as one request may take.
        self.retry = RetryPolicy(
            max_retries, backoff_base, backoff_max, rng or random.Random(), budget=timeout
        )
        self.model = model
        self.concurrency = concurrency
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.use_n = use_n
        self.wait_ready = wait_ready
        self.requests_made = 0
        self._api_key = api_key if api_key is not None else _env_api_key()
        if self._api_key and any(urlsplit(url).password is not None for url in self.endpoints):
            # aiohttp refuses both ("Cannot combine AUTHORIZATION header with AUTH
            # argument") on every request: say so once, before anything is sent.
            raise ConfigError(
                "a backend URL carries user:password and an API key is set too "
                "(PACORE_API_KEY or OPENAI_API_KEY): give the credentials once"
            )
        self._sleep = sleep
        self._clock = clock
        self._notify = notify
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
            tls.needs_tls(self.endpoints)
            connector = aiohttp.TCPConnector(
                limit=self.concurrency, keepalive_timeout=75, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=headers,
                json_serialize=json.dumps,
            )
            self._slots = asyncio.Semaphore(self.concurrency)
        return self._session, self._slots

    def slots(self) -> asyncio.Semaphore:
        """The concurrency slots this backend's requests hold while on the wire: `pacore
        serve` holds one for each request it passes through too, so that `--concurrency`
        bounds the upstream work of both."""
        return self._ensure_session()[1]

    async def start(self) -> None:
        """Reach every endpoint's `/models`, and learn the model name if none was given.

        A server that is still loading (503, or refusing connections when `wait_ready`
        was given) is waited for, up to `wait_ready` seconds, with a line through
        `notify` (`readiness.ReadyWait`). Raises `ConnectionFailed`
        when no endpoint is ready by then, `AuthenticationError` when one refuses the
        API key, and `ConfigError` when no model was named and none can be discovered.
        """
        session, _ = self._ensure_session()
        limits = aiohttp.ClientTimeout(total=max(self.connect_timeout, 1.0))
        named = self.model is not None
        waiting = ReadyWait(self.wait_ready, clock=self._clock, notify=self._notify)
        while True:
            probes = [await probe_models(session, ep.url, limits) for ep in self.pool.endpoints]
            if any(p.ready(named) for p in probes):
                break
            await self._sleep(waiting.pause(probes))
        waiting.done(probes, named)
        hint = path_hint(probes)
        if hint:  # named a model, so it goes on; a wrong path would fail every request
            lost = ", ".join(p.url for p in probes if p.said.startswith("HTTP 404"))
            self._notify(f"warning: {lost} answered 404 to /models{hint}")
        if named and all(p.state == "listed" and p.models for p in probes):
            listed = sorted({m for p in probes for m in p.models})
            if self.model not in listed:
                shown = ", ".join(listed[:5]) + (", ..." if len(listed) > 5 else "")
                self._notify(
                    f"warning: the server does not list the model {self.model!r} (it lists "
                    f"{shown}); it may refuse it or answer with another model"
                )
        for ep, probe in zip(self.pool.endpoints, probes, strict=True):
            ep.context_window = probe.context_window
            if probe.owner in WHOLE_USAGE_SERVERS:
                ep.whole_usage = True  # no stream needed to learn it (still checked)
            if not probe.answered:
                self.pool.unreachable(ep)
        if self.model is None:
            self.model = next(m for p in probes for m in p.models)

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
        on_text: TextCallback | None = None,
    ) -> list[Completion]:
        """Return `n` completions of `messages`; see `Backend.complete`."""
        if n < 1:
            return []
        self._ensure_session()
        counter = counter if counter is not None else RequestCounter()
        ep = self.pool.pick(affinity=affinity)
        body = request_body(self.name, messages, params)
        if on_text is not None:
            body = streamed(body)
        watch = _Watch(on_tokens, on_text)
        results: list[Completion] = []
        if n > 1 and self.use_n is not False and ep.honours_n is not False and ep.counts_choices:
            try:
                asked = body if ep.whole_usage else streamed(body)
                results = await self._several(ep, asked, n, counter, watch)
            except BackendError as exc:
                return failed_completions(exc, n, endpoint=ep.shown)
            if len(results) == n:
                return results
        missing = n - len(results)
        # Counted now, before the tasks start, so calls picking meanwhile see this load,
        # and released here, even if a task is cancelled before it starts.
        leases = [self.pool.lease(ep, 1) for _ in range(missing)]
        try:
            singles = await asyncio.gather(
                *(
                    self._single(lease, body, params, len(results) + i, counter, watch)
                    for i, lease in enumerate(leases)
                )
            )
        finally:
            for lease in leases:
                lease.release()
        return results + singles

    async def _several(
        self,
        ep: Endpoint,
        body: dict[str, Any],
        n: int,
        counter: RequestCounter,
        watch: _Watch,
        first: int = 0,
    ) -> list[Completion]:
        """Up to `n` choices (samples `first`.. of the call) from requests with `n`, none
        asking for more than `ep` takes: fewer if `ep` ignores `n`, none once it refuses
        even `n=2`; either way it is not asked for several again.

        Split over several requests, a request that fails fails only its own samples.
        """
        sizes = _batch_sizes(n, ep.n_cap)
        if len(sizes) == 1:
            return await self._batch(ep, body, n, first, counter, watch)
        starts = itertools.accumulate(sizes, initial=first)
        parts = await asyncio.gather(
            *(
                self._batch_or_failed(ep, body, size, start, counter, watch)
                for size, start in zip(sizes, starts, strict=False)
            )
        )
        return [c for part in parts for c in part]

    async def _batch_or_failed(
        self,
        ep: Endpoint,
        body: dict[str, Any],
        n: int,
        first: int,
        counter: RequestCounter,
        watch: _Watch,
    ) -> list[Completion]:
        try:
            return await self._batch(ep, body, n, first, counter, watch)
        except BackendError as exc:
            return failed_completions(exc, n, endpoint=ep.shown)

    async def _batch(
        self,
        ep: Endpoint,
        body: dict[str, Any],
        n: int,
        first: int,
        counter: RequestCounter,
        watch: _Watch,
    ) -> list[Completion]:
        """Up to `n` choices from one request with `n`; split further when `ep` refuses
        that many (learning its cap), none when it refuses `n` altogether."""
        try:
            asked = _asking(body, n, first)
            with self.pool.lease(ep, n) as lease:
                got = await self._with_retries(lease, asked, counter, watch.from_sample(first))
        except RequestRejected as exc:
            if not refuses_n(exc):
                raise
            refusal = exc
        else:
            if got:
                ep.honours_n = len(got) >= n
            return got[:n]
        if not _lower_n_cap(ep, n, refusal):
            return []
        return await self._several(ep, body, n, counter, watch, first)

    async def _single(
        self,
        lease: Lease,
        body: dict[str, Any],
        params: SamplingParams,
        index: int,
        counter: RequestCounter,
        watch: _Watch,
    ) -> Completion:
        if params.seed is not None:  # each sample its own seed, or they would all be alike
            body = {**body, "seed": (params.seed + index) % 2**31}
        try:
            got = await self._with_retries(lease, body, counter, watch.from_sample(index))
        except BackendError as exc:
            return failed_completions(exc, 1, endpoint=lease.ep.shown)[0]
        if not got:
            return Completion.failed(
                ServerError("the server returned no choices"), endpoint=lease.ep.shown
            )
        return got[0]

    async def _with_retries(
        self,
        lease: Lease,
        body: dict[str, Any],
        counter: RequestCounter,
        watch: _Watch,
    ) -> list[Completion]:
        """The completions of `body` from `lease`'s endpoint, or from the one it fails
        over to; the lease (the request's samples) moves with it."""
        session, slots = self._ensure_session()
        attempt = 0
        discarded = 0
        started = self._clock()
        while True:
            ep = lease.ep
            async with slots:
                counter.requests += 1
                self.requests_made += 1
                try:
                    counted = await self._send(session, ep, body, watch)
                except BackendError as exc:
                    error = exc
                    discarded += exc.partial_tokens
                else:
                    self.pool.succeeded(ep)
                    if not counted.trusted:
                        self._distrust(ep, body)
                    elif body.get("stream") and len(counted.completions) > 1:
                        ep.whole_usage = not counted.per_choice
                    return with_discarded(counted.completions, discarded)
            delay = self.retry.delay(attempt, error, self._clock() - started)
            if delay is None:
                error.partial_tokens = discarded
                raise error
            self.pool.failed(ep, error)
            # Sleep outside the slot, then fail over if this endpoint is cooling down.
            await self._sleep(delay)
            attempt += 1
            if len(self.pool) > 1 and self.pool.is_down(ep):
                lease.move(self.pool.pick(avoid=ep))

    async def _send(
        self,
        session: aiohttp.ClientSession,
        ep: Endpoint,
        body: dict[str, Any],
        watch: _Watch,
    ) -> Counted:
        limits = aiohttp.ClientTimeout(total=self.timeout, connect=self.connect_timeout)
        try:
            return await post_chat(
                session,
                ep.url,
                body,
                limits,
                watch.on_tokens,
                context_window=ep.context_window,
                on_text=watch.on_text,
            )
        except ContextLengthError as exc:
            if exc.context_window is None:  # the server's message did not say; its list did
                exc.context_window = ep.context_window
            raise

    def _distrust(self, ep: Endpoint, body: dict[str, Any]) -> None:
        """`ep` reported a usage that cannot cover the choices of an `n > 1` answer: ask it
        for one choice per request from now on, where each usage is that choice's."""
        if ep.counts_choices and body.get("n", 1) > 1:
            ep.counts_choices = False
            self._notify(
                f"note: {ep.shown} reported fewer tokens than its {body['n']} choices hold; "
                "its token counts for n > 1 cannot be trusted, so it gets one request per "
                "sample from now on"
            )


@dataclass(frozen=True)
class _Watch:
    """Who follows a call as it streams: its token counts and its text."""

    on_tokens: ProgressCallback | None
    on_text: TextCallback | None

    def from_sample(self, first: int) -> _Watch:
        """The same, for a request whose choice 0 is sample `first` of the call."""
        if self.on_text is None or first == 0:
            return self
        on_text = self.on_text

        def shifted(index: int, kind: TextKind, text: str) -> None:
            on_text(first + index, kind, text)

        return _Watch(self.on_tokens, shifted)


def streamed(body: dict[str, Any]) -> dict[str, Any]:
    """`body` asking for a streamed answer with usage: the one form in which every server
    known reports tokens that cover all the choices of an `n > 1` request."""
    return {**body, "stream": True, "stream_options": {"include_usage": True}}


def with_discarded(completions: list[Completion], discarded: int) -> list[Completion]:
    """`completions` carrying the tokens their lost attempts streamed, split over them."""
    if not discarded or not completions:
        return completions
    shares = split_tokens(discarded, [1] * len(completions))
    return [
        replace(c, usage=replace(c.usage, discarded_tokens=share, estimated=True))
        for c, share in zip(completions, shares, strict=True)
    ]


def failed_completions(exc: BackendError, n: int, *, endpoint: str) -> list[Completion]:
    """`n` failed completions for `exc`, sharing the tokens its attempts streamed."""
    shares = split_tokens(exc.partial_tokens, [1] * n)
    return [Completion.failed(exc, endpoint=endpoint, discarded_tokens=k) for k in shares]


def _batch_sizes(n: int, cap: int | None) -> list[int]:
    """`n` samples as requests of at most `cap` (all in one when there is no cap)."""
    if cap is None or n <= cap:
        return [n]
    return [cap] * (n // cap) + ([n % cap] if n % cap else [])


def _asking(body: dict[str, Any], n: int, first: int) -> dict[str, Any]:
    """`body` asking for `n` choices, for samples `first`.. of the call: a seeded request
    gets its own seed, or its samples would repeat those of the call's first request."""
    asked = {**body, "n": n} if n > 1 else dict(body)
    seed = body.get("seed")
    if first and isinstance(seed, int):
        asked["seed"] = (seed + first) % 2**31
    return asked


def _lower_n_cap(ep: Endpoint, refused: int, error: BackendError) -> bool:
    """Learn from `error`, `ep` refusing `n=refused`, the largest `n` it takes: the bound
    the message names, else half of `refused` (never below 2). Below 2, `n` is off for
    `ep`, and the answer is False."""
    named = n_limit(error)
    if named is not None and named < refused:
        cap = named
    else:
        cap = max(2, refused // 2) if refused > 2 else 1
    if ep.n_cap is not None:
        cap = min(cap, ep.n_cap)
    if cap < 2:
        ep.honours_n = False
        return False
    ep.n_cap = cap
    return True


def _env_api_key() -> str | None:
    for name in API_KEY_ENV:
        value = os.environ.get(name)
        if value:
            return value
    return None
