"""The retry policy and the classification of HTTP errors, without a server."""

from __future__ import annotations

import email.utils
import random
import time

import pytest

from pacore.backends.openai_compat.retry import (
    RetryPolicy,
    classify_http_error,
    n_limit,
    parse_retry_after,
    refuses_n,
)
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


class Extremes(random.Random):
    """Jitter that always draws the top (or bottom) of its range."""

    def __init__(self, *, top: bool) -> None:
        """Draw the top of every range when `top`, else the bottom."""
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        """`b` or `a`, never anything between."""
        return b if self.top else a


def test_delay_doubles_up_to_the_cap() -> None:
    """Attempt k waits up to base * 2**k, capped at max_delay; the draw is full jitter."""
    top = RetryPolicy(max_retries=6, base=1.0, max_delay=6.0, rng=Extremes(top=True))
    bottom = RetryPolicy(max_retries=6, base=1.0, max_delay=6.0, rng=Extremes(top=False))
    error = ServerError("HTTP 500")
    assert [top.delay(k, error) for k in range(5)] == [1.0, 2.0, 4.0, 6.0, 6.0]
    assert [bottom.delay(k, error) for k in range(5)] == [0.0] * 5


def test_delay_draws_within_the_cap() -> None:
    """With a real generator every wait lies in [0, cap]."""
    policy = RetryPolicy(max_retries=100, base=0.5, max_delay=3.0, rng=random.Random(1))
    waits = [policy.delay(k % 8, RateLimited("429")) for k in range(100)]
    assert all(
        w is not None and 0.0 <= w <= min(3.0, 0.5 * 2 ** (k % 8)) for k, w in enumerate(waits)
    )
    assert len(set(waits)) > 50  # jittered, not fixed


def test_delay_honours_retry_after_within_reason() -> None:
    """`Retry-After` replaces the drawn wait, up to four times max_delay."""
    policy = RetryPolicy(max_retries=3, base=1.0, max_delay=10.0, rng=Extremes(top=True))
    assert policy.delay(0, RateLimited("429", retry_after=7.0)) == 7.0
    assert policy.delay(2, ServerError("503", retry_after=0.0)) == 0.0
    assert policy.delay(0, RateLimited("429", retry_after=3600.0)) == 40.0


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (ServerError("HTTP 502"), True),
        (RateLimited("HTTP 429"), True),
        (ConnectionFailed("reset"), True),
        (RequestTimeout("slow"), True),
        (BackendError("embedded model failed"), True),
        (RequestRejected("HTTP 400"), False),
        (ContextLengthError("too long"), False),
        (AuthenticationError("HTTP 401"), False),
        (ServerError("HTTP 500", retryable=False), False),
        (RequestRejected("HTTP 409", retryable=True), True),
    ],
)
def test_delay_gives_up_on_what_cannot_succeed(error: BackendError, retry: bool) -> None:
    """Only retryable errors (class default or per error) get a wait."""
    policy = RetryPolicy(max_retries=1, rng=Extremes(top=True))
    assert (policy.delay(0, error) is not None) is retry


