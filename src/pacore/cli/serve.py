"""`pacore serve`: PaCoRe as an OpenAI-compatible model, on uvicorn.

`plan_serve` checks every option into a `ServePlan` (the upstream or the embedded
model, the engine defaults, the address, keys and limits, the network edge); unsafe
settings (an empty key or host, a public host without keys) stop here. `execute` binds
the port (a port in use is one line, before anything is announced), builds the app with
`pacore.serve.app.create_app` and serves it through `pacore.http_edge` until
interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pacore.cli.console import say
from pacore.cli.options import (
    _PIPELINE,
    _TEMPLATE_HELP,
    add_settings,
    backend_config,
    engine_config,
    settings_from,
)
from pacore.config import BackendConfig, EdgeConfig, PacoreConfig, ServeConfig
from pacore.errors import ConfigError

if TYPE_CHECKING:  # the server's dependencies load only when it runs
    from pacore.http_edge import Answers, Guard
    from pacore.serve.app import Log

_SAMPLING = ("max_tokens", "temperature", "top_p", "seed")


@dataclass(frozen=True)
class ServePlan:
    """What `pacore serve` will serve, checked before anything is opened."""

    backend: BackendConfig
    defaults: PacoreConfig
    settings: ServeConfig
    edge: EdgeConfig = field(default_factory=EdgeConfig)


def add_parser(sub: Any) -> None:
    """The `serve` subcommand and its options."""
    from pathlib import Path

    serve = sub.add_parser(
        "serve",
        help="serve PaCoRe as an OpenAI-compatible model (/v1/chat/completions)",
        description="Serve pacore-low, pacore-medium and pacore-high (and the upstream's own "
        "models, passed through) over the OpenAI chat-completions API.",
    )
    listen = serve.add_argument_group("server")
    add_settings(listen, ServeConfig)
    add_settings(serve.add_argument_group("network edge"), EdgeConfig)
    upstream = serve.add_argument_group("upstream")
    upstream.add_argument(
        "--upstream",
        dest="backend",
        action="append",
        metavar="URL",
        help="an OpenAI-compatible base URL such as http://127.0.0.1:8001/v1 (repeat it for "
        "several replicas); none serves the embedded model",
    )
    names = tuple(f.name for f in dataclasses.fields(BackendConfig) if f.name != "backend")
    add_settings(upstream, BackendConfig, only=names)
    add_settings(upstream, PacoreConfig, only=("concurrency",))
    add_settings(serve.add_argument_group("sampling defaults"), PacoreConfig, only=_SAMPLING)
    pipeline = serve.add_argument_group("pipeline defaults")
    add_settings(pipeline, PacoreConfig, only=_PIPELINE)
    pipeline.add_argument("--template", type=Path, metavar="FILE", help=_TEMPLATE_HELP)
    pipeline.add_argument(
        "--keep-truncated",
        action="store_true",
        help="pass on trajectories cut by max_tokens (they are dropped by default)",
    )


def plan_serve(args: argparse.Namespace) -> ServePlan:
    """Check every option of `pacore serve`; raise ConfigError on the first problem."""
    from pacore.serve import INSTALL_SERVE

    try:
        import httptools  # noqa: F401
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"pacore serve needs {exc.name}: {INSTALL_SERVE}") from None
    from pacore.serve.limits import keys_from

    backend = backend_config(args)
    defaults = engine_config(args, backend)
    settings = settings_from(args, ServeConfig)
    settings = dataclasses.replace(settings, api_key=keys_from(settings.api_key))
    check_exposure(settings)
    check_defaults_within_ceilings(defaults, settings)
    return ServePlan(backend, defaults, settings, settings_from(args, EdgeConfig))


def check_defaults_within_ceilings(defaults: PacoreConfig, settings: ServeConfig) -> None:
    """ConfigError when a server default would break the server's own ceiling, so that
    every request without options would be refused."""
    checks = [
        ("--max-resamples", defaults.max_resamples, "--max-resamples-limit",
         settings.max_resamples_limit),
        ("--max-tokens", defaults.max_tokens or 0, "--max-tokens-limit",
         settings.max_tokens_limit),
    ]  # fmt: skip
    for name, value, limit_name, limit in checks:
        if value > limit:
            raise ConfigError(f"{name} {value} is above the server's {limit_name} {limit}")


def check_exposure(settings: ServeConfig) -> None:
    """ConfigError for an empty host, or one beyond loopback with no key and no
    `--insecure-no-auth`."""
    from pacore.http_edge import check_address, is_loopback

    check_address(settings.host, settings.port)
    if not settings.api_key and not settings.insecure_no_auth and not is_loopback(settings.host):
        raise ConfigError(
            f"--host {settings.host} is reachable from other machines: give --api-key "
            "(or PACORE_SERVE_API_KEYS), or --insecure-no-auth to serve it to anyone"
        )


async def execute(plan: ServePlan) -> int:
    """Serve until interrupted (Ctrl-C or SIGTERM); 0 on a clean stop."""
    import logging
    import sys

    from pacore import http_edge
    from pacore.serve.app import create_app, log_to

    sock = http_edge.bind(plan.settings.host, plan.settings.port)  # before any announcement
    try:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.getLogger("pacore.serve")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        edge_logger = logging.getLogger("pacore.serve.edge")
        edge_handler = logging.StreamHandler(sys.stderr)
        edge_handler.setFormatter(logging.Formatter("pacore serve: %(message)s"))
        edge_logger.addHandler(edge_handler)
        edge_logger.propagate = False
        edge: list[http_edge.Guard] = []  # the log needs the guard, which needs the app
        log = _logged(log_to(logger), edge)
        app = create_app(plan.backend, plan.defaults, plan.settings, log=log)
        bodies = http_edge.json_routes(app)
        guard = http_edge.guard_for(app, sock, plan.edge, answers=_answers(), json_bodies=bodies)
        edge.append(guard)
        keys = "with API keys" if plan.settings.api_key else "without API keys"
        where = http_edge.url_of(sock, "/v1")
        say(f"pacore serve: {where} ({keys}); Ctrl-C stops")
        _, lowered = http_edge.connection_cap(plan.edge.max_connections)
        if lowered:
            say(f"pacore serve: {lowered}")
        started = await http_edge.serve(
            guard, sock, plan.edge, logger=edge_logger, on_stop=_stopping(plan.edge)
        )
    finally:
        sock.close()
    return 0 if started else 2


def _logged(write: Log, edge: list[Guard]) -> Log:
    """The request log, where a request the edge stopped at shutdown shows as the 503
    its client got, not as a client that left."""
    from pacore.serve.app import CLIENT_LEFT

    def log(record: dict[str, Any]) -> None:
        if edge and edge[0].stopping and record.get("status") == CLIENT_LEFT:
            record = {**record, "status": 503, "error": "stopped: the server is shutting down"}
        write(record)

    return log


def _stopping(edge: EdgeConfig) -> Callable[[int], None]:
    """What `pacore serve` says when it begins to stop with requests in progress."""

    def stopping(in_flight: int) -> None:
        if in_flight:
            say(
                f"pacore serve: stopping; {in_flight} request{'s' * (in_flight != 1)} in "
                f"progress, {edge.shutdown_grace:g}s to finish (Ctrl-C again: stop now)"
            )

    return stopping


def _answers() -> Answers:
    """The edge's own answers in OpenAI's error shape."""
    import orjson

    from pacore.http_edge import Answers
    from pacore.serve.errors import ApiError
    from pacore.serve.stream import DONE, frame

    class OpenAIAnswers(Answers):
        def body(self, status: int, message: str, code: str) -> tuple[bytes, bytes]:
            return b"application/json", orjson.dumps(ApiError(status, message, code=code).payload())

        def stream_end(self, status: int, message: str, code: str) -> bytes:
            return frame(ApiError(status, message, code=code).payload()) + DONE

    return OpenAIAnswers()
