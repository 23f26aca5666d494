"""The upstream as itself: plain model names proxied byte for byte, `/models`, `/health`.

One pooled keep-alive `aiohttp` session per app (not the backend's: the two are
sized and closed separately); each request holds one of the backend's concurrency
slots while on the wire, so `--concurrency` bounds the engine's requests and the
passed-through ones together. Requests go to
the least-loaded healthy upstream of the endpoint pool, which is the backend's own
when it has one (`EndpointPool`: load counted in samples, so the engine's requests
and passed-through ones see each other); a request's samples count on its upstream
until its answer has been read or relayed. An upstream that refuses the connection
is benched and the request tried on the next one (nothing was sent yet). An
upstream's 4xx answer goes back with its status and `Retry-After` (its body in
OpenAI's error shape: wrapped when it was not); a 5xx, a refused key or a broken
connection becomes 502, a timeout 504, before the headers or after them (an upstream
that sends its headers and then stalls): a whole answer as an error answer, a stream
as an error event and `[DONE]`, after the last whole event relayed. Every message
names the upstream by `Endpoint.shown`, its URL without credentials. The bodies are
relayed unread (a stream cut at its event boundaries): only `/models` is parsed, by
the wire layer (`listed_models`), and an error body that is not OpenAI's shape is
wrapped in it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson

from pacore.backends.openai_compat import tls
from pacore.backends.openai_compat.endpoints import EndpointPool, Lease, samples_of
from pacore.backends.openai_compat.tls import aiohttp
from pacore.backends.openai_compat.wire import (
    describe,
    error_message,
    is_error_object,
    listed_models,
)
from pacore.errors import ConnectionFailed, ServerError
from pacore.serve.errors import ApiError

HOP_HEADERS = {"content-type": "application/json"}
KEPT_HEADERS = frozenset(("retry-after",))
"""The upstream's answer headers sent on to the client."""
HELD_BYTES = 1 << 20
"""The most of an unfinished stream event held back before it is relayed anyway."""


def event_end(data: bytearray, start: int = 0) -> int:
    """Where the last complete server-sent event in `data` ends (its blank line looked
    for from `start`); 0 when none does."""
    lf, crlf = data.rfind(b"\n\n", start), data.rfind(b"\r\n\r\n", start)
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def error_answer(status: int, body: bytes) -> bytes:
    """An upstream's error body as OpenAI's error object: as it is when it is one, else
    its text wrapped (a proxy's plain-text 413 reached clients labelled as JSON)."""
    if is_error_object(body):
        return body
    text = body.decode("utf-8", errors="replace")
    return orjson.dumps(
        ApiError(status, f"the upstream answered {status}: {error_message(text)}").payload()
    )


class Slot:
    """One of the backend's concurrency slots, held by a passed-through request while it
    is on the wire; released once however many ways the request ends."""

    def __init__(self, slots: asyncio.Semaphore | None) -> None:
        self._slots = slots
        self._held = False

    async def take(self) -> None:
        """Wait for a slot (none to take without a backend's slots)."""
        if self._slots is not None:
            await self._slots.acquire()
            self._held = True

    def release(self) -> None:
        """Give the slot back (once)."""
        if self._held and self._slots is not None:
            self._held = False
            self._slots.release()


class Passage:
    """One upstream answer on its way back; its samples count on its upstream, and its
    concurrency slot stays taken, until it has been read (`read`), relayed (`relay`) or
    dropped (`close`)."""

    def __init__(
        self, response: aiohttp.ClientResponse, lease: Lease, timeout: float, slot: Slot
    ) -> None:
        self._response = response
        self._lease = lease
        self._timeout = timeout
        self._slot = slot
        self.failure: ApiError | None = None
        """Why a relayed stream ended early (sent to the client as an error event)."""

    @property
    def status(self) -> int:
        """The upstream's HTTP status."""
        return self._response.status

    async def read(self) -> bytes:
        """The whole body; the connection goes back to the pool. `ApiError` 504 when it
        does not arrive in time, 502 when the connection breaks."""
        try:
            return await self._response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._broken(exc) from None
        finally:
            self._response.release()
            self._lease.release()
            self._slot.release()

    @property
    def headers(self) -> dict[str, str]:
        """The upstream's headers a client acts on (`Retry-After`), to send on with its
        answer."""
        return {k: v for k, v in self._response.headers.items() if k.lower() in KEPT_HEADERS}

    async def relay(self) -> AsyncIterator[bytes]:
        """The bytes of a streamed answer as they arrive, whole events at a time; the
        upstream request is closed when this stops, early or not.

        An answer that breaks off mid-event loses that event's first part: the error
        event and `[DONE]` then start on an event boundary (glued to half an event,
        they were one line of broken JSON for the client)."""
        held = bytearray()
        try:
            async for data in self._response.content.iter_any():
                searched = max(0, len(held) - 3)  # a separator may straddle two reads
                held += data
                end = event_end(held, searched)
                if end:
                    yield bytes(held[:end])
                    del held[:end]
                elif len(held) > HELD_BYTES:  # no event ends: relay it anyway, bounded
                    yield bytes(held)
                    held.clear()
            if held:
                yield bytes(held)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.failure = self._broken(exc)
            yield b"data: " + orjson.dumps(self.failure.payload()) + b"\n\ndata: [DONE]\n\n"
        finally:
            self.close()

    def _broken(self, exc: BaseException) -> ApiError:
        """The answer to an upstream answer that stopped part way."""
        url = self._lease.ep.shown
        if isinstance(exc, TimeoutError):
            return ApiError(
                504, f"the upstream {url} did not finish its answer within {self._timeout:g}s"
            )
        return ApiError(502, f"the upstream {url} broke off its answer: {describe(exc)}")

    def close(self) -> None:
        """Drop the answer (unread parts included)."""
        self._response.close()
        self._lease.release()
        self._slot.release()


