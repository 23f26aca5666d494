"""The upstream as itself: plain model names proxied byte for byte, `/models`, `/health`.

One pooled keep-alive `aiohttp` session per app (not the backend's: the two are
sized and closed separately), bounded by the backend's concurrency. Upstreams take
turns. An upstream's 4xx answer goes back as it is; a 5xx, a refused key or a broken
connection becomes 502, a timeout 504.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import orjson

from pacore.backends.openai_compat.endpoints import normalize_base_url
from pacore.backends.openai_compat.wire import describe, error_message
from pacore.serve.errors import ApiError

HOP_HEADERS = {"content-type": "application/json"}


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
    ) -> None:
        self.urls = [normalize_base_url(u) for u in urls]
        self._turns = itertools.cycle(self.urls)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._probe = aiohttp.ClientTimeout(total=min(5.0, timeout))
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The pooled session, opened on first use (on the serving loop)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._concurrency, keepalive_timeout=75)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, auto_decompress=False
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
                data = orjson.loads(await r.read())
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return []
        listed = data.get("data") if isinstance(data, dict) else None
        return [m for m in listed or () if isinstance(m, dict) and isinstance(m.get("id"), str)]

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

    async def open(self, body: bytes) -> aiohttp.ClientResponse:
        """The upstream's answer to `body` (headers read, body not); `ApiError` when
        there is none, or when it is the upstream's own failure."""
        url = next(self._turns)
        try:
            response = await self.session().post(
                f"{url}/chat/completions", data=body, headers=HOP_HEADERS, timeout=self._timeout
            )
        except TimeoutError:
            raise ApiError(504, f"the upstream {url} did not answer in time") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ApiError(502, f"the upstream {url} failed: {describe(exc)}") from None
        if response.status >= 500 or response.status in (401, 403):
            try:
                text = (await response.read()).decode(errors="replace")
            except (aiohttp.ClientError, OSError, TimeoutError):
                text = ""
            finally:
                response.release()
            raise ApiError(
                502, f"the upstream {url} answered {response.status}: {error_message(text)}"
            )
        return response


async def relay(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The bytes of a streamed upstream answer as they arrive; the upstream request is
    closed when this stops, early or not."""
    try:
        async for data in response.content.iter_any():
            yield data
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        error = ApiError(502, f"the upstream stream broke: {describe(exc)}")
        yield b"data: " + orjson.dumps(error.payload()) + b"\n\n"
    finally:
        response.close()
