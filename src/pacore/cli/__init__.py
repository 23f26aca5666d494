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
the backend and files under one `AsyncExitStack`. `COMMANDS` names each module as a
string: only the command being run is imported (`pacore run` loads neither `eval`,
`train`, `serve` nor `view`), and `pacore --help` lists the commands from the table.
Errors map to exit codes here:

    0    done
    1    done, but some problems failed (their results say why), or an output could not
         be written (a full disk): what was written is safe and a rerun resumes
    2    bad input, a bad file, an unreachable backend (one line on stderr)
    130  interrupted; finished results are on disk and a rerun resumes
    143  terminated (SIGTERM): as 130 for a client command; a server's clean stop
    129  a server's terminal closed (SIGHUP)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from pacore import __version__, aio
from pacore.cli.console import drop_stdout, say
from pacore.errors import PacoreError, StorageError, one_line

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


@dataclass(frozen=True)
class Command:
    """One subcommand: the module that holds its options, planning and execution, imported
    only when the subcommand runs (or its parser is built)."""

    module: str
    """The module: `add_parser(sub)`, the `plan` function and `execute(plan)`."""
    help: str
    """The line `pacore --help` shows (the module's `add_parser` says the same; a test
    keeps them equal)."""
    plan: str
    """The name of the module's planning function."""
    saved: Callable[[Any], Path | None]
    """Where a plan's finished results are kept (named when interrupted)."""
    client: bool = True
    """A client of model servers, run on `aio.client_loop()` (uvloop where installed).
    The commands that serve HTTP keep the standard loop: their edge relies on how it
    retries `accept()` when descriptors run out (`pacore.http_edge`)."""

    def load(self) -> ModuleType:
        """The command's module, imported now."""
        return importlib.import_module(self.module)


