"""The exceptions pacore raises, as one small tree.

    PacoreError                 anything pacore raises on purpose
    ├── ConfigError             bad user input: widths, presets, files, questions
    └── BackendError            a model server or the embedded model failed
        ├── ConnectionFailed    could not reach the server, or the connection broke (retried)
        ├── RequestTimeout      no full answer within the per-request timeout (retried)
        ├── RateLimited         HTTP 429 (retried, honouring Retry-After)
        ├── ServerError         HTTP 5xx (retried)
        └── RequestRejected     HTTP 4xx other than 429 (not retried)
            ├── ContextLengthError   the prompt does not fit the model's context
            └── AuthenticationError  HTTP 401/403

`BackendError.retryable` says whether a retry could help. The CLI turns every
`PacoreError` into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations


class PacoreError(Exception):
    """Base of every error pacore raises on purpose."""


class ConfigError(PacoreError, ValueError):
    """The user asked for something invalid (widths, preset, input file, question)."""


class BackendError(PacoreError):
    """A request to a model backend failed."""

    retryable = False

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ConnectionFailed(BackendError):
    retryable = True


class RequestTimeout(BackendError):
    retryable = True


class RateLimited(BackendError):
    retryable = True


class ServerError(BackendError):
    retryable = True


class RequestRejected(BackendError):
    """The server refused the request as malformed; retrying the same request cannot help."""


class ContextLengthError(RequestRejected):
    """The prompt plus `max_tokens` exceeds the model's context window."""


class AuthenticationError(RequestRejected):
    """The server refused the API key (HTTP 401 or 403)."""
