"""`pacore view`: browse an eval folder or a `pacore run` output in a local web app.

`plan_view` checks the options and loads the data (so a wrong path is one line and exit
2 before anything listens); `execute` serves `pacore.view.app.create_app` on uvicorn,
bound to loopback unless `--host` says otherwise.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

    @property
    def url(self) -> str:
        """The address to open."""
        return f"http://{self.host}:{self.port}/"


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
        "--dataset", type=Path, help="the dataset file, for the questions and gold answers"
    )
    view.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    view.add_argument("--port", type=int, default=7860, help="port to listen on (7860)")
    view.add_argument("--open", action="store_true", help="open the page in a browser")


def plan_view(args: argparse.Namespace) -> ViewPlan:
    """Check the options and load the data; ConfigError on the first problem."""
    from pacore.view import INSTALL_VIEW

    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"pacore view needs {exc.name}: {INSTALL_VIEW}") from None
    from pacore.view.data import load

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: not a port")
    data = load(args.path, args.dataset)
    return ViewPlan(data, args.host, args.port, args.open)


async def execute(plan: ViewPlan) -> int:
    """Serve until interrupted; 0 on a clean stop."""
    import uvicorn

    from pacore.view.app import create_app

    config = uvicorn.Config(
        create_app(plan.data), host=plan.host, port=plan.port, log_level="warning"
    )
    server = uvicorn.Server(config)
    for warning in plan.data.warnings:
        print(f"pacore view: warning: {warning}", file=sys.stderr)
    print(f"pacore view: {plan.url} ({len(plan.data.rows)} records); Ctrl-C stops", file=sys.stderr)
    if plan.open_browser:
        import webbrowser

        webbrowser.open(plan.url)
    await server.serve()
    return 0 if server.started else 2
