"""The `pacore` command line.

    pacore run "QUESTION" [options]                       one problem, answer on stdout
    pacore run --input problems.jsonl --output out.jsonl  a resumable batch

Every user error becomes one line on stderr and exit code 2; an interrupted
batch exits 130 with its finished results already on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from pacore import __version__
from pacore.errors import ConfigError, ConnectionFailed, PacoreError

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
EMBEDDED_DEFAULT_MAX_TOKENS = 512


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pacore",
        description="Parallel Coordinated Reasoning: scale test-time compute in breadth.",
    )
    parser.add_argument("--version", action="version", version=f"pacore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="solve one question, or a JSONL file of problems",
        description="Solve one question (answer on stdout) or a JSONL batch (--input/--output).",
    )
    run.add_argument("question", nargs="?", help="the question (omit with --input)")
    io = run.add_argument_group("batch mode")
    io.add_argument("--input", type=Path, help="JSONL problems: {id, question} or {id, messages}")
    io.add_argument("--output", type=Path, help="JSONL results, appended; reruns resume")
    io.add_argument(
        "--retry-failed", action="store_true", help="rerun ids whose saved result failed"
    )
    io.add_argument(
        "--no-text", action="store_true", help="leave full trajectory texts out of the output"
    )

    width = run.add_argument_group("widths (the final width-1 round is implicit)")
    choice = width.add_mutually_exclusive_group()
    choice.add_argument("--preset", help="low=[4], medium=[16], high=[32,4] (default: low)")
    choice.add_argument("--widths", help="comma-separated widths, e.g. 32,4")
    width.add_argument("--max-width", type=int, default=1024, help="cap on any width (1024)")

    _add_engine_options(run)

    out = run.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the whole result as JSON")
    out.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")

    ev = sub.add_parser(
        "eval",
        help="evaluate methods on a benchmark with the paper's protocol",
        description="Evaluate PaCoRe and baselines on a dataset: pooled first rounds, "
        "pass@1 over runs, TTC per problem. Resumable: rerun the same command.",
    )
    data = ev.add_argument_group("dataset and protocol")
    data.add_argument("--dataset", required=True, help="a .jsonl/.json/.parquet file or hf:name")
    data.add_argument("--fields", help="field mapping, e.g. question=problem,answer=sol,id=uid")
    data.add_argument("--split", help="split of a hub dataset (test)")
    data.add_argument("--limit", type=int, help="only the first N problems")
    data.add_argument(
        "--method",
        action="append",
        required=True,
        help="pacore:<preset|widths>, sc:<N>, seq:<R>, nomp:<widths>, single (repeatable)",
    )
    data.add_argument("--runs", type=int, default=4, help="independent runs per problem (4)")
    data.add_argument("--pool", type=int, default=64, help="round-1 pool per problem (64)")
    data.add_argument("--grader", help="math, code, exact or numeric (default: from the data)")
    data.add_argument("--max-width", type=int, default=1024, help="cap on any width (1024)")
    res = ev.add_argument_group("results")
    res.add_argument("--out", type=Path, required=True, help="folder for results and report")
    res.add_argument(
        "--store", type=Path, help="trajectory store (default: OUT/trajectories.sqlite)"
    )
    res.add_argument("--jobs", type=int, default=32, help="(problem, method, run) jobs at once")
    res.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    res.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite summary.json, report.md and plots from OUT/results.jsonl (no backend)",
    )
    res.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    _add_engine_options(ev)
    return parser


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Backend, sampling and pipeline options shared by `run` and `eval`."""
    be = parser.add_argument_group("backend")
    be.add_argument(
        "--backend",
        action="append",
        metavar="URL|embedded",
        help="OpenAI-compatible base URL such as http://127.0.0.1:8000/v1 (repeat for "
        "several endpoints), or 'embedded' (default)",
    )
    be.add_argument("--model", help="model name on the server (default: the first it lists)")
    be.add_argument("--model-path", help="GGUF file for the embedded backend")
    be.add_argument("--slots", type=int, default=4, help="embedded parallel slots (4)")
    be.add_argument("--timeout", type=float, default=600.0, help="per-request timeout, s (600)")
    be.add_argument("--concurrency", type=int, default=64, help="requests in flight (64)")
    be.add_argument("--retries", type=int, default=5, help="retries per request (5)")
    be.add_argument(
        "--backoff", type=float, default=0.2, help="first retry waits up to this, doubling (0.2 s)"
    )
    be.add_argument("--no-n", action="store_true", help="never send n>1; one request per sample")

    sp = parser.add_argument_group("sampling")
    sp.add_argument("--max-tokens", type=int, help="tokens per trajectory (embedded: 512)")
    sp.add_argument("--temperature", type=float, default=1.0, help="(1.0, as published)")
    sp.add_argument("--top-p", type=float, default=1.0, help="(1.0, as published)")
    sp.add_argument("--seed", type=int, help="seeds reference order and server sampling")
    stream = sp.add_mutually_exclusive_group()
    stream.add_argument("--stream", dest="stream", action="store_true", help="stream tokens")
    stream.add_argument("--no-stream", dest="stream", action="store_false", help="(default)")
    sp.set_defaults(stream=False)

    pc = parser.add_argument_group("pipeline")
    pc.add_argument(
        "--compaction",
        default="conclusion",
        help="conclusion (default), full (no compaction), answer (boxed only)",
    )
    pc.add_argument("--template", type=Path, help="a Jinja2 synthesis template file")
    pc.add_argument(
        "--keep-truncated", action="store_true", help="pass on trajectories cut by max-tokens"
    )
    pc.add_argument(
        "--on-failure",
        default="resample",
        help="continue | resample (default) | fail, for failed trajectories",
    )
    pc.add_argument("--max-resamples", type=int, default=2, help="with resample (2)")

    pc.add_argument(
        "--system", help="a system message put before every problem that has none of its own"
    )


