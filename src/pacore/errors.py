"""The exceptions pacore raises, as one small tree.

    PacoreError                 anything pacore raises on purpose
    ├── ConfigError             bad user input: widths, presets, files, questions
    │   └── InvalidSetting      one config field out of its bounds (names the field)
    ├── StorageError            an output could not be written (a full disk, say)
    └── BackendError            a model server or the embedded model failed
        ├── ConnectionFailed    could not reach the server, or the connection broke (retried)
        ├── RequestTimeout      no full answer within the per-request timeout (retried)
        ├── RateLimited         HTTP 429 (retried, honouring Retry-After)
        ├── ServerError         HTTP 5xx (retried)
        │   └── MalformedReply  a 200 that breaks the reply format (retried; names the field)
        └── RequestRejected     HTTP 4xx other than 429 (not retried)
            ├── ContextLengthError   the prompt does not fit the model's context
            │   └── PayloadTooLarge  HTTP 413: the request is larger than the server takes
            └── AuthenticationError  HTTP 401/403

`BackendError.retryable` says whether a retry could help: it is a class default
(false for `RequestRejected` and below, true otherwise) that one error may override,
and a failed `Completion` carries it on. The CLI turns every
`PacoreError` into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations


def one_line(text: str, limit: int = 500) -> str:
    """`text` as one line (runs of whitespace, newlines included, become one space), cut to
    `limit` characters: a server's multi-line error page must not break a record or a log."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class PacoreError(Exception):
    """Base of every error pacore raises on purpose."""


class ConfigError(PacoreError, ValueError):
    """The user asked for something invalid (widths, preset, input file, question)."""


class InvalidSetting(ConfigError):
    """A config field is out of its bounds; `setting` names the field."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


class StorageError(PacoreError):
    """Writing an output failed part way (a full disk, a file made read-only); what was
    written before stays valid and a rerun resumes from it."""


class BackendError(PacoreError):
    """A request to a model backend failed."""

    retryable: bool = True
    """Whether trying again could help. A class default (no for a refused request, yes
    otherwise) that one error may override: `BackendError(msg, retryable=False)`."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        partial_tokens: int = 0,
    ) -> None:
        """An error saying `message`; `retryable` overrides the class default."""
        super().__init__(message)
        self.partial_tokens = partial_tokens
        """Tokens the failed request had streamed before it failed (lost, but spent)."""
        self.status: int | None = status
        """The HTTP status of the answer, when there was one."""
        self.retry_after: float | None = retry_after
        """Seconds the server asked us to wait before trying again (`Retry-After`)."""
        if retryable is not None:
            self.retryable = retryable


class ConnectionFailed(BackendError):
    """The server could not be reached, or the connection broke mid-answer."""


class RequestTimeout(BackendError):
    """No complete answer within the per-request timeout."""


class RateLimited(BackendError):
    """HTTP 429: the server asks us to slow down."""


class ServerError(BackendError):
    """HTTP 5xx, or a 200 whose body is not a chat completion."""


class MalformedReply(ServerError):
    """A 200 answer (whole or streamed) that breaks the chat-completion format: `choices`
    not a list, a choice's `content` a number, a non-string `reasoning_content` or
    `finish_reason`, an impossible `index`. `field` names the field, as a path into the
    reply (`choices[0].message.content`).

    Retryable: a server that sent garbage once (a proxy's hiccup, a bug in one decoding
    path) may answer well when the sample is drawn again; it fails only its own samples.
    An impossible `usage` is not this error: it is distrusted and the tokens are counted
    from the text instead."""

    def __init__(self, field: str, problem: str) -> None:
        """The reply's `field` is wrong as `problem` says (`is an int, not text`)."""
        super().__init__(f"malformed reply from the server: {field} {problem}")
        self.field = field


class RequestRejected(BackendError):
    """The server refused the request as malformed; retrying the same request cannot help."""

    retryable = False


class ContextLengthError(RequestRejected):
    """The prompt plus `max_tokens` exceeds the model's context window."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        requested_tokens: int | None = None,
        context_window: int | None = None,
    ) -> None:
        """A refusal saying `message`, with the sizes when the server named them."""
        super().__init__(message, status=status)
        self.requested_tokens = requested_tokens
        """The tokens the request needed (prompt, and `max_tokens` for some servers)."""
        self.context_window = context_window
        """The model's context window, in tokens."""

    def explain(self) -> str:
        """One line naming the context window and both sizes (as far as the server said)."""
        sizes = []
        if self.requested_tokens is not None:
            sizes.append(f"{self.requested_tokens:,} tokens needed")
        if self.context_window is not None:
            sizes.append(f"a context window of {self.context_window:,}")
        said = f" ({', '.join(sizes)})" if sizes else ""
        return f"the input does not fit the model's context window{said}: {self}"


class PayloadTooLarge(ContextLengthError):
    """HTTP 413: the request is larger than the server (or a proxy before it) accepts.
    The same input is refused the same way every time, so it fails as an input that
    cannot fit: not retried, not re-sampled, not rerun by `--retry-failed`."""

    def explain(self) -> str:
        """One line saying what was refused."""
        return f"the request is larger than the server accepts: {self}"


class AuthenticationError(RequestRejected):
    """The server refused the API key (HTTP 401 or 403)."""
