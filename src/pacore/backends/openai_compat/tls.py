"""aiohttp, imported (in the `pacore` command) without loading the system's CA
certificates until TLS needs them.

aiohttp builds its two default SSL contexts when it is imported, and loading the CA
bundle into them is the largest single cost of starting `pacore`: about 40 ms of the
0.25 s a small `pacore run` spends on one core, paid by every command that talks to a
plain-HTTP server on the same host or network (a local vLLM, llama.cpp or the embedded
model), which never opens a TLS connection.

Every module of pacore that uses aiohttp imports it from here (`from ...tls import
aiohttp`). The `pacore` command calls `defer_certificates()` before anything imports
aiohttp; then the CA loading of those two contexts is deferred, and `load_certificates`
loads them into the very same context objects (the sessions' constructors call it
through `needs_tls` when a URL is `https://`; a redirect from a plain-HTTP server to an
`https://` one is refused once, then `loaded_late` loads them and the request is sent
again), so a TLS connection verifies exactly as it would have. A context whose loading
were somehow skipped has no CA at all: it refuses every certificate (fails closed); it
never accepts one it should not.

Imported as a library (no `defer_certificates()`), aiohttp is imported as it always is:
the process's other aiohttp sessions keep their certificates.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

_deferred: list[ssl.SSLContext] = []
_lock = threading.Lock()


def _import_deferred() -> None:
    import ssl  # here: `pacore --help` need not load it

    original = ssl.SSLContext.set_default_verify_paths

    def defer(context: ssl.SSLContext) -> None:
        _deferred.append(context)

    ssl.SSLContext.set_default_verify_paths = defer  # type: ignore[method-assign,assignment]
    try:
        import aiohttp  # noqa: F401
    finally:
        ssl.SSLContext.set_default_verify_paths = original  # type: ignore[method-assign]


_wanted = False
"""Whether the process asked for the deferral (`defer_certificates`)."""


def defer_certificates() -> None:
    """Defer the CA loading of aiohttp's import, if aiohttp is not imported yet: for a
    process that owns every aiohttp session in it (the `pacore` command)."""
    global _wanted
    _wanted = True


def _aiohttp() -> ModuleType:
    """aiohttp, imported now (its certificates deferred when that was asked for)."""
    if _wanted and "aiohttp" not in sys.modules:
        _import_deferred()
    import aiohttp

    return aiohttp


if TYPE_CHECKING:
    import aiohttp as aiohttp  # the module, re-exported
else:

    def __getattr__(name: str) -> object:
        # `from ...tls import aiohttp` imports it on first use, after the command has
        # said whether to defer.
        if name == "aiohttp":
            return _aiohttp()
        raise AttributeError(name)


def certificates_deferred() -> bool:
    """Whether aiohttp's default contexts still wait for their CA certificates."""
    return bool(_deferred)


def load_certificates() -> None:
    """Load the CA certificates aiohttp's import skipped (once; cheap when done)."""
    if not _deferred:
        return
    with _lock:
        while _deferred:
            _deferred.pop().set_default_verify_paths()


def needs_tls(urls: Iterable[str]) -> None:
    """Load the certificates now if any of `urls` is `https://`."""
    if _deferred and any(url.lower().startswith("https:") for url in urls):
        load_certificates()


def loaded_late(exc: BaseException) -> bool:
    """Whether `exc` is a certificate refusal that only the deferral caused (a plain-HTTP
    server redirected to an `https://` one): the certificates are loaded now, and the
    request may be sent again. False for every other error, and once loaded."""
    if _deferred and isinstance(exc, _aiohttp().ClientConnectorCertificateError):
        load_certificates()
        return True
    return False
