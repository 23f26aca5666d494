"""`create_app`: the Starlette application of `pacore serve`.

    POST /v1/chat/completions   PaCoRe (pacore-<preset>[:model], or a `pacore` field), or
                                a plain upstream model passed through; streamed or whole
    GET  /v1/models             the presets, then the upstream's own models
    GET  /health                200 once the upstream answers (the embedded model: loaded)
    GET  /metrics               Prometheus text, from this app's own registry

Everything an app uses (the backend, the upstream session, keys, limits, metrics) is
made by `create_app` and opened and closed by its lifespan; requests share nothing
else, so several apps live side by side and any instance can serve any request.
Each request ends in exactly one structured log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive

from pacore.backends import Backend, make_backend
from pacore.backends.openai_compat.endpoints import EndpointPool
from pacore.backends.openai_compat.transport import API_KEY_ENV
from pacore.backends.openai_compat.wire import logged_usage
from pacore.config import PRESETS, BackendConfig, PacoreConfig, ServeConfig
from pacore.errors import PacoreError
from pacore.redact import redact
from pacore.serve.completions import Job, Spend, check, now, solve, stream_body, whole_body
from pacore.serve.errors import ApiError
from pacore.serve.limits import Admission, Gate, Ticket, read_body
from pacore.serve.metrics import ServeMetrics
from pacore.serve.models import (
    PREFIX,
    advertised_limits,
    engine_config,
    parse_request,
    route_of,
    shown,
)
from pacore.serve.passthrough import Passage, Upstream, error_answer
from pacore.serve.stream import EventStream

Log = Callable[[dict[str, Any]], None]
T = TypeVar("T")
CLIENT_LEFT = 499
"""The status logged for a request whose client disconnected (nginx's convention)."""


def log_to(logger: logging.Logger) -> Log:
    """A `Log` writing each record as one JSON line to `logger` at INFO."""

    def write(record: dict[str, Any]) -> None:
        logger.info(orjson.dumps(record).decode())

    return write


@dataclass
class _Exchange:
    """One request as it goes: what the log line will say, ended exactly once."""

    id: str
    started: float
    record: dict[str, Any]
    label: str = "invalid"
    ticket: Ticket | None = None
    ended: bool = False
    spend: Spend | None = None
    """What a PaCoRe request spent upstream, tallied as it goes (`completions.Spend`)."""


class _Server:
    """The state of one app; its methods are the routes."""

    def __init__(
        self,
        backend_config: BackendConfig,
        defaults: PacoreConfig,
        settings: ServeConfig,
        log: Log,
        backend: Backend | None,
    ) -> None:
        self.backend_config = backend_config
        self.defaults = defaults
        self.settings = settings
        self.log = log
        self.metrics = ServeMetrics()
        self.gate = Gate(settings.api_key)
        self.admission = Admission(per_key=settings.per_key, queue=settings.queue)
        self.backend = backend or make_backend(backend_config, concurrency=defaults.concurrency)
        self.upstream: Upstream | None = None
        if not backend_config.embedded:
            api_key = next((k for k in map(_env, API_KEY_ENV) if k), None)
            pool = getattr(self.backend, "pool", None)  # the backend's: one load for both
            slots = getattr(self.backend, "slots", None)  # and one concurrency budget
            self.upstream = Upstream(
                backend_config.backend,
                pool=pool if isinstance(pool, EndpointPool) else None,
                slots=slots if callable(slots) else None,
                api_key=api_key,
                timeout=backend_config.timeout,
                concurrency=defaults.concurrency,
            )
        self.ready = False
        self._starting: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Serve at once while the backend starts (waiting for an upstream still loading);
        close everything at the end."""
        self._start()
        try:
            yield
        finally:
            if self._starting is not None:
                self._starting.cancel()
            if self.upstream is not None:
                await self.upstream.aclose()
            await self.backend.aclose()

    def _start(self) -> asyncio.Task[None]:
        """The backend's start, begun now or again after it failed."""
        task = self._starting
        if task is None or (task.done() and (task.cancelled() or task.exception())):
            task = self._starting = asyncio.ensure_future(self._start_backend())
        return task

    async def _start_backend(self) -> None:
        await self.backend.start()
        self.ready = True

    async def started(self) -> None:
        """Wait for the backend to be ready; `ApiError` 502 when it cannot start."""
        if self.ready:
            return
        try:
            await asyncio.shield(self._start())
        except PacoreError as exc:
            raise ApiError(502, f"the upstream is not ready: {exc}") from None

    # -- routes ----------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        """POST /v1/chat/completions."""
        ex = _Exchange("chatcmpl-" + secrets.token_hex(12), time.perf_counter(), {})
        self.metrics.in_flight.inc()
        try:
            key = self.gate.check(request)
            ex.record["key"] = key
            raw = await read_body(request, self.settings.max_body)
            data = _json(raw)
            route = route_of(data)
            ex.label = route.label
            ex.record["model"] = _logged_model(data.get("model"))
            ex.record["stream"] = bool(data.get("stream"))
            ex.ticket = self.admission.enter(key)
            await self.started()
            if route.widths is None:
                return await self._passthrough(request, ex, raw, data)
            request_ = parse_request(data)
            config = engine_config(request_, route, self.defaults, self.settings)
            if route.upstream_model is not None and self.upstream is None:
                raise ApiError(400, "the embedded model serves only pacore-<preset>", param="model")
            job = Job(
                ex.id, request_.model, tuple(request_.messages), request_.n, config,
                request_.include_usage, now(),
            )  # fmt: skip
            ex.record.update(widths=list(config.all_widths), n=job.n)
            if request_.stream:
                return self._stream(ex, job)
            return await self._whole(request, ex, job)
        except ApiError as exc:
            self._end(ex, exc.status, error=exc.message)
            return exc.response()
        except Exception as exc:  # a bug: logged (no credentials), answered in OpenAI's shape
            trace = redact("".join(traceback.format_exception(exc)))
            logging.getLogger("pacore.serve").error("request %s failed: %s", ex.id, trace)
            error = ApiError(502, f"pacore failed on this request ({ex.id}): {type(exc).__name__}")
            self._end(ex, 502, error=error.message)
            return error.response()

    async def models(self, request: Request) -> Response:
        """GET /v1/models."""
        try:
            self.gate.check(request)
        except ApiError as exc:
            return exc.response()
        limits = advertised_limits(self.settings, self.defaults)
        data = [
            {**_model(PREFIX + p, "pacore"), "pacore_widths": [*w, 1], "pacore_limits": limits}
            for p, w in PRESETS.items()
        ]
        upstream = await self.upstream.models() if self.upstream is not None else []
        data += upstream or [_model(self.backend.name, "upstream")]
        return _json_response({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        """GET /v1/models/{id}: one model of the list, or 404 `model_not_found`."""
        listed = await self.models(request)
        if listed.status_code != 200:
            return listed
        wanted = request.path_params["model"]
        for entry in orjson.loads(bytes(listed.body))["data"]:
            if entry.get("id") == wanted:
                return _json_response(entry)
        return ApiError(
            404,
            f"the model {shown(wanted)} does not exist on this server",
            param="model",
            code="model_not_found",
        ).response()

    async def health(self, request: Request) -> Response:
        """GET /health: 200 once the upstream answers, else 503."""
        ok = self.ready and (self.upstream is None or await self.upstream.healthy())
        return _json_response({"status": "ok" if ok else "unavailable"}, 200 if ok else 503)

    async def metrics_page(self, request: Request) -> Response:
        """GET /metrics."""
        return Response(
            self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    # -- PaCoRe ------------------------------------------------------------------

    async def _whole(self, request: Request, ex: _Exchange, job: Job) -> Response:
        ex.spend = Spend()
        solving = solve(self.backend, job, ex.spend)
        results = await _unless_client_leaves(request.receive, solving)
        if results is None:
            self._end(ex, CLIENT_LEFT)
            return Response(status_code=CLIENT_LEFT)
        for result in results:
            check(result)
        self._end(ex, 200)
        return _json_response(whole_body(job, results))

    def _stream(self, ex: _Exchange, job: Job) -> Response:
        def finish(status: int, error: str | None) -> None:
            self._end(ex, status, **({} if error is None else {"error": error}))

        ex.spend = Spend()
        body = stream_body(self.backend, job, self.settings.keepalive, finish, ex.spend)
        return EventStream(body)

    # -- passthrough -------------------------------------------------------------

    async def _passthrough(
        self, request: Request, ex: _Exchange, raw: bytes, data: dict[str, Any]
    ) -> Response:
        if self.upstream is None:
            raise ApiError(
                400,
                f"unknown model {shown(data.get('model'))}: the embedded model serves only "
                + ", ".join(PREFIX + p for p in PRESETS),
                param="model",
                code="model_not_found",
            )
        upstream = self.upstream
        if data.get("stream"):
            opening = upstream.open(raw, data.get("n"))
            response = await _unless_client_leaves(request.receive, opening)
            if response is None:
                self._end(ex, CLIENT_LEFT)
                return Response(status_code=CLIENT_LEFT)
            if response.status == 200:
                return EventStream(self._relayed(ex, response))
            body = await response.read()
            self._end(ex, response.status)
            return _upstream_answer(response.status, body, response.headers)

        async def exchange() -> tuple[int, bytes, dict[str, str]]:
            response = await upstream.open(raw, data.get("n"))
            return response.status, await response.read(), response.headers

        answer = await _unless_client_leaves(request.receive, exchange())
        if answer is None:
            self._end(ex, CLIENT_LEFT)
            return Response(status_code=CLIENT_LEFT)
        status, body, headers = answer
        self._end(ex, status, **logged_usage(body) if status == 200 else {})
        return _upstream_answer(status, body, headers)

    async def _relayed(self, ex: _Exchange, passage: Passage) -> AsyncIterator[bytes]:
        status, fields = CLIENT_LEFT, dict[str, Any]()
        try:
            async for data in passage.relay():
                yield data
            status = 200
            if passage.failure is not None:  # the upstream stopped part way: an error event went
                status, fields = passage.failure.status, {"error": passage.failure.message}
        finally:
            self._end(ex, status, **fields)

    # -- the end of every request ------------------------------------------------

    def _end(self, ex: _Exchange, status: int, **fields: Any) -> None:
        if ex.ended:
            return
        ex.ended = True
        if ex.ticket is not None:
            ex.ticket.leave()
        elapsed = time.perf_counter() - ex.started
        m = self.metrics
        m.in_flight.dec()
        m.requests.labels(ex.label, str(status)).inc()
        m.latency.labels(ex.label).observe(elapsed)
        if ex.spend is not None:
            m.spent(ex.spend.trajectories)
            fields.update(ex.spend.usage())
        elif ex.label == "passthrough" and status >= 502:
            m.upstream_errors.labels("passthrough").inc()
        self.log(
            {
                "id": ex.id,
                **ex.record,
                "route": ex.label,
                "status": status,
                "latency_ms": round(elapsed * 1000, 1),
                **fields,
            }
        )


def _upstream_answer(status: int, body: bytes, headers: dict[str, str]) -> Response:
    """A passed-through whole answer: the upstream's body (an error one in OpenAI's
    shape), status and `Retry-After`."""
    if status != 200:
        body = error_answer(status, body)
    return Response(body, status, media_type="application/json", headers=headers)


LOGGED_MODEL_CHARS = 200
"""The most of a model name a log line keeps (a client may send megabytes)."""


def _logged_model(model: Any) -> str | None:
    """The request's `model` as its log line keeps it: a name (cut), or its JSON type."""
    if model is None or isinstance(model, str):
        return (
            model
            if model is None or len(model) <= LOGGED_MODEL_CHARS
            else model[:LOGGED_MODEL_CHARS] + "…"
        )
    return f"<{type(model).__name__}>"


def create_app(
    backend: BackendConfig | None = None,
    defaults: PacoreConfig | None = None,
    settings: ServeConfig | None = None,
    *,
    log: Log | None = None,
    backend_instance: Backend | None = None,
) -> Starlette:
    """A new `pacore serve` application.

    `backend` names the upstream (URLs, model, timeouts) or the embedded model;
    `defaults` are the engine settings requests start from; `settings` the address,
    keys and limits (keys here are final: `limits.keys_from` adds the environment's).
    `log` gets one dict per request (default: JSON lines on the `pacore.serve` logger).
    `backend_instance` replaces the backend `backend` would make (for tests).
    """
    server = _Server(
        backend or BackendConfig(),
        defaults or PacoreConfig(),
        settings or ServeConfig(),
        log or log_to(logging.getLogger("pacore.serve")),
        backend_instance,
    )
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", server.chat, methods=["POST"]),
            Route("/v1/models", server.models, methods=["GET"]),
            Route("/v1/models/{model:path}", server.model, methods=["GET"]),
            Route("/health", server.health, methods=["GET"]),
            Route("/metrics", server.metrics_page, methods=["GET"]),
        ],
        lifespan=server.lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _bug},
    )
    app.state.server = server
    return app


async def _unless_client_leaves(receive: Receive, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None once the client disconnects (and `work` is cancelled)."""
    task = asyncio.ensure_future(work)

    async def left() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(left())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return None


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def _json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


def _model(name: str, owner: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


def _env(name: str) -> str | None:
    import os

    return os.environ.get(name) or None


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code if exc.status_code < 500 else 502
    return ApiError(status, str(exc.detail), headers=exc.headers).response()  # 405's Allow


async def _bug(request: Request, exc: Exception) -> Response:
    return ApiError(502, f"pacore failed on this request: {type(exc).__name__}").response()
