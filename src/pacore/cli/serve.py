"""`pacore serve`: PaCoRe as an OpenAI-compatible model, on uvicorn.

`plan_serve` checks every option into a `ServePlan` (the upstream or the embedded
model, the engine defaults, the address, keys and limits); `execute` builds the app
with `pacore.serve.app.create_app` and serves it until interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from pacore.cli.options import (
    _PIPELINE,
    _TEMPLATE_HELP,
    add_settings,
    backend_config,
    engine_config,
    settings_from,
)
from pacore.config import BackendConfig, PacoreConfig, ServeConfig
from pacore.errors import ConfigError

_SAMPLING = ("max_tokens", "temperature", "top_p", "seed")


@dataclass(frozen=True)
class ServePlan:
    """What `pacore serve` will serve, checked before anything is opened."""

    backend: BackendConfig
    defaults: PacoreConfig
    settings: ServeConfig


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
    return ServePlan(backend, defaults, settings)


async def execute(plan: ServePlan) -> int:
    """Serve until interrupted (Ctrl-C or SIGTERM); 0 on a clean stop."""
    import logging
    import sys

    import uvicorn

    from pacore.serve.app import create_app

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("pacore.serve")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    app = create_app(plan.backend, plan.defaults, plan.settings)
    config = uvicorn.Config(
        app,
        host=plan.settings.host,
        port=plan.settings.port,
        access_log=False,  # pacore logs one structured line per request itself
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    where = f"http://{plan.settings.host}:{plan.settings.port}/v1"
    keys = "with API keys" if plan.settings.api_key else "without API keys"
    print(f"pacore serve: {where} ({keys}); Ctrl-C stops", file=sys.stderr)
    await server.serve()
    return 0 if server.started else 2
