"""When to try a request again, and what a failed HTTP answer means.

`classify_http_error` turns a non-2xx answer into the typed error of
`pacore.errors` (429 rate limited, 5xx server error, 401/403 authentication,
a context-length 400/413/422, any other 4xx rejected); `RetryPolicy.delay`
says how long to wait before the next attempt, or that there is none. A 503
(a server still loading or reloading its model) is retried past `max_retries`
for as long as the request's time budget lasts. `refuses_n` and `n_limit` read
a server's refusal of `n > 1`, and the largest `n` it names.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from dataclasses import dataclass, field

from pacore.backends.openai_compat.wire import error_message
from pacore.config import BackendConfig
from pacore.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    ContextLengthError,
    PayloadTooLarge,
    RateLimited,
    RequestRejected,
    ServerError,
)

_CONTEXT_PATTERNS = re.compile(
    r"context length|context window|context size|context_length|maximum context|"
    r"too many tokens|prompt is too long|exceeds the (?:available )?context|"
    r"input is too long|reduce the length",
    re.IGNORECASE,
)
_N_PATTERNS = re.compile(r"\bn\b|\bn\s*[<>=]|'n'|\"n\"|multiple choices", re.IGNORECASE)
_N_LIMIT = re.compile(
    r"(?:<=?|≤|at most|up to|maximum(?: value)?(?: of| is)?|between \d+ and)\s*(\d+)",
    re.IGNORECASE,
)
UNAVAILABLE = 503
"""The status of a server that is up but not serving yet (loading or reloading a model)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, honouring `Retry-After`."""

    max_retries: int = BackendConfig.retries
    """Attempts after the first one."""
    base: float = BackendConfig.backoff
    """The cap of the first wait, in seconds; each further attempt doubles it."""
    max_delay: float = 30.0
    """The largest cap of a drawn wait; a server's `Retry-After` may ask up to 4x this."""
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    """Draws the jitter (pass a seeded or fake one in tests)."""
    budget: float = 0.0
    """Seconds, counted from a request's first attempt, for which a 503 (the server is
    loading its model) keeps being retried past `max_retries`; 0: never past them.
    `max_retries=0` still means no retry at all."""

    def __post_init__(self) -> None:
        """Refuse a negative number of retries."""
        if self.max_retries < 0:
            raise ConfigError("max_retries must be >= 0")

    def delay(
        self, attempt: int, error: BackendError, elapsed: float | None = None
    ) -> float | None:
        """Seconds to wait after failed attempt `attempt` (0 = the first), or None: give up.

        `elapsed` is the time already spent on the request (its attempts and waits).
        Given it, a 503 is retried past `max_retries` while it stays within `budget`,
        so a request outlasts a model reload; a wait never overshoots the budget then.
        """
        if not error.retryable:
            return None
        overtime = attempt >= self.max_retries
        if overtime and not self._outlasts(error, elapsed):
            return None
        if error.retry_after is not None:
            wait = min(error.retry_after, self.max_delay * 4)
        else:
            # Full jitter: spreads the retries of requests that failed together.
            cap = min(self.max_delay, self.base * 2 ** min(attempt, 32))
            wait = self.rng.uniform(0.0, cap)
        if overtime and elapsed is not None:
            wait = min(wait, self.budget - elapsed)
        return wait

    def _outlasts(self, error: BackendError, elapsed: float | None) -> bool:
        """Whether a 503 may be retried once more, `elapsed` seconds into its request."""
        if self.max_retries == 0 or error.status != UNAVAILABLE:
            return False
        return elapsed is not None and elapsed < self.budget


def parse_retry_after(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or HTTP date), or None."""
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


def classify_http_error(status: int, body: str, retry_after: float | None) -> BackendError:
    """The typed error of a non-2xx response."""
    message = f"HTTP {status}: {error_message(body)}"
    if status == 429:
        return RateLimited(message, status=status, retry_after=retry_after)
    if status >= 500:
        return ServerError(message, status=status, retry_after=retry_after)
    if status in (401, 403):
        return AuthenticationError(message, status=status)
    if status in (400, 413, 422) and _CONTEXT_PATTERNS.search(body):
        requested, window = context_sizes(body)
        return ContextLengthError(
            message, status=status, requested_tokens=requested, context_window=window
        )
    if status == 413:  # the body's size: the same input is refused every time
        return PayloadTooLarge(message, status=status)
    return RequestRejected(message, status=status)


def n_limit(error: BackendError) -> int | None:
    """The largest `n` a refusal of `n` names (llama.cpp: "... <= value <= 4"), or None."""
    bounds = [int(m) for m in _N_LIMIT.findall(str(error))]
    return max(bounds) if bounds else None


_WINDOW = re.compile(
    r"(?:maximum context length is|available context size \(|context window (?:is|of)|"
    r"n_ctx[ =:]+)\s*(\d+)",
    re.IGNORECASE,
)
_REQUESTED = re.compile(
    r"(?:request \(|requested |resulted in |has |contains |prompt \()(\d+) (?:input )?tokens",
    re.IGNORECASE,
)


def context_sizes(body: str) -> tuple[int | None, int | None]:
    """The tokens requested and the context window a context-length error names, if any.

    llama.cpp: "request (5000 tokens) exceeds the available context size (4096 tokens)";
    vLLM and OpenAI: "maximum context length is 4096 tokens. However, you requested 5000
    tokens ..." (or "your messages resulted in 5000 tokens").
    """
    requested, window = _REQUESTED.search(body), _WINDOW.search(body)
    return (
        int(requested.group(1)) if requested else None,
        int(window.group(1)) if window else None,
    )


def refuses_n(error: BackendError) -> bool:
    """Whether `error` is a server saying it cannot give several choices per request."""
    return (
        type(error) is RequestRejected
        and error.status == 400
        and bool(_N_PATTERNS.search(str(error)))
    )
