"""Who gets in, and how much: bearer keys, the body-size cap, and admission.

Admission counts requests in progress, per key (when keys are configured) and over
the whole server (the queue); a request over either gets 429 at once rather than
waiting, so a client's retry policy decides what happens next. The upstream work
of admitted requests is bounded separately, by the backend's `--concurrency`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from starlette.requests import ClientDisconnect, Request

from pacore.errors import ConfigError
from pacore.serve.errors import ApiError

KEYS_ENV = "PACORE_SERVE_API_KEYS"
BODY_NEVER_CAME = 499
"""The status logged for a request whose body never came in whole (nginx's 499: the
client closed the connection, or the edge did, for a body sent too slowly)."""


def keys_from(flags: Collection[str], environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The accepted keys: every `--api-key`, plus the comma-separated `PACORE_SERVE_API_KEYS`.

    An empty key fails closed: `--api-key ""` (an unset shell variable) or the variable
    set to nothing but commas and blanks is a ConfigError, never a server open to all.
    """
    if any(not k.strip() for k in flags):
        raise ConfigError("--api-key is empty: give the key itself (is its variable set?)")
    raw = environ.get(KEYS_ENV)
    from_env = [k.strip() for k in (raw or "").split(",")]
    if raw is not None and not any(from_env):
        raise ConfigError(f"{KEYS_ENV} is set but holds no key")
    keys = [k for k in (*(f.strip() for f in flags), *from_env) if k]
    return tuple(dict.fromkeys(keys))


def key_id(key: str) -> str:
    """A short, stable name for a key in logs and limits; never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class Gate:
    """Checks the bearer key of each request against the configured keys."""

    def __init__(self, keys: Collection[str]) -> None:
        self._keys = [k.encode() for k in keys]

    @property
    def open(self) -> bool:
        """Whether every request gets in (no keys configured)."""
        return not self._keys

    def check(self, request: Request) -> str:
        """The id of the request's key (`-` when the gate is open); `ApiError` 401 otherwise."""
        if not self._keys:
            return "-"
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "a bearer API key is required", code="invalid_api_key")
        given = token.encode()
        # Compared against every key, each in constant time.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise ApiError(401, "the API key is not valid", code="invalid_api_key")
        return key_id(token)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or `ApiError` 413 as soon as it is known to exceed `limit` bytes
    (499 if the connection closes first)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body is over this server's limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the body is over this server's limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # it left, or the edge closed it for sending too slowly
        raise ApiError(BODY_NEVER_CAME, "the client left before its body was in") from None
    return b"".join(chunks)


@dataclass
class Admission:
    """Requests in progress, per key and in all; `enter` admits one or answers 429."""

    per_key: int
    queue: int
    total: int = 0
    by_key: dict[str, int] = field(default_factory=dict)

    def enter(self, key: str) -> Ticket:
        """Admit a request of `key`; release it with `Ticket.leave()`."""
        if self.total >= self.queue:
            raise ApiError(
                429, f"the server is busy ({self.queue} requests in progress); retry later"
            )
        held = self.by_key.get(key, 0)
        if key != "-" and held >= self.per_key:
            raise ApiError(429, f"this API key already has {self.per_key} requests in progress")
        self.total += 1
        self.by_key[key] = held + 1
        return Ticket(self, key)


class Ticket:
    """One admitted request; `leave()` (idempotent) frees its place."""

    def __init__(self, admission: Admission, key: str) -> None:
        self._admission = admission
        self._key = key
        self._left = False

    def leave(self) -> None:
        """Free the place (again: no effect)."""
        if self._left:
            return
        self._left = True
        a = self._admission
        a.total -= 1
        left = a.by_key[self._key] - 1
        if left:
            a.by_key[self._key] = left
        else:
            del a.by_key[self._key]
