"""When to try a request again, and what a failed HTTP answer means.

`classify_http_error` turns a non-2xx answer into the typed error of
`pacore.errors` (429 rate limited, 5xx server error, 401/403 authentication,
a context-length 400/413/422, any other 4xx rejected); `RetryPolicy.delay`
says how long to wait before the next attempt, or that there is none.
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

    def __post_init__(self) -> None:
        """Refuse a negative number of retries."""
        if self.max_retries < 0:
            raise ConfigError("max_retries must be >= 0")

    def delay(self, attempt: int, error: BackendError) -> float | None:
        """Seconds to wait after failed attempt `attempt` (0 = the first), or None: give up."""
        if not error.retryable or attempt >= self.max_retries:
            return None
        if error.retry_after is not None:
            return min(error.retry_after, self.max_delay * 4)
        # Full jitter: spreads the retries of requests that failed together.
        cap = min(self.max_delay, self.base * 2**attempt)
        return self.rng.uniform(0.0, cap)


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
        return ContextLengthError(message, status=status)
    return RequestRejected(message, status=status)


def refuses_n(error: BackendError) -> bool:
    """Whether `error` is a server saying it cannot give several choices per request."""
    return (
        type(error) is RequestRejected
        and error.status == 400
        and bool(_N_PATTERNS.search(str(error)))
    )