def test_delay_gives_up_after_max_retries() -> None:
    """Attempts 0..max_retries-1 may be retried; the last one may not."""
    policy = RetryPolicy(max_retries=2, rng=Extremes(top=False))
    assert [policy.delay(k, ServerError("x")) for k in range(3)] == [0.0, 0.0, None]
    assert RetryPolicy(max_retries=0).delay(0, ServerError("x")) is None
    with pytest.raises(ConfigError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_a_loading_server_is_retried_past_the_count_within_the_budget() -> None:
    """A 503 goes on past max_retries while `elapsed` is under the budget, never past it."""
    policy = RetryPolicy(max_retries=2, base=1.0, max_delay=8.0, rng=Extremes(top=True), budget=60)
    loading = classify_http_error(503, '{"error": {"message": "Loading model"}}', None)
    assert [policy.delay(k, loading, elapsed=10.0) for k in range(6)] == [1, 2, 4, 8, 8, 8]
    assert policy.delay(9, loading, elapsed=55.0) == 5.0  # the wait stops at the budget
    assert policy.delay(9, loading, elapsed=60.0) is None
    assert policy.delay(2, loading) is None  # no elapsed time given: the count alone
    assert policy.delay(2, ServerError("HTTP 500", status=500), elapsed=1.0) is None
    assert RetryPolicy(max_retries=2).delay(2, loading, elapsed=0.0) is None  # no budget
    assert RetryPolicy(max_retries=0, budget=60).delay(0, loading, elapsed=0.0) is None
    told = ServerError("HTTP 503", status=503, retry_after=3.0)
    assert policy.delay(40, told, elapsed=10.0) == 3.0  # Retry-After, at any attempt


def test_the_largest_n_a_refusal_names() -> None:
    """llama.cpp names its cap ("<= value <= 4"); other wordings too; none is None."""
    llama = '{"error": {"message": "Field \'n\': Value must be between 1 <= value <= 4"}}'
    error = classify_http_error(400, llama, None)
    assert refuses_n(error)
    assert n_limit(error) == 4
    assert n_limit(RequestRejected("HTTP 400: n must be at most 8")) == 8
    assert n_limit(RequestRejected("HTTP 400: 'n' must be between 1 and 16")) == 16
    assert n_limit(RequestRejected("HTTP 400: Field 'n': Value is out of range")) is None
    assert n_limit(RequestRejected("HTTP 400: n > 1 is not supported")) is None


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, "{}", RateLimited),
        (500, "oops", ServerError),
        (502, "bad gateway", ServerError),
        (503, '{"error": {"message": "overloaded"}}', ServerError),
        (401, "", AuthenticationError),
        (403, '{"error": "forbidden"}', AuthenticationError),
        (400, '{"error": {"message": "Input length 9000 exceeds the context window"}}',
         ContextLengthError),
        (400, '{"error": {"code": "context_length_exceeded", "message": "too long"}}',
         ContextLengthError),
        (400, "This model's maximum context length is 4096 tokens.", ContextLengthError),
        (413, "prompt is too long", ContextLengthError),
        (422, '{"detail": "input is too long"}', ContextLengthError),
        (400, '{"error": {"message": "temperature must be > 0"}}', RequestRejected),
        (404, '{"error": {"message": "model not found"}}', RequestRejected),
        (409, "too many tokens", RequestRejected),
    ],
)  # fmt: skip
def test_classification_table(status: int, body: str, kind: type[BackendError]) -> None:
    """Each status (and for 4xx the body) maps to one typed error carrying the status."""
    error = classify_http_error(status, body, None)
    assert type(error) is kind
    assert error.status == status
    assert str(error).startswith(f"HTTP {status}: ")


def test_classification_keeps_the_message_and_retry_after() -> None:
    """The server's own message is kept; Retry-After travels with 429 and 5xx only."""
    other = classify_http_error(400, '{"error": {"message": "temperature must be > 0"}}', 5.0)
    assert "temperature must be > 0" in str(other)
    assert other.retry_after is None
    assert not other.retryable
    assert classify_http_error(429, "{}", 2.0).retry_after == 2.0
    assert classify_http_error(503, "{}", 1.5).retry_after == 1.5
    assert len(str(classify_http_error(500, "x" * 5000, None))) < 400


def test_retry_after_header_forms() -> None:
    """Seconds or an HTTP date; anything else is ignored."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    waited = parse_retry_after(later)
    assert waited is not None
    assert 55.0 <= waited <= 60.0


def test_refusal_of_n_is_recognised() -> None:
    """A plain 400 about `n` means the server cannot give several choices; nothing else does."""
    assert refuses_n(
        classify_http_error(400, '{"error": {"message": "n > 1 is not supported"}}', None)
    )
    assert refuses_n(classify_http_error(400, "'n' must be 1", None))
    assert not refuses_n(classify_http_error(400, "temperature must be > 0", None))
    assert not refuses_n(classify_http_error(422, "n must be 1", None))
    assert not refuses_n(classify_http_error(400, "n: context length exceeded", None))
