"""The network edge of `pacore serve` and `pacore view`: an ASGI app on uvicorn, guarded.

    bind(host, port)        the listening socket, bound before anything is announced;
                            ConfigError (one line, exit 2) for an empty host, a port out
                            of range or in use
    Guard(app, ...)         ASGI middleware: refuses a Host the server was not bound for
                            (421, against DNS rebinding), an Origin not allowed (403,
                            cross-site scripts), a body that is not JSON on a route
                            that takes one (415, CSRF by "simple" form or text/plain
                            requests; other routes answer their own 404 or 405); tracks
                            the requests in flight so that shutdown can answer each
    json_routes(app)        the (method, path) pairs of a Starlette app that take a body
    serve(app, sock, ...)   runs it on uvicorn until Ctrl-C or SIGTERM

Connections are bounded in uvicorn's own HTTP protocol (httptools), subclassed: a
client has `header_timeout` seconds from connecting (or from the first byte of a
kept-alive connection's next request) to send its request line and headers, then
`body_timeout` for the body, and `idle_timeout` between requests (uvicorn's keep-alive
timer); beyond `max_connections` open connections a new one is closed at once. Events
that come in floods (connections refused or timed out, `accept()` failing with "too many
open files") are logged once per burst, never once each, and never with a traceback.

On Ctrl-C or SIGTERM the server stops accepting, gives the requests in flight
`shutdown_grace` seconds (a second Ctrl-C ends the wait), then answers each that is
left with a 503 in the app's error shape (a stream gets an error event and its end)
and tells the app its client left, so the app ends and logs it as usual.

uvicorn has timeouts for idle keep-alive and a concurrency limit that answers 503
once headers are in, but no timeout on reading a request and no cap on accepted
connections: a client that never finishes its headers is held forever. Hooking its
protocol class (passed as `http=`) keeps uvicorn's parser, flow control and speed.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any, ClassVar

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pacore.config import EdgeConfig
from pacore.errors import ConfigError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
BURST_S = 10.0
"""Events of one kind within this many seconds of the first are logged as one line."""
_RESERVED_FILES = 64
"""Descriptors kept free of client connections (upstream connections, files, logs)."""
_CUT_WAIT_S = 2.0
"""How long the app has to stop after its requests were answered at shutdown."""
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# -- start-up ----------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or `localhost`) reaches this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_address(host: str, port: int) -> None:
    """ConfigError for an empty host (it binds every interface) or a port out of range."""
    if not host.strip():
        raise ConfigError("--host is empty, which would listen on every interface; name one")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: not a port (0 to 65535)")


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on `host:port` (0: a free port); ConfigError if it cannot be."""
    check_address(host, port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket, path: str = "/") -> str:
    """The address a bound socket serves, with the port it really got. Bound to every
    address (`0.0.0.0`, `::`), it is the loopback one: `http://0.0.0.0:PORT/` is no
    address a client should use, and its Host header is not answered (421)."""
    host, port = sock.getsockname()[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def connection_cap(wanted: int) -> tuple[int, str | None]:
    """The connection cap the open-file limit allows, raising the soft limit if it can,
    and a line to print when it had to be lowered."""
    try:
        import resource
    except ImportError:  # not POSIX: no descriptor limit to fit
        return wanted, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + _RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted, None
    cap = max(1, soft - max(_RESERVED_FILES, soft // 4))
    return cap, f"at most {cap} open connections (the open-file limit is {soft})"


# -- logging floods once -----------------------------------------------------------


class BurstLog:
    """One log line for the first event of a burst, and one counting the rest."""

    def __init__(self, logger: logging.Logger, text: str, window: float = BURST_S) -> None:
        self._logger = logger
        self._text = text
        self._window = window
        self._until = 0.0
        self._more = 0

    def note(self, loop: asyncio.AbstractEventLoop) -> None:
        """An event: logged if it starts a burst, else counted."""
        now = time.monotonic()
        if now < self._until:
            self._more += 1
            return
        self._logger.warning(self._text)
        self._until = now + self._window
        loop.call_later(self._window, self._close)

    def _close(self) -> None:
        if self._more:
            self._logger.warning("%s (%d more in %gs)", self._text, self._more, self._window)
        self._more = 0


# -- connections -------------------------------------------------------------------


@dataclass
class _Rules:
    """What every connection of one server obeys, and its flood logs."""

    header_timeout: float
    body_timeout: float
    max_connections: int
    refused: BurstLog
    slow: BurstLog
    large: BurstLog


def _closing_answer(status: bytes, text: bytes) -> bytes:
    """A whole plain-text response that ends the connection (the edge's own answers)."""
    return (
        b"HTTP/1.1 %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, len(text), text)
    )


_TIMEOUT_ANSWER = _closing_answer(b"408 Request Timeout", b"the request came too slowly\n")
MAX_HEAD_BYTES = 64 * 1024
"""The longest request line and headers taken; longer is refused with 431. The parser
holds a header whole until it ends, so without a cap a client that sends one endless
header (or URL) for the whole header timeout makes the server hold all of it."""
_TOO_LARGE_ANSWER = _closing_answer(
    b"431 Request Header Fields Too Large",
    b"the request line and headers are longer than %d bytes\n" % MAX_HEAD_BYTES,
)


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read deadlines and the connection cap; each
    server subclasses it with its `_rules`."""

    _rules: ClassVar[_Rules]
    _deadline: asyncio.TimerHandle | None = None
    _head: int | None = 0
    """Bytes received of the request line and headers so far (None: the body is due)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection; over the cap close it at once, else start its clock."""
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self._rules.max_connections:
            self._rules.refused.note(self.loop)
            transport.close()
            return
        self._arm(self._rules.header_timeout)

    def data_received(self, data: bytes) -> None:
        """Parse `data`; refuse (431) a request line and headers past `MAX_HEAD_BYTES`."""
        if self._head is not None:
            self._head += len(data)
        super().data_received(data)
        if self._head is not None and self._head > MAX_HEAD_BYTES:
            if not self.transport.is_closing():
                self._rules.large.note(self.loop)
                self._close_with(_TOO_LARGE_ANSWER)
            self._head = None

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        """A request's first byte: its headers are due (from connecting, for the first)."""
        super().on_message_begin()
        if self._deadline is None:
            self._arm(self._rules.header_timeout)

    def on_headers_complete(self) -> None:
        """The headers are in: the body is due."""
        super().on_headers_complete()
        self._head = None
        self._arm(self._rules.body_timeout)

    def on_message_complete(self) -> None:
        """The request is in: the app has it, and no clock runs; the next request's
        line and headers are counted from here."""
        super().on_message_complete()
        self._head = 0
        self._disarm()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self._rules.slow.note(self.loop)
        self._close_with(_TIMEOUT_ANSWER)

    def _close_with(self, answer: bytes) -> None:
        """Close the connection, writing `answer` first where a response may go: not
        after the app answered the request whose body was due (a 413 or 401 sent before
        the body was in: a second response would be read as the answer to the client's
        next request), and not into a response being written."""
        cycle = self.cycle
        if self._head is None:  # a body was due: the cycle is this request's
            free = cycle is None or not cycle.response_started
        else:  # a request line and headers were due: the cycle is the previous request's
            free = cycle is None or cycle.response_complete
        if free:
            self.transport.write(answer)
        self.transport.close()


def _quiet_accept_errors(
    loop: asyncio.AbstractEventLoop, out_of_files: BurstLog
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """A loop exception handler: `accept()` out of descriptors is one line per burst
    (asyncio retries it a second later by itself); anything else goes on as before."""
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            out_of_files.note(loop)
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    return handle


# -- the guard ---------------------------------------------------------------------


class Answers:
    """How the edge writes its own answers: plain text (the view); `pacore serve`
    writes OpenAI's error shape."""

    def body(self, status: int, message: str, code: str) -> tuple[bytes, bytes]:
        """The (content type, body) of an error answer."""
        return b"text/plain; charset=utf-8", (message + "\n").encode()

    def stream_end(self, status: int, message: str, code: str) -> bytes:
        """What ends a server-sent event stream cut by the edge."""
        return b"event: error\ndata: " + message.encode() + b"\n\n"


def _split_host(value: str) -> tuple[str, int | None]:
    """`name[:port]` or `[v6]:port` as (name, port); port None when absent or bad."""
    value = value.strip().lower().rstrip(".")
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name += "]"
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:
        name, port = value, ""
    return name.rstrip("."), int(port) if port.isdigit() else None


class _Hosts:
    """The Host headers a server answers: its loopback names and bound address on its
    port, and the names `--allow-host` adds."""

    def __init__(self, bound: str, port: int, extra: Iterable[str]) -> None:
        names = list(LOOPBACK_NAMES)
        if bound and bound not in ("0.0.0.0", "::", "[::]"):
            names.append(f"[{bound}]" if ":" in bound and not bound.startswith("[") else bound)
        self.exact = {(n.lower(), port) for n in names}
        self.any_port: set[str] = set()
        self.everything = False
        for entry in extra:
            if entry.strip() == "*":
                self.everything = True
                continue
            name, given = _split_host(entry)
            if given is None:
                self.any_port.add(name)
            else:
                self.exact.add((name, given))

    def allow(self, header: str | None) -> bool:
        if header is None or self.everything:
            return True  # HTTP/1.0 without Host: no browser sends that
        name, port = _split_host(header)
        return name in self.any_port or (name, 80 if port is None else port) in self.exact


class _Flight:
    """One request in progress: its response so far, and whether the edge cut it."""

    __slots__ = ("_send", "cut", "done", "killed", "sse", "started", "task")

    def __init__(self, send: Send, task: asyncio.Task[Any] | None) -> None:
        self._send = send
        self.task = task
        self.started = self.sse = self.done = self.cut = self.killed = False

    async def send(self, message: Message) -> None:
        if self.cut:
            return  # the edge has answered this request already
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            self.sse = any(
                k.lower() == b"content-type" and v.startswith(b"text/event-stream")
                for k, v in message.get("headers", ())
            )
        elif kind == "http.response.body" and not message.get("more_body", False):
            self.done = True
        await self._send(message)

    async def answer(self, answers: Answers, status: int, message: str, code: str) -> None:
        """Answer with an error in the app's place (a whole response already being
        written is left to finish)."""
        if self.done or self.cut or (self.started and not self.sse):
            return
        self.cut = True
        try:
            if self.started:
                end = answers.stream_end(status, message, code)
                await self._send({"type": "http.response.body", "body": end})
            else:
                await _answer(self._send, answers, status, message, code)
        except Exception:  # the client is gone: nothing left to tell it
            pass


async def _answer(send: Send, answers: Answers, status: int, message: str, code: str) -> None:
    media, body = answers.body(status, message, code)
    headers = [
        (b"content-type", media),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
    ]
    if status == 503:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: Host, Origin and content-type checks, and the requests in flight."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        bound: str,
        port: int,
        config: EdgeConfig,
        answers: Answers | None = None,
        json_bodies: Collection[tuple[str, str]] = (),
    ) -> None:
        """`json_bodies`: the (method, path) pairs whose body must be JSON (`json_routes`)."""
        self.app = app
        self.answers = answers or Answers()
        self._hosts = _Hosts(bound, port, config.allow_host)
        self._hosts_seen: set[bytes | None] = set()
        self._origins = {o.strip().lower().rstrip("/") for o in config.allow_origin}
        self._json_bodies = frozenset(json_bodies)
        self._flights: set[_Flight] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.stopping = False
        """Set once the grace period is over: whatever is left is being answered."""

    @property
    def in_flight(self) -> int:
        """Requests in progress."""
        return len(self._flights)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse what the checks refuse; run the rest as a flight."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None and self.stopping:
            refusal = (503, "the server is shutting down", "shutting_down")
        if refusal is not None:
            await _answer(send, self.answers, *refusal)
            return
        flight = _Flight(send, asyncio.current_task())
        self._flights.add(flight)
        self._idle.clear()
        try:
            await self.app(scope, receive, flight.send)
        except asyncio.CancelledError:
            if not flight.killed:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            self._flights.discard(flight)
            if not self._flights:
                self._idle.set()

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        headers: dict[bytes, bytes] = {}
        hosts = 0
        for name, value in scope["headers"]:
            headers.setdefault(name, value)
            hosts += name == b"host"
        if hosts > 1:  # which one would the app believe? (RFC 9112: answer 400)
            return (400, "the request has more than one Host header", "bad_request")
        host = headers.get(b"host")
        host_text = host.decode("latin-1") if host is not None else None
        if host not in self._hosts_seen and not self._hosts.allow(host_text):
            return (
                421,
                f"this server does not answer to Host {host_text!r}; "
                "start it with --allow-host NAME to allow a name",
                "host_not_allowed",
            )
        if len(self._hosts_seen) < 64:  # the few names clients use, parsed once each
            self._hosts_seen.add(host)
        origin = headers.get(b"origin")
        if origin is not None:
            given = origin.decode("latin-1").strip().lower().rstrip("/")
            same = host_text is not None and given == f"{scope['scheme']}://{host_text.lower()}"
            if not (same or given in self._origins or "*" in self._origins):
                return (
                    403,
                    f"requests from web pages at {given!r} are not allowed; "
                    "start the server with --allow-origin ORIGIN to allow one",
                    "origin_not_allowed",
                )
        if (scope["method"], scope["path"]) in self._json_bodies:
            media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if media != b"application/json":
                return (
                    415,
                    "the body must be JSON, sent with Content-Type: application/json",
                    "unsupported_media_type",
                )
        return None

    async def drain(self, grace: float, now: asyncio.Event) -> None:
        """Wait up to `grace` seconds (or until `now` is set) for the requests in
        flight; answer those left with 503, tell their app the client left, and cancel
        any that does not stop."""
        if self._flights:
            waits = [asyncio.ensure_future(self._idle.wait()), asyncio.ensure_future(now.wait())]
            await asyncio.wait(waits, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            for wait in waits:
                wait.cancel()
        self.stopping = True
        message = "the server is shutting down; this request was stopped, retry it later"
        for flight in list(self._flights):
            await flight.answer(self.answers, 503, message, "shutting_down")
        if not await _within(self._idle.wait(), _CUT_WAIT_S):
            for flight in list(self._flights):
                if flight.task is not None:
                    flight.killed = True
                    flight.task.cancel()
            await _within(self._idle.wait(), _CUT_WAIT_S)


async def _within(work: Awaitable[Any], seconds: float) -> bool:
    """Whether `work` finished within `seconds` (it is cancelled if not)."""
    try:
        async with asyncio.timeout(seconds):
            await work
    except TimeoutError:
        return False
    return True


# -- the server --------------------------------------------------------------------


class EdgeServer(uvicorn.Server):
    """uvicorn's server, stopping through the guard: stop accepting, wait the grace
    period, answer what is left, then end the app's lifespan."""

    def __init__(
        self, config: uvicorn.Config, guard: Guard, grace: float, on_stop: Callable[[int], None]
    ) -> None:
        super().__init__(config)
        self.guard = guard
        self.grace = grace
        self.on_stop = on_stop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """uvicorn's; a second Ctrl-C also ends the grace period."""
        super().handle_exit(sig, frame)
        if self.force_exit and hasattr(self, "_loop"):
            self._loop.call_soon_threadsafe(self._now.set)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's, knowing its loop."""
        self._now = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, drain the requests in flight, end the lifespan."""
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle ones close; busy ones close after their answer
        self.on_stop(self.guard.in_flight)
        if self.force_exit:
            self._now.set()
        await self.guard.drain(self.grace, self._now)
        if self.server_state.tasks:  # the protocol's last steps after each answer
            await asyncio.wait(list(self.server_state.tasks), timeout=_CUT_WAIT_S)
        await self.lifespan.shutdown()


def guard_for(
    app: ASGIApp,
    sock: socket.socket,
    config: EdgeConfig,
    *,
    answers: Answers | None = None,
    json_bodies: Collection[tuple[str, str]] = (),
) -> Guard:
    """The guard for `app` served on the bound `sock`: its Host names carry the port the
    socket really got."""
    host, port = sock.getsockname()[:2]
    return Guard(
        app, bound=host, port=port, config=config, answers=answers, json_bodies=json_bodies
    )


def json_routes(app: Any) -> frozenset[tuple[str, str]]:
    """The (method, path) pairs of a Starlette `app`'s routes that take a body (a write
    method): the guard asks those for JSON, and leaves every other request to the app
    (a method a route does not take is its 405, an unknown path its 404)."""
    return frozenset(
        (method, route.path)
        for route in app.routes
        for method in getattr(route, "methods", None) or ()
        if method in _WRITE_METHODS
    )


async def serve(
    guard: Guard,
    sock: socket.socket,
    config: EdgeConfig,
    *,
    logger: logging.Logger,
    on_stop: Callable[[int], None] | None = None,
) -> bool:
    """Serve the guarded app on the bound `sock` until Ctrl-C or SIGTERM; whether it
    started.

    `logger` gets the edge's own lines (refused connections, timeouts, descriptors
    running out), once per burst. `on_stop(in_flight)` is told when stopping begins.
    """
    cap, _ = connection_cap(config.max_connections)
    rules = _Rules(
        header_timeout=config.header_timeout,
        body_timeout=config.body_timeout,
        max_connections=cap,
        refused=BurstLog(
            logger, f"{cap} connections are open, the most allowed: closing new ones at once"
        ),
        slow=BurstLog(
            logger,
            "closed a connection that did not send its request in time "
            f"(headers within {config.header_timeout:g}s, body within {config.body_timeout:g}s)",
        ),
        large=BurstLog(
            logger,
            f"refused a request whose line and headers passed {MAX_HEAD_BYTES} bytes (431)",
        ),
    )
    loop = asyncio.get_running_loop()
    out_of_files = BurstLog(logger, "too many open files: new connections wait (asyncio retries)")
    loop.set_exception_handler(_quiet_accept_errors(loop, out_of_files))
    uv_config = uvicorn.Config(
        guard,
        http=type("EdgeProtocol", (EdgeProtocol,), {"_rules": rules}),
        access_log=False,
        log_level="warning",
        timeout_keep_alive=config.idle_timeout,  # type: ignore[arg-type]
        lifespan="on",
    )
    server = EdgeServer(
        uv_config, guard, config.shutdown_grace, on_stop or (lambda in_flight: None)
    )
    # uvicorn logs each request its parser cannot read: one line per burst instead.
    unreadable = _BurstFilter(
        _UNREADABLE, BurstLog(logger, "answered 400 to a request that is not HTTP"), loop
    )
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(unreadable)
    try:
        await server.serve(sockets=[sock])
    finally:
        uvicorn_log.removeFilter(unreadable)
    return bool(server.started)


_UNREADABLE = "Invalid HTTP request received."
"""What uvicorn logs for each request its parser refuses (it answers 400)."""


class _BurstFilter(logging.Filter):
    """Keeps one message of another logger out, counting it in a `BurstLog` instead."""

    def __init__(self, message: str, burst: BurstLog, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._message, self._burst, self._loop = message, burst, loop

    def filter(self, record: logging.LogRecord) -> bool:
        """False (and counted) for the message; True for every other record."""
        if record.getMessage() != self._message:
            return True
        self._burst.note(self._loop)
        return False
