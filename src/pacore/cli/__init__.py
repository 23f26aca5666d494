"""The `pacore` command line.

    pacore run "QUESTION" [options]                       one problem, answer on stdout
    pacore run --input problems.jsonl --output out.jsonl  a resumable batch
    pacore eval --dataset FILE --method M ... --out DIR   the paper's evaluation protocol
    pacore serve [--upstream URL ...] [--port 8000]        an OpenAI-compatible server
    pacore train arith|pool|filter|export|...              data and RL for synthesis
    pacore view DIR_OR_FILE [--port 7860]                  browse results in a local web app

Each command lives in its own module with three parts: `add_parser` (its
options; the shared ones come from `options.py`), a `plan_*` function that turns
the parsed options into a checked, typed plan, and `execute(plan)`, which opens
the backend and files under one `AsyncExitStack`. Errors map to exit codes here:

    0    done
    1    done, but some problems failed (their results say why), or an output could not
         be written (a full disk): what was written is safe and a rerun resumes
    2    bad input, a bad file, an unreachable backend (one line on stderr)
    130  interrupted; finished results are on disk and a rerun resumes
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from pacore import __version__
from pacore.cli import eval as eval_command
from pacore.cli import run as run_command
from pacore.cli import serve as serve_command
from pacore.cli import train as train_command
from pacore.cli import view as view_command
from pacore.errors import PacoreError, StorageError, one_line

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


@dataclass(frozen=True)
class Command:
    """One subcommand: its options, its planning and its execution."""

    add_parser: Callable[[Any], None]
    plan: Callable[[argparse.Namespace], Any]
    execute: Callable[[Any], Coroutine[Any, Any, int]]
    saved: Callable[[Any], Path | None]
    """Where a plan's finished results are kept (named when interrupted)."""


COMMANDS: dict[str, Command] = {
    "run": Command(
        run_command.add_parser,
        run_command.plan_run,
        run_command.execute,
        lambda plan: plan.batch.output if plan.batch else None,
    ),
    "eval": Command(
        eval_command.add_parser,
        eval_command.plan_eval,
        eval_command.execute,
        lambda plan: plan.out,
    ),
    "serve": Command(
        serve_command.add_parser,
        serve_command.plan_serve,
        serve_command.execute,
        lambda plan: None,
    ),
    "train": Command(
        train_command.add_parser,
        train_command.plan_train,
        train_command.execute,
        lambda plan: getattr(plan, "out", None),
    ),
    "view": Command(
        view_command.add_parser,
        view_command.plan_view,
        view_command.execute,
        lambda plan: None,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The `pacore` parser with every subcommand."""
    parser = _Parser(
        prog="pacore",
        description="Parallel Coordinated Reasoning: scale test-time compute in breadth.",
    )
    parser.add_argument("--version", action="version", version=f"pacore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `pacore` with `argv` (default: the process's arguments); return the exit code."""
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    plan = None
    try:
        plan = command.plan(args)
        return asyncio.run(command.execute(plan))
    except StorageError as exc:  # the work so far is saved: a rerun resumes
        print(f"pacore: error: {one_line(str(exc), limit=1000)}", file=sys.stderr)
        return EXIT_FAILED
    except PacoreError as exc:
        print(f"pacore: error: {one_line(str(exc), limit=1000)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        saved = command.saved(plan) if plan is not None else None
        where = f"; finished results are in {saved}, rerun to resume" if saved else ""
        print(f"pacore: interrupted{where}", file=sys.stderr)
        return EXIT_INTERRUPTED