class Upstream:
    """The upstream servers for passthrough requests, the model list and health checks."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        api_key: str | None,
        timeout: float,
        concurrency: int,
        connect_timeout: float = 10.0,
        pool: EndpointPool | None = None,
        slots: Callable[[], asyncio.Semaphore] | None = None,
    ) -> None:
        """Passthrough to `urls`; `pool` is the backend's endpoint pool for them, when
        there is one to share (else the upstream keeps its own), and `slots` the
        backend's concurrency slots (each passed-through request holds one on the
        wire: `--concurrency` bounds both kinds of request together)."""
        self._slots = slots
        self.pool = pool or EndpointPool(
            urls, cooldown=5.0, failures_before_cooldown=3, clock=time.monotonic
        )
        self.urls = [ep.url for ep in self.pool.endpoints]
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._probe = aiohttp.ClientTimeout(total=min(5.0, timeout))
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The pooled session, opened on first use (on the serving loop)."""
        if self._session is None or self._session.closed:
            tls.needs_tls(self.urls)
            connector = aiohttp.TCPConnector(limit=self._concurrency, keepalive_timeout=75)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                auto_decompress=False,
            )
        return self._session

    async def aclose(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def models(self) -> list[dict[str, Any]]:
        """The first upstream's model list (empty when it cannot be read)."""
        try:
            async with self.session().get(f"{self.urls[0]}/models", timeout=self._probe) as r:
                if r.status != 200:
                    return []
                body = await r.read()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return []
        return listed_models(body) or []

    async def healthy(self) -> bool:
        """Whether some upstream answers `/models` with 200."""
        for url in self.urls:
            try:
                async with self.session().get(f"{url}/models", timeout=self._probe) as r:
                    if r.status == 200:
                        return True
            except (aiohttp.ClientError, OSError, TimeoutError):
                continue
        return False

    async def open(self, body: bytes, n: object = None) -> Passage:
        """The upstream's answer to `body`, a request for `n` choices (headers read, body
        not); `ApiError` when there is none, or when it is the upstream's own failure."""
        slot = Slot(self._slots() if self._slots is not None else None)
        await slot.take()
        lease = self.pool.lease(self.pool.pick(), samples_of(n))
        try:
            response = await self._post(lease, body)
        except BaseException:
            lease.release()
            slot.release()
            raise
        url = lease.ep.shown
        if response.status >= 500 or response.status in (401, 403):
            try:
                text = (await response.read()).decode(errors="replace")
            except (aiohttp.ClientError, OSError, TimeoutError):
                text = ""
            finally:
                response.release()
                lease.release()
                slot.release()
            if response.status >= 500:
                self.pool.failed(lease.ep, ServerError(text, status=response.status))
            raise ApiError(
                502, f"the upstream {url} answered {response.status}: {error_message(text)}"
            )
        self.pool.succeeded(lease.ep)
        return Passage(response, lease, self._timeout.total or 0.0, slot)

    async def _post(self, lease: Lease, body: bytes) -> aiohttp.ClientResponse:
        """POST `body` to the lease's upstream; one that cannot be reached is benched and
        the next one tried (the lease moving with it), until each has been tried once."""
        tried = 0
        while True:
            target, url = lease.ep.url, lease.ep.shown
            try:
                return await self.session().post(
                    f"{target}/chat/completions",
                    data=body,
                    headers=HOP_HEADERS,
                    timeout=self._timeout,
                )
            except TimeoutError:
                raise ApiError(504, f"the upstream {url} did not answer in time") from None
            except aiohttp.ClientConnectorError as exc:
                if tls.loaded_late(exc):
                    continue  # redirected to https before the CA bundle was loaded
                failure = ConnectionFailed(f"{url}: {describe(exc)}")
                self.pool.failed(lease.ep, failure)
                tried += 1
                if tried >= len(self.pool):
                    raise ApiError(502, f"the upstream {url} failed: {describe(exc)}") from None
                lease.move(self.pool.pick(avoid=lease.ep))
            except (aiohttp.ClientError, OSError) as exc:
                raise ApiError(502, f"the upstream {url} failed: {describe(exc)}") from None