def _config(args: argparse.Namespace, embedded: bool) -> Any:
    from pacore.config import PacoreConfig, parse_widths, preset_widths

    if getattr(args, "widths", None) is not None:
        widths = parse_widths(args.widths, max_width=args.max_width)
    else:
        widths = preset_widths(getattr(args, "preset", None) or "low")
    template = None
    if args.template is not None:
        try:
            template = args.template.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{args.template}: cannot read template ({exc.strerror})") from None
    max_tokens = args.max_tokens
    if max_tokens is None and embedded:
        max_tokens = EMBEDDED_DEFAULT_MAX_TOKENS
    return PacoreConfig(
        widths=widths,
        temperature=args.temperature,
        top_p=args.top_p,
        max_tokens=max_tokens,
        seed=args.seed,
        compaction=args.compaction,
        template=template,
        truncated="keep" if args.keep_truncated else "drop",
        on_failure=args.on_failure,
        max_resamples=args.max_resamples,
        concurrency=args.concurrency,
        stream=args.stream,
        max_width=args.max_width,
    )


def _check_args(args: argparse.Namespace) -> None:
    if args.input is None:
        if args.question is None:
            raise ConfigError("give a question, or --input FILE for a batch")
        if not args.question.strip():
            raise ConfigError("the question is empty")
        if args.output is not None:
            raise ConfigError("--output needs --input")
    else:
        if args.question is not None:
            raise ConfigError("give either a question or --input, not both")
        if args.output is None:
            raise ConfigError("--input needs --output (results are appended there)")
        if args.output.resolve() == args.input.resolve():
            raise ConfigError("--output must differ from --input")
    if args.preset is not None:
        from pacore.config import preset_widths

        preset_widths(args.preset)
    if args.timeout <= 0:
        raise ConfigError("--timeout must be positive")
    if args.retries < 0:
        raise ConfigError("--retries must be >= 0")
    if args.backoff < 0:
        raise ConfigError("--backoff must be >= 0")
    if args.slots < 1:
        raise ConfigError("--slots must be at least 1")
    if args.model_path is not None and args.backend and args.backend != ["embedded"]:
        raise ConfigError("--model-path is for the embedded backend; use --model for a server")


