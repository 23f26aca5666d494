"""`pacore run`: one question (answer on stdout) or a resumable JSONL batch.

`plan_run` turns the parsed options into a checked `RunPlan`: the widths, the
template (compiled and rendered once), the input file (every line) and the
output file (what it already holds). Only then does `execute` open the backend
and write anything.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pacore.cli.console import say
from pacore.cli.options import (
    add_engine_options,
    add_width_options,
    backend_config,
    engine_config,
    output_file,
)
from pacore.cli.resources import open_backend, quiet_stream, with_system
from pacore.config import BackendConfig, PacoreConfig, check_min_references
from pacore.errors import ConfigError
from pacore.types import Result

if TYPE_CHECKING:
    from pacore.io.source import Source

EXIT_FAILED = 1


@dataclass(frozen=True)
class BatchPlan:
    """A checked batch: where problems come from and go, and what is already done."""

    input: Source
    """The input, read once (a pipe is spooled) and checked whole."""
    output: Path
    total: int
    """Problems in the input file."""
    problems: Mapping[str, str]
    """Each id's problem hash (the fingerprint of its result lines)."""
    done: frozenset[str]
    """Ids already in the output file (skipped), as it stood when planned."""
    include_text: bool
    retry_failed: bool


@dataclass(frozen=True)
class RunPlan:
    """Everything `pacore run` will do, checked before anything is opened."""

    config: PacoreConfig
    backend: BackendConfig
    question: str | None
    """The single question, or None for a batch."""
    batch: BatchPlan | None
    system: str | None
    as_json: bool
    quiet: bool


def add_parser(sub: Any) -> None:
    """The `run` subcommand and its options."""
    run = sub.add_parser(
        "run",
        help="solve one question, or a JSONL file of problems",
        description="Solve one question (answer on stdout) or a JSONL batch (--input/--output).",
    )
    run.add_argument("question", nargs="?", help="the question (omit with --input)")
    io = run.add_argument_group("batch mode")
    io.add_argument("--input", type=Path, help="JSONL problems: {id, question} or {id, messages}")
    io.add_argument("--output", type=output_file, help="JSONL results, appended; reruns resume")
    io.add_argument(
        "--retry-failed", action="store_true", help="rerun ids whose saved result failed"
    )
    io.add_argument(
        "--no-text", action="store_true", help="leave full trajectory texts out of the output"
    )
    add_width_options(run)
    add_engine_options(run)
    run.add_argument_group("output").add_argument(
        "--json", action="store_true", help="print the whole result as JSON"
    )


def plan_run(args: argparse.Namespace) -> RunPlan:
    """Check every option and file of `pacore run`; raise ConfigError on the first problem."""
    _check_question_or_batch(args)
    backend = backend_config(args)
    config = engine_config(args, backend)
    check_min_references(config.min_references, config.widths, name="--min-references")
    batch = None
    if args.input is not None:
        from pacore.batch import check_problems, inspect_output
        from pacore.io.source import open_input

        source = open_input(args.input, what="problems")
        problems = check_problems(source)
        state = inspect_output(args.output, input_path=source)  # read only: no repair yet
        done = frozenset(k[0] for k in state.done(retry_failed=args.retry_failed))
        batch = BatchPlan(
            source,
            args.output,
            len(problems),
            problems,
            done,
            not args.no_text,
            args.retry_failed,
        )
    return RunPlan(
        config=config,
        backend=backend,
        question=args.question,
        batch=batch,
        system=args.system,
        as_json=args.json,
        quiet=args.quiet,
    )


def _check_question_or_batch(args: argparse.Namespace) -> None:
    if args.input is None:
        if args.question is None:
            raise ConfigError("give a question, or --input FILE for a batch")
        if not args.question.strip():
            raise ConfigError("the question is empty")
        if args.output is not None:
            raise ConfigError("--output needs --input")
        for flag, given in (("--retry-failed", args.retry_failed), ("--no-text", args.no_text)):
            if given:
                raise ConfigError(f"{flag} is for a batch (--input and --output)")
        return
    if args.json:
        raise ConfigError("--json prints one question's result; a batch writes JSON to --output")
    if args.question is not None:
        raise ConfigError("give either a question or --input, not both")
    if args.output is None:
        raise ConfigError("--input needs --output (results are appended there)")