COMMANDS: dict[str, Command] = {
    "run": Command(
        "pacore.cli.run",
        "solve one question, or a JSONL file of problems",
        "plan_run",
        lambda plan: plan.batch.output if plan.batch else None,
    ),
    "eval": Command(
        "pacore.cli.eval",
        "evaluate methods on a benchmark with the paper's protocol",
        "plan_eval",
        lambda plan: plan.out,
    ),
    "serve": Command(
        "pacore.cli.serve",
        "serve PaCoRe as an OpenAI-compatible model (/v1/chat/completions)",
        "plan_serve",
        lambda plan: None,
        client=False,
    ),
    "train": Command(
        "pacore.cli.train",
        "data for RL training of the synthesis skill",
        "plan_train",
        # Pools and filters are written whole at the end; until then the samples
        # finished so far are in the store, which a rerun reuses.
        lambda plan: getattr(plan, "store", None),
    ),
    "view": Command(
        "pacore.cli.view",
        "browse an eval folder or a run output in a local web app",
        "plan_view",
        lambda plan: None,
        client=False,
    ),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `pacore` parser. With `argv`, only the subcommand it names gets its options
    (and its module imported); the others are listed by name and help alone. Without,
    every subcommand is complete."""
    parser = _Parser(
        prog="pacore",
        description="Parallel Coordinated Reasoning: scale test-time compute in breadth.",
    )
    parser.add_argument("--version", action="version", version=f"pacore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    chosen = _chosen(argv)
    for name, command in COMMANDS.items():
        if argv is None or name == chosen:
            command.load().add_parser(sub)
        else:
            sub.add_parser(name, help=command.help)
    return parser


def _chosen(argv: Sequence[str] | None) -> str | None:
    """The subcommand `argv` names: its first word that is not an option."""
    return next((word for word in argv or () if not word.startswith("-")), None)


GC_FIRST_GENERATION = 10_000
"""Allocations between two collections of CPython's youngest generation, for a command."""


def collect_less() -> None:
    """Let the cyclic garbage collector run less often in this process (a command).

    A command keeps bounded caches of many small objects (`eval`'s pools, grades and
    drawn samples; the engine's trajectories) and frees almost everything it makes by
    reference counting. At CPython's default (a collection every 700 allocations) the
    collector rescans the survivors over and over: 4-5 % of `eval`'s CPU at 1,000
    problems (`benchmarks/README.md`). A larger first threshold keeps every cycle
    collectable, a little later. A threshold already set higher, or automatic
    collection turned off (a threshold of 0), by the embedding process is kept.
    """
    import gc

    first, *rest = gc.get_threshold()
    if 0 < first < GC_FIRST_GENERATION:  # 0: automatic collection is off; kept off
        gc.set_threshold(GC_FIRST_GENERATION, *rest)


TERM_GRACE_S = 5.0
"""How long a client command stopping for SIGTERM may take to wind down (its tasks
cancelled, its results written) before it is interrupted where it stands: a command
busy in code that never yields (a training step) would otherwise finish first."""


def _stop_on_signals(client: bool) -> tuple[list[int], Callable[[], None]]:
    """Stop cleanly on SIGTERM (`kill`, `timeout`, a job scheduler), and for a server on
    SIGHUP (a closed terminal), while a command runs.

    A client command takes SIGTERM as Ctrl-C: asyncio's runner cancels its tasks, which
    write their finished results and release the lock; `TERM_GRACE_S` later, or at once
    where SIGINT is ignored (a background job of a script), it is interrupted where it
    stands. A server (`serve`, `view`) exits as `SystemExit(128 + signal)`: uvicorn shuts
    down and raises SIGTERM again with this handler, and a normal exit runs the cleanups
    (the view's private copies of a folder's SQLite files). Returns a list that holds
    the signal once one came, and what puts the default handlers back. Only on the main
    thread, and only where a signal has its default handler (an embedding program's own
    is kept)."""
    import signal
    import threading

    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        return got, lambda: None
    wanted = (signal.SIGTERM,) if client else (signal.SIGTERM, signal.SIGHUP)
    watched = [sig for sig in wanted if signal.getsignal(sig) is signal.SIG_DFL]
    timers: list[threading.Timer] = []

    def interrupt(signum: int, frame: object) -> None:
        got.append(signum)
        if len(got) > 1 or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            raise KeyboardInterrupt
        # To the main thread itself: a blocking call there (a sleep, a read) is cut short
        main = threading.main_thread().ident
        assert main is not None
        timer = threading.Timer(TERM_GRACE_S, signal.pthread_kill, (main, signal.SIGINT))
        timer.daemon = True
        timers.append(timer)
        timer.start()  # a second Ctrl-C, should the first not end it in time
        signal.raise_signal(signal.SIGINT)

    def leave(signum: int, frame: object) -> None:
        got.append(signum)
        raise SystemExit(128 + signum)

    for sig in watched:
        signal.signal(sig, interrupt if client else leave)

    def restore() -> None:
        for timer in timers:
            timer.cancel()
        for sig in watched:
            signal.signal(sig, signal.SIG_DFL)

    return got, restore


def main(argv: Sequence[str] | None = None) -> int:
    """Run `pacore` with `argv` (default: the process's arguments); return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # The command owns every aiohttp session it opens: their CA certificates can wait
    # for the first https URL (`tls`; a library user's process loads them as usual).
    from pacore.backends.openai_compat import tls

    tls.defer_certificates()
    collect_less()
    args = build_parser(argv).parse_args(argv)
    command = COMMANDS[args.command]
    module = command.load()
    plan = None
    terminated, restore = _stop_on_signals(command.client)
    try:
        plan = getattr(module, command.plan)(args)
        loop = aio.client_loop() if command.client else None
        code: int = aio.run(module.execute(plan), loop=loop)
        sys.stdout.flush()  # a full disk or a reader that left: said here, not at exit
        return code
    except StorageError as exc:  # the work so far is saved: a rerun resumes
        say(f"pacore: error: {one_line(str(exc), limit=1000)}")
        return EXIT_FAILED
    except PacoreError as exc:
        say(f"pacore: error: {one_line(str(exc), limit=1000)}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        saved = command.saved(plan) if plan is not None else None
        kept = saved is not None and Path(saved).exists()
        where = f"; finished results are in {saved}, rerun to resume" if kept else ""
        say(f"pacore: {'terminated' if terminated else 'interrupted'}{where}")
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout's reader left (`| head`): nothing more to say there
        drop_stdout()
        say("pacore: error: stdout was closed before the answer was written")
        return EXIT_FAILED
    except OSError as exc:  # a file no layer named, or stdout that cannot be written
        if exc.filename:
            say(f"pacore: error: {exc.filename}: {exc.strerror or exc}")
        else:  # no file: the stream the answer went to (a full disk, say)
            drop_stdout()
            say(f"pacore: error: the output: cannot write ({exc.strerror or exc})")
        return EXIT_FAILED
    finally:
        restore()
