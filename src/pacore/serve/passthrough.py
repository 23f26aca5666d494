"""The upstream as itself: plain model names proxied byte for byte, `/models`, `/health`.

One pooled keep-alive `aiohttp` session per app (not the backend's: the two are
sized and closed separately), bounded by the backend's concurrency. Requests go to
the least-loaded healthy upstream of the endpoint pool, which is the backend's own
when it has one (`EndpointPool`: load counted in samples, so the engine's requests
and passed-through ones see each other); a request's samples count on its upstream
until its answer has been read or relayed. An upstream that refuses the connection
is benched and the request tried on the next one (nothing was sent yet). An
upstream's 4xx answer goes back as it is; a 5xx, a refused key or a broken
connection becomes 502, a timeout 504, before the headers or after them (an upstream
that sends its headers and then stalls): a whole answer as an error answer, a stream
as an error event. Every message names the upstream by `Endpoint.shown`, its URL
without credentials. The bodies are relayed unread: only `/models` is parsed, by the
wire layer (`listed_models`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from pacore.backends.openai_compat import tls
from pacore.backends.openai_compat.endpoints import EndpointPool, Lease, samples_of
from pacore.backends.openai_compat.tls import aiohttp
from pacore.backends.openai_compat.wire import describe, error_message, listed_models
from pacore.errors import ConnectionFailed, ServerError
from pacore.serve.errors import ApiError

HOP_HEADERS = {"content-type": "application/json"}


class Passage:
    """One upstream answer on its way back; its samples count on its upstream until it
    has been read (`read`), relayed (`relay`) or dropped (`close`)."""

    def __init__(self, response: aiohttp.ClientResponse, lease: Lease, timeout: float) -> None:
        self._response = response
        self._lease = lease
        self._timeout = timeout
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

    async def relay(self) -> AsyncIterator[bytes]:
        """The bytes of a streamed answer as they arrive; the upstream request is closed
        when this stops, early or not."""
        try:
            async for data in self._response.content.iter_any():
                yield data
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.failure = self._broken(exc)
            yield b"data: " + orjson.dumps(self.failure.payload()) + b"\n\n"
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
    ) -> None:
        """Passthrough to `urls`; `pool` is the backend's endpoint pool for them, when
        there is one to share (else the upstream keeps its own)."""
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
        lease = self.pool.lease(self.pool.pick(), samples_of(n))
        try:
            response = await self._post(lease, body)
        except BaseException:
            lease.release()
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
            if response.status >= 500:
                self.pool.failed(lease.ep, ServerError(text, status=response.status))
            raise ApiError(
                502, f"the upstream {url} answered {response.status}: {error_message(text)}"
            )
        self.pool.succeeded(lease.ep)
        return Passage(response, lease, self._timeout.total or 0.0)

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