async def execute(plan: RunPlan) -> int:
    """Run a checked plan: open the backend, solve, print or write the results."""
    from pacore.engine import Engine
    from pacore.progress import RunDisplay

    async with AsyncExitStack() as stack:
        backend = await open_backend(stack, plan.backend, concurrency=plan.config.concurrency)
        total = plan.batch.total if plan.batch else None
        progress = RunDisplay(
            total_problems=total,
            stream=quiet_stream() if plan.quiet else None,
            terminal=False if plan.quiet else None,
        )
        stack.callback(progress.close)
        engine = Engine(backend, plan.config, progress=progress)
        if plan.batch is not None:
            return await _run_batch(engine, plan, plan.batch, progress)
        messages = with_system(({"role": "user", "content": plan.question},), plan.system)
        result = await engine.solve(list(messages))
        progress.close()
        return _print_single(result, as_json=plan.as_json)


def _print_single(result: Result, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    elif result.status == "failed":
        say(f"pacore: problem failed: {result.error}")
    else:
        print(result.answer.strip())
        if result.status != "ok":
            say(f"pacore: note: the final trajectory was {_why(result)}")
    say(
        f"pacore: {result.ttc_tokens:,} tokens generated in {result.requests} requests, "
        f"largest context {result.max_context_tokens:,} tokens, {result.latency_s:.1f}s"
    )
    return EXIT_FAILED if result.status == "failed" else 0


def _why(result: Result) -> str:
    """The final trajectory's status, with what cut it when it was cut."""
    final = result.rounds[-1].trajectories[0] if result.rounds else None
    if result.status == "truncated" and final is not None and final.cut_by == "max_tokens":
        return "truncated at --max-tokens (raise it for a whole answer)"
    if result.status == "truncated" and final is not None and final.cut_by == "context":
        return "truncated by the model's context window"
    return result.status


async def _run_batch(engine: Any, plan: RunPlan, batch: BatchPlan, progress: Any) -> int:
    """Write every missing result, holding the output's lock; the output is repaired only
    now, once every check (the backend's included) has passed."""
    from pacore.batch import ResultWriter, Spent, inspect_output, prepare_output, read_problems
    from pacore.io.locks import OutputLock

    settings = _settings_hash(plan, engine.backend.name)
    with OutputLock(batch.output):
        state = inspect_output(batch.output, input_path=batch.input)
        state.check_fingerprints(batch.output, batch.problems, settings)
        state = prepare_output(batch.output, retry_failed=batch.retry_failed, state=state)
        done = frozenset(k[0] for k in state.keys)
        finished = len(done & batch.problems.keys())  # the output may hold other inputs' ids
        progress.resume(finished)
        if finished:
            say(f"pacore: resuming: {finished} of {batch.total} problems already in {batch.output}")
        if state.earlier:
            spent = sum(state.earlier.values(), Spent())
            say(
                f"pacore: rerunning {len(state.earlier)} failed problem(s); their failed "
                f"attempts spent {spent.ttc_tokens:,} tokens in {spent.requests:,} requests, "
                "kept in each new line's earlier_attempts"
            )
        failed: list[Result] = []
        writer = ResultWriter(
            batch.output,
            include_text=batch.include_text,
            problems=batch.problems,
            settings=settings,
            earlier={key[0]: spent for key, spent in state.earlier.items()},
        )
        with writer:
            try:
                problems = (
                    replace(p, messages=with_system(p.messages, plan.system))
                    for p in read_problems(batch.input, skip=done)
                )
                async for result in engine.solve_many(problems):
                    writer.write(result)
                    if result.status == "failed":
                        failed.append(result)
            except asyncio.CancelledError:
                raise KeyboardInterrupt from None
            finally:
                progress.close()
    return _batch_summary(batch, writer.written, failed, state)


def _settings_hash(plan: RunPlan, model: str) -> str:
    """The fingerprint of what decides a result besides the problem (see `pacore.batch`)."""
    from pacore.core.fingerprint import digest, result_settings

    settings = {
        "model": model,
        "widths": list(plan.config.widths),
        "seed": plan.config.seed,
        "system": plan.system,
        **result_settings(plan.config),
    }
    return digest(settings)


def _batch_summary(batch: BatchPlan, written: int, failed: list[Result], state: Any) -> int:
    """One line on what was written, what failed and what a rerun would do; the exit code
    is 1 while the output holds a failed result."""
    earlier = len(state.failed)
    total_failed = earlier + len(failed)
    line = f"pacore: {written} results written to {batch.output}"
    if total_failed:
        rerunnable = len(state.rerunnable) + sum(r.failure != "input" for r in failed)
        parts = [f"{len(failed)} failed now"] if failed else []
        parts += [f"{earlier} failed in earlier runs"] if earlier else []
        hint = "; rerun with --retry-failed to run them again" if rerunnable else ""
        unfit = total_failed - rerunnable
        if unfit:
            hint += f"; {unfit} of them cannot fit the model's context window (never rerun)"
        line += f" ({', '.join(parts)}{hint})"
    say(line)
    return EXIT_FAILED if total_failed else 0