async def open_backend(args: argparse.Namespace) -> Any:
    """The backend the options name, checked: a server must answer before any work starts."""
    from pacore.backends import make_backend

    backend = make_backend(
        args.backend,
        model=args.model,
        concurrency=args.concurrency,
        timeout=args.timeout,
        max_retries=args.retries,
        use_n=False if args.no_n else None,
        backoff_base=args.backoff,
        model_path=args.model_path,
        slots=args.slots,
    )
    check = getattr(backend, "check", None)
    if check is not None:
        try:
            await check()
        except BaseException:
            await backend.aclose()
            raise
    return backend


async def _run(args: argparse.Namespace) -> int:
    from pacore.backends import EMBEDDED
    from pacore.engine import Engine
    from pacore.progress import TerminalProgress

    _check_args(args)
    embedded = not args.backend or args.backend == [EMBEDDED]
    config = _config(args, embedded)
    total = None
    if args.input is not None:
        from pacore.batch import completed_ids, validate_problems

        total = validate_problems(args.input)
        done = completed_ids(args.output, retry_failed=args.retry_failed)
    backend = await open_backend(args)
    try:
        progress = TerminalProgress(total_problems=total, stream=_devnull() if args.quiet else None)
        engine = Engine(backend, config, progress=progress)
        try:
            if args.input is None:
                messages = _with_system([{"role": "user", "content": args.question}], args.system)
                result = await engine.solve(messages)
                progress.close()
                return _print_single(result, as_json=args.json)
            return await _run_batch(engine, args, done, total or 0, progress)
        finally:
            progress.close()
    finally:
        await backend.aclose()


def _print_single(result: Any, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    elif result.status == "failed":
        print(f"pacore: problem failed: {result.error}", file=sys.stderr)
    else:
        print(result.answer.strip())
        if result.status != "ok":
            print(f"pacore: note: the final trajectory was {result.status}", file=sys.stderr)
    print(
        f"pacore: {result.ttc_tokens:,} tokens generated in {result.requests} requests, "
        f"largest context {result.max_context_tokens:,} tokens, {result.latency_s:.1f}s",
        file=sys.stderr,
    )
    return EXIT_FAILED if result.status == "failed" else 0


async def _run_batch(
    engine: Any, args: argparse.Namespace, done: set[str], total: int, progress: Any
) -> int:
    from pacore.batch import ResultWriter, read_problems

    progress.problems_done = progress.resumed = len(done)
    if done:
        print(
            f"pacore: resuming: {len(done)} of {total} problems already in {args.output}",
            file=sys.stderr,
        )
    failed = 0
    with ResultWriter(args.output, include_text=not args.no_text) as writer:
        try:
            problems = (
                replace(p, messages=tuple(_with_system(list(p.messages), args.system)))
                for p in read_problems(args.input, skip=done)
            )
            async for result in engine.solve_many(problems):
                writer.write(result)
                failed += result.status == "failed"
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None
        finally:
            progress.close()
            written = writer.written
    print(
        f"pacore: {written} results written to {args.output}"
        + (f" ({failed} failed; rerun with --retry-failed)" if failed else ""),
        file=sys.stderr,
    )
    return EXIT_FAILED if failed else 0


def _with_system(messages: list[dict[str, Any]], system: str | None) -> list[dict[str, Any]]:
    if system is None or any(m.get("role") == "system" for m in messages):
        return messages
    return [{"role": "system", "content": system}, *messages]


def _devnull() -> Any:
    import os

    return open(os.devnull, "w")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return asyncio.run(_run(args))
        if args.command == "eval":
            from pacore.eval.cli import run_eval

            return asyncio.run(run_eval(args))
    except ConnectionFailed as exc:
        print(f"pacore: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PacoreError as exc:
        print(f"pacore: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        saved = getattr(args, "output", None) or getattr(args, "out", None)
        where = f"; finished results are in {saved}, rerun to resume" if saved else ""
        print(f"pacore: interrupted{where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
