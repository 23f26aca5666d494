"""`pacore eval`: the paper's protocol on a dataset, resumable, with a report.

`plan_eval` checks everything first: the methods against the pool, the dataset
(every record), the grader against the data, the template, the output folder (one
pacore can create and write in). Only then does `execute` open the grader and the
backend, take the folder's lock (`<out>.lock`, so one writer per folder), and hand over
to the runner, which checks the folder's results and fingerprint before it writes.
"""

from __future__ import annotations

import argparse
import os
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pacore.backends import Backend
from pacore.cli.console import say
from pacore.cli.options import (
    add_engine_options,
    add_settings,
    backend_config,
    engine_config,
    output_folder,
    settings_from,
)
from pacore.cli.resources import open_backend, quiet_stream, with_system
from pacore.config import BackendConfig, EvalSettings, PacoreConfig, check_min_references
from pacore.errors import ConfigError, StorageError
from pacore.io.locks import OutputLock


@dataclass(frozen=True)
class EvalPlan:
    """Everything `pacore eval` will do, checked before anything is opened or written."""

    config: PacoreConfig
    backend: BackendConfig
    dataset: str
    samples: tuple[Any, ...]
    """The dataset's samples, the `--system` message already in place."""
    methods: tuple[Any, ...]
    grader: str
    """The grader's name, given or chosen from the data."""
    out: Path
    store: Path | None
    runs: int
    pool: int
    jobs: int
    plots: bool
    report_only: bool
    quiet: bool
    unsafe_sandbox: bool = False
    """Run code tests in the fallback sandbox, which cannot contain a hostile program."""
    given: frozenset[str] = frozenset()
    """The result-changing settings given on the command line (by their fingerprint
    names): what `--report-only` says it does not use."""

    @property
    def dataset_name(self) -> str:
        """The name the report gives the dataset: the file's stem."""
        return Path(self.dataset).stem


def add_parser(sub: Any) -> None:
    """The `eval` subcommand and its options."""
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
    data.add_argument(
        "--method",
        action="append",
        required=True,
        help="pacore:<preset|widths>, sc:<N>, seq:<R>, nomp:<widths>, single (repeatable)",
    )
    add_settings(data, EvalSettings, only=("runs", "pool", "limit"))
    data.add_argument("--grader", help="math, code, exact or numeric (default: from the data)")
    data.add_argument(
        "--unsafe-sandbox",
        action="store_true",
        help="code: run programs even where only the fallback sandbox (audit hooks, no "
        "namespaces) is available; it cannot contain a hostile program",
    )
    res = ev.add_argument_group("results")
    res.add_argument(
        "--out", type=output_folder, required=True, help="folder for results and report"
    )
    res.add_argument(
        "--store", type=Path, help="trajectory store (default: OUT/trajectories.sqlite)"
    )
    add_settings(res, EvalSettings, only=("jobs",))
    res.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    res.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite summary.json, report.md and plots from OUT/results.jsonl (no backend)",
    )
    add_engine_options(ev)


def plan_eval(args: argparse.Namespace) -> EvalPlan:
    """Check every option, the dataset and the output folder of `pacore eval`."""
    from pacore.eval.datasets import FieldMap, load_dataset
    from pacore.eval.methods import parse_method
    from pacore.eval.report import check_report_outputs
    from pacore.eval.runner import RESULTS, check_plan
    from pacore.eval.traces import TRACES, check_traces

    protocol = settings_from(args, EvalSettings)
    check_output_folder(args.out)
    check_traces(Path(args.out) / TRACES)  # before the backend is reached
    check_report_outputs(args.out)
    if args.store is not None:
        from pacore.store import check_store_path

        check_store_path(args.store, inputs=[args.dataset] if Path(args.dataset).exists() else [])
    # --report-only reaches no backend: its options are neither refused nor defaulted
    backend = backend_config(args, used=not args.report_only)
    config = engine_config(args, None if args.report_only else backend)
    methods = tuple(parse_method(name, max_width=config.max_width) for name in args.method)
    check_plan(methods, runs=protocol.runs, pool_size=protocol.pool)
    if not args.report_only:
        _check_backend_options(args, backend)
    _check_pipeline_options(args, methods)
    for method in methods:
        if method.passes_messages:
            widths = getattr(method, "widths", ())
            check_min_references(
                config.min_references, widths, name="--min-references", of=method.name
            )
    samples = load_dataset(
        args.dataset, fields=FieldMap.parse(args.fields), split=args.split, limit=protocol.limit
    )
    if args.system is not None:
        samples = [replace(s, messages=with_system(s.messages, args.system)) for s in samples]
    if not args.no_plots:
        from pacore.eval.plots import require_matplotlib

        require_matplotlib()
    if args.report_only and not (args.out / RESULTS).is_file():
        raise ConfigError(
            f"{args.out / RESULTS}: no results to report on; run the evaluation first"
        )
    grader = _grader_name(args.grader, samples, methods)
    if args.unsafe_sandbox and grader != "code":
        raise ConfigError(f"--unsafe-sandbox applies to the code grader only, not {grader}")
    return EvalPlan(
        config=config,
        backend=backend,
        dataset=str(args.dataset),
        samples=tuple(samples),
        methods=methods,
        grader=grader,
        out=args.out,
        store=args.store,
        runs=protocol.runs,
        pool=protocol.pool,
        jobs=protocol.jobs,
        plots=not args.no_plots,
        report_only=args.report_only,
        quiet=args.quiet,
        unsafe_sandbox=args.unsafe_sandbox,
        given=_given_settings(args),
    )


