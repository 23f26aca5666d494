"""`ApiError`: a failed request in OpenAI's error shape, with the status pacore answers.

    400 invalid_request_error   bad JSON, wrong types, unknown preset, a request over a shape
                                limit, a field PaCoRe cannot honour (`tools`), or every
                                upstream request refused (`upstream_refused`: its 4xx)
    404 invalid_request_error   a model `/v1/models/{id}` does not list (`model_not_found`)
    401 authentication_error    a missing, empty or unknown bearer key
    403 permission_error        a web page's Origin that is not allowed (the network edge)
    405 invalid_request_error   a method the route does not take (with `Allow`)
    413 invalid_request_error   a body over the size limit
    415 invalid_request_error   a body not sent as application/json (the network edge)
    421 invalid_request_error   a Host this server was not started for (the network edge)
    422 invalid_request_error   the model left nothing to synthesise (every trajectory cut
                                by max_tokens, say): a retry as is would fail the same way
    429 rate_limit_error        too many requests in progress, for the key or the server
    502 upstream_error          the upstream failed or answered nonsense
    503 server_error            the server is shutting down (the network edge)
    504 timeout_error           the upstream did not answer in time (or stalled after
                                its headers); a stream ends with an error event instead

A bug never shows as a 500 with a traceback: the app logs it and answers 502. A
message never carries a URL's credentials: `ApiError` passes it through `redact`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from pacore.redact import redact

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    421: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    504: "timeout_error",
}


class ApiError(Exception):
    """A request that ends with an error answer; `payload()` is OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        message = redact(message)
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def payload(self) -> dict[str, Any]:
        """`{"error": {"message", "type", "param", "code"}}`."""
        return {
            "error": {
                "message": self.message,
                "type": _TYPES.get(
                    self.status, "invalid_request_error" if self.status < 500 else "server_error"
                ),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> Response:
        """The JSON answer."""
        headers = {**self.headers, **({"WWW-Authenticate": "Bearer"} if self.status == 401 else {})}
        return Response(
            orjson.dumps(self.payload()),
            status_code=self.status,
            media_type="application/json",
            headers=headers,
        )
