"""The endpoint pool: which server a call goes to, and which servers sit out a while.

Each call goes to the least-loaded healthy endpoint (ties broken round-robin), and
all the samples of one call stay there so its prompt is cached once. Calls that name
the same `affinity` (one problem's round: its resamples, a pool's chunks) go to the
same endpoint, its prefix cache shared, chosen by rendezvous hashing over the healthy
endpoints (a benched one moves only its own groups), unless that endpoint carries
more than AFFINITY_SLACK samples beyond the least-loaded one. An endpoint
that keeps failing leaves the rotation for a cool-down that doubles with every
further failure (at most five minutes); one success brings it back. A connection
failure takes it out at once, other failures after `failures_before_cooldown`.
What an endpoint supports is learnt from its answers and kept on the endpoint.

Load is counted in samples, whoever sends them: a request for `n` choices holds `n`
on its endpoint from `EndpointPool.lease` until `Lease.release`, a request for one
holds one, and a request that fails over takes its samples with it (`Lease.move`).
The backend and serve's passthrough share one pool, so each sees the other's load.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pacore.core.hashing import stable_hash
from pacore.errors import BackendError, ConfigError, ConnectionFailed
from pacore.redact import redact_url

MAX_COOLDOWN_S = 300.0
AFFINITY_SLACK = 32
"""Samples in flight by which an affinity's endpoint may exceed the least-loaded one
before the call goes to the least-loaded instead."""


def samples_of(n: object) -> int:
    """The samples a request asking for `n` choices counts for: `n`, or one."""
    return n if type(n) is int and n > 1 else 1


def normalize_base_url(url: str) -> str:
    """A base URL as the openai SDK takes it: `/chat/completions` is appended to it."""
    url = url.strip()
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(
            f"backend URL must start with http:// or https://, got {redact_url(url)!r}"
        )
    return url.rstrip("/")


@dataclass
class Endpoint:
    """One server's base URL, its load and health, and what it supports."""

    url: str
    inflight: int = 0
    """Samples now in flight to this endpoint, the backend's and serve's passthrough's
    alike: a request for `n` choices counts `n` (see `Lease`)."""
    consecutive_failures: int = 0
    down_until: float = 0.0
    """Out of rotation until this time of the pool's clock."""
    honours_n: bool | None = None
    """Whether a request with `n=K` gets K choices back; None until a call with n > 1 shows."""
    context_window: int | None = None
    """Its model's context window in tokens, when its `/models` said (at `start()`)."""
    whole_usage: bool = False
    """Whether a streamed `n > 1` answer showed one usage for the whole request (vLLM,
    SGLang, OpenAI): such a server's plain answers count every choice too, so it is asked
    without streaming from then on (its usage still checked). llama.cpp streams a usage
    per choice, and its plain answers count the first choice only: it stays streamed."""
    counts_choices: bool = True
    """Whether its usage for an `n > 1` answer covers every choice; False once one could
    not (see `usage.py`), and then it gets one request per sample."""
    n_cap: int | None = None
    """The largest `n` the endpoint accepts (llama.cpp: its parallel slots), once it has
    refused a larger one; None while no refusal has shown a cap."""

    @property
    def shown(self) -> str:
        """The URL as messages, logs and outputs show it: without its credentials."""
        return redact_url(self.url)


@dataclass
class Lease:
    """The samples of one request, counted on the endpoint the request is on now."""

    ep: Endpoint
    samples: int

    def move(self, target: Endpoint) -> None:
        """The request fails over to `target`: its samples go with it."""
        self.ep.inflight -= self.samples
        target.inflight += self.samples
        self.ep = target

    def release(self) -> None:
        """The request has ended (answered, failed or cancelled); releasing twice is a no-op."""
        self.ep.inflight -= self.samples
        self.samples = 0

    def __enter__(self) -> Lease:
        """The lease itself; released on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Release the samples."""
        self.release()


class EndpointPool:
    """The endpoints of one backend, with the rules for choosing and benching them."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        cooldown: float,
        failures_before_cooldown: int,
        clock: Callable[[], float],
    ) -> None:
        """Endpoints for `urls` (checked and normalised); `clock` tells the time in seconds."""
        if not urls:
            raise ConfigError("at least one backend URL is needed")
        self.endpoints = [Endpoint(normalize_base_url(u)) for u in urls]
        self.cooldown = cooldown
        self.failures_before_cooldown = failures_before_cooldown
        self._clock = clock
        self._turn = 0

    def pick(self, avoid: Endpoint | None = None, affinity: str | None = None) -> Endpoint:
        """The healthy endpoint other than `avoid` (unless it is the only one) for a call:
        `affinity`'s own one, else (or when that one is far busier) the least loaded."""
        now = self._clock()
        candidates = [ep for ep in self.endpoints if ep is not avoid] or list(self.endpoints)
        healthy = [ep for ep in candidates if ep.down_until <= now]
        if not healthy:
            # Everything is cooling down: try the one that comes back first.
            return min(candidates, key=lambda ep: ep.down_until)
        self._turn += 1
        count = len(self.endpoints)
        least = min(
            healthy,
            key=lambda ep: (ep.inflight, (self.endpoints.index(ep) - self._turn) % count),
        )
        if affinity is None or len(healthy) == 1:
            return least
        own = max(healthy, key=lambda ep: stable_hash("affinity", affinity, ep.url))
        return own if own.inflight <= least.inflight + AFFINITY_SLACK else least

    @staticmethod
    def lease(ep: Endpoint, samples: int) -> Lease:
        """`samples` counted on `ep` from now until the lease is released."""
        ep.inflight += samples
        return Lease(ep, samples)

    def failed(self, ep: Endpoint, error: BackendError) -> None:
        """Count a failed request; bench `ep` when it has failed often enough."""
        ep.consecutive_failures += 1
        threshold = 1 if isinstance(error, ConnectionFailed) else self.failures_before_cooldown
        if ep.consecutive_failures >= threshold and len(self.endpoints) > 1:
            strikes = ep.consecutive_failures - threshold
            ep.down_until = self._clock() + min(self.cooldown * 2**strikes, MAX_COOLDOWN_S)

    @staticmethod
    def succeeded(ep: Endpoint) -> None:
        """A request to `ep` got its answer: it is healthy again."""
        ep.consecutive_failures = 0
        ep.down_until = 0.0

    def unreachable(self, ep: Endpoint) -> None:
        """`ep` did not answer the preflight: bench it for one cool-down."""
        ep.down_until = self._clock() + self.cooldown

    def is_down(self, ep: Endpoint) -> bool:
        """Whether `ep` is out of rotation now."""
        return ep.down_until > self._clock()

    def __len__(self) -> int:
        """How many endpoints the pool has."""
        return len(self.endpoints)