SETTING_OPTIONS = {"widths": ("widths", "preset"), "truncated": ("keep_truncated",)}
"""Fingerprint settings given by options of other names (the rest share theirs)."""


def _given_settings(args: argparse.Namespace) -> frozenset[str]:
    """The fingerprint's settings that the command line gave (not defaulted)."""
    given = {name for name, value in vars(args).items() if value not in (None, False)}
    for setting, options in SETTING_OPTIONS.items():
        if given.intersection(options):
            given.add(setting)
    return frozenset(given)


def check_output_folder(out: Path) -> None:
    """Refuse an `--out` pacore could not create or write in (or lock, next to it)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    if out.resolve().name == "":
        raise ConfigError(f"{out}: the root folder cannot be an evaluation folder")
    if out.is_dir():
        _check_writable(out, out)
        _check_writable(out, out.resolve().parent)  # where the lock goes
    else:
        _check_writable(out, _nearest_existing(out))


def _nearest_existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable(path: Path, where: Path) -> None:
    """`where`, which `path` needs, exists as a folder (or a file, for a file) pacore may
    write in; a one-line `ConfigError` otherwise."""
    if where != path and not where.is_dir():
        raise ConfigError(f"{path}: cannot be created, {where} is not a folder")
    if os.access(where, os.W_OK | (os.X_OK if where.is_dir() else 0)):
        return
    try:
        read_only = bool(os.statvfs(where).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    reason = "a read-only file system" if read_only else "permission denied"
    raise ConfigError(f"{path}: cannot write in {where} ({reason})")


_PIPELINE_ONLY = {
    "compaction": "--compaction",
    "template": "--template",
    "keep_truncated": "--keep-truncated",
    "min_references": "--min-references",
}
"""Options that act only between rounds (dest: flag)."""


def _given(args: argparse.Namespace, dest: str) -> bool:
    return getattr(args, dest, None) not in (None, False)


def _check_backend_options(args: argparse.Namespace, backend: BackendConfig) -> None:
    """Refuse --concurrency with the embedded model: an evaluation's parallelism is
    --jobs, and the embedded model's is its --slots. (The backend's own options are
    checked for every command by `options.backend_config`.)"""
    if backend.embedded and _given(args, "concurrency"):
        raise ConfigError("--concurrency is for a server (--backend URL), not the embedded model")


def _check_pipeline_options(args: argparse.Namespace, methods: tuple[Any, ...]) -> None:
    """Refuse a pipeline option that no method would use, or that a method overrides."""
    given = [flag for dest, flag in _PIPELINE_ONLY.items() if _given(args, dest)]
    if given and not any(m.passes_messages for m in methods):
        names = ", ".join(m.name for m in methods)
        raise ConfigError(f"{given[0]} has no effect on {names}: they pass nothing between rounds")
    fixed = [m for m in methods if getattr(m, "compaction", None) not in (None, args.compaction)]
    if args.compaction is not None and fixed:
        raise ConfigError(
            f"--compaction {args.compaction} cannot apply to {fixed[0].name}, which always "
            f"passes {fixed[0].compaction} trajectories; leave it out or evaluate it apart"
        )


def _grader_name(name: str | None, samples: Any, methods: tuple[Any, ...]) -> str:
    """The grader the options name or the data calls for, checked against both."""
    from pacore.graders import grader_name

    coded = [s.id for s in samples if s.is_code]
    if coded and len(coded) < len(samples):
        plain = next(s.id for s in samples if not s.is_code)
        raise ConfigError(
            f"{len(coded)} of {len(samples)} records have 'tests' (code, e.g. {coded[0]!r}) "
            f"and the others do not (e.g. {plain!r}); one evaluation grades with one "
            "grader: evaluate them as two datasets"
        )
    code = bool(coded)
    chosen = grader_name(name, tests=code)
    if chosen == "code" and not code:
        raise ConfigError("the code grader needs records with 'tests'")
    voting = [m.name for m in methods if m.family == "sc"]
    if chosen == "code" and voting:
        raise ConfigError(
            f"{voting[0]} votes over answers, and programs have none; "
            "use single or pacore methods with the code grader"
        )
    return chosen


async def execute(plan: EvalPlan) -> int:
    """Run a checked plan (or only rewrite its report) and print the accuracy table.

    0 when done, 1 when some runs failed for infrastructure or an output could not be
    written (a full disk: the results written so far are kept and a rerun resumes).
    """
    try:
        return await _execute(plan)
    except StorageError as exc:
        say(f"pacore: error: {exc}")
        return 1
    except OSError as exc:  # an I/O error nothing above named: still one line
        where = f"{exc.filename}: " if exc.filename else ""
        say(f"pacore: error: {where}{exc.strerror or exc}")
        return 1


async def _execute(plan: EvalPlan) -> int:
    from pacore.cli.view import command_for
    from pacore.eval.datasets import has_answers
    from pacore.eval.runner import Evaluation
    from pacore.graders import grader_for
    from pacore.progress import EvalDisplay

    async with AsyncExitStack() as stack:
        # --report-only runs no model code: it only reads the graded records back.
        unsafe = plan.unsafe_sandbox or plan.report_only
        tests = any(s.is_code for s in plan.samples)
        grader = grader_for(plan.grader, tests=tests, unsafe_sandbox=unsafe)
        stack.callback(grader.close)
        backend = None
        if not plan.report_only:
            backend = await open_backend(stack, plan.backend, concurrency=plan.config.concurrency)
        # Every check has passed, the backend's included: one writer from here on.
        stack.enter_context(_folder_lock(plan.out))
        if not has_answers(plan.samples):
            say(f"pacore: note: {plan.dataset} has no answers or tests; results are ungraded")
        evaluation = Evaluation(
            samples=plan.samples,
            methods=plan.methods,
            backend=backend,
            model=_model_name(plan, backend),
            config=plan.config,
            grader=grader,
            out_dir=plan.out,
            dataset_name=plan.dataset_name,
            runs=plan.runs,
            pool_size=plan.pool,
            seed=plan.config.seed or 0,
            store_path=plan.store,
            jobs_in_flight=plan.jobs,
            progress=EvalDisplay(
                stream=quiet_stream() if plan.quiet else None,
                terminal=False if plan.quiet else None,
            ),
            plots=None if plan.plots else False,
        )
        files = evaluation.rewrite_report() if plan.report_only else await evaluation.run()
    table = files.report_md.read_text(encoding="utf-8").split("\n\n")
    print(next((block for block in table if block.startswith("|")), ""))
    say(f"pacore: wrote {files.summary_json}, {files.report_md}")
    unused = evaluation.unused_settings(plan.given) if plan.report_only else None
    if unused:
        say(
            f"pacore: note: the results were computed with {unused}; --report-only "
            "reports them as they were run, so the options given now are not used"
        )
    # The folder stores its problems (`problems.jsonl`): no --dataset needed.
    say(f"pacore: browse it with: {command_for(plan.out)}")
    summaries = evaluation.reported if evaluation.reported is not None else []
    failed = sum(s.outcomes.failed for s in summaries if s.outcomes)
    if failed:
        say(f"pacore: {failed} runs failed (infrastructure); rerun to retry")
        return 1
    return 0


def _folder_lock(out: Path) -> OutputLock:
    """The lock of the evaluation folder `out` (`<out>.lock`, beside it; `OutputLock`
    creates the folder it goes in). Every spelling of a folder gets the same lock."""
    return OutputLock(out.resolve())


def _model_name(plan: EvalPlan, backend: Backend | None) -> str:
    """The model the results belong to: the backend's, else the last report's."""
    from pacore.io.jsonl import loads

    if backend is not None:
        return backend.name
    for name in ("summary.json", "fingerprint.json"):
        try:
            previous = loads((plan.out / name).read_text(encoding="utf-8"), strict=False)
            if isinstance(previous, dict) and isinstance(previous.get("model"), str):
                return str(previous["model"])
        except (OSError, ValueError):
            continue
    return str(plan.backend.model or "unknown")
