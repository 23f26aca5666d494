"""`pacore view`: browse an eval folder or a `pacore run` output in a local web app.

`plan_view` checks the options and loads the data (so a wrong path is one line and exit
2 before anything listens); `execute` binds the port, then serves
`pacore.view.app.create_app` through `pacore.http_edge` (Host and Origin checks, read
deadlines, a connection cap), bound to loopback unless `--host` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pacore.cli.console import say
from pacore.config import EdgeConfig
from pacore.errors import ConfigError

if TYPE_CHECKING:  # the view's dependencies load only when it runs
    from pacore.view.data import ViewData


@dataclass(frozen=True)
class ViewPlan:
    """What `pacore view` will serve."""

    data: ViewData
    host: str
    port: int
    open_browser: bool
    edge: EdgeConfig = field(default_factory=EdgeConfig)


def command_for(path: Path, dataset: str | None = None) -> str:
    """The `pacore view` command line for a folder (printed at the end of `pacore eval`)."""
    import shlex

    words = ["pacore", "view", str(path)]
    if dataset and not dataset.startswith("hf:"):
        words += ["--dataset", dataset]
    return shlex.join(words)


def add_parser(sub: Any) -> None:
    """The `view` subcommand and its options."""
    view = sub.add_parser(
        "view",
        help="browse an eval folder or a run output in a local web app",
        description="Serve a read-only local web app over an eval folder (results.jsonl, "
        "summary.json) or a `pacore run` batch output: the summary, the problem list, and "
        "each problem's rounds side by side.",
    )
    view.add_argument("path", type=Path, help="an eval folder or a pacore run output (JSONL)")
    view.add_argument(
        "--dataset",
        type=Path,
        help="the dataset file: checked against the questions and golds an eval folder "
        "stores; their source for a run output or a folder of an older pacore",
    )
    view.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    view.add_argument("--port", type=int, default=7860, help="port to listen on (7860)")
    view.add_argument("--open", action="store_true", help="open the page in a browser")
    from pacore.cli.options import add_settings

    add_settings(view.add_argument_group("network edge"), EdgeConfig)


def plan_view(args: argparse.Namespace) -> ViewPlan:
    """Check the options and load the data; ConfigError on the first problem."""
    from pacore.view import INSTALL_VIEW

    try:
        import httptools  # noqa: F401
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"pacore view needs {exc.name}: {INSTALL_VIEW}") from None
    from pacore.cli.options import settings_from
    from pacore.http_edge import check_address
    from pacore.view.data import load

    check_address(args.host, args.port)
    edge = settings_from(args, EdgeConfig)
    data = load(args.path, args.dataset)
    return ViewPlan(data, args.host, args.port, args.open, edge)


async def execute(plan: ViewPlan) -> int:
    """Serve until interrupted; 0 on a clean stop."""
    import logging

    from pacore import http_edge
    from pacore.view.app import create_app

    sock = http_edge.bind(plan.host, plan.port)  # before any announcement
    try:
        guard = http_edge.guard_for(create_app(plan.data), sock, plan.edge)
        for warning in plan.data.warnings:
            say(f"pacore view: warning: {warning}")
        url = http_edge.url_of(sock)
        say(f"pacore view: {url} ({len(plan.data.rows)} records); Ctrl-C stops")
        if plan.open_browser:
            import webbrowser

            webbrowser.open(url)
        logger = logging.getLogger("pacore.view")
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("pacore view: %(message)s"))
            logger.addHandler(handler)
            logger.propagate = False
        started = await http_edge.serve(guard, sock, plan.edge, logger=logger)
    finally:
        sock.close()
    return 0 if started else 2
