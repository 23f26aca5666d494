"""`pacore eval`: the paper's protocol on a dataset, resumable, with a report.

`plan_eval` checks everything first: the methods against the pool, the dataset
(every record), the grader against the data, the template, the output folder.
Only then does `execute` open the grader, the backend and the results file.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pacore.backends import Backend
from pacore.cli.options import (
    add_engine_options,
    add_settings,
    backend_config,
    engine_config,
    settings_from,
)
from pacore.cli.resources import open_backend, quiet_stream, with_system
from pacore.config import BackendConfig, EvalSettings, PacoreConfig
from pacore.errors import ConfigError


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
    res = ev.add_argument_group("results")
    res.add_argument("--out", type=Path, required=True, help="folder for results and report")
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
    from pacore.eval.runner import RESULTS, check_plan

    protocol = settings_from(args, EvalSettings)
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"{args.out}: exists and is not a folder")
    backend = backend_config(args)
    config = engine_config(args, backend)
    methods = tuple(parse_method(name, max_width=config.max_width) for name in args.method)
    check_plan(methods, runs=protocol.runs, pool_size=protocol.pool)
    _check_backend_options(args, backend)
    _check_pipeline_options(args, methods)
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
    return EvalPlan(
        config=config,
        backend=backend,
        dataset=str(args.dataset),
        samples=tuple(samples),
        methods=methods,
        grader=_grader_name(args.grader, samples, methods),
        out=args.out,
        store=args.store,
        runs=protocol.runs,
        pool=protocol.pool,
        jobs=protocol.jobs,
        plots=not args.no_plots,
        report_only=args.report_only,
        quiet=args.quiet,
    )


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
    from pacore.eval.graders import GRADER_NAMES

    code = any(s.is_code for s in samples)
    chosen = (name or ("code" if code else "math")).strip().lower()
    if chosen not in GRADER_NAMES:
        raise ConfigError(f"unknown grader {name!r}; valid graders: {', '.join(GRADER_NAMES)}")
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
    """Run a checked plan (or only rewrite its report) and print the accuracy table."""
    from pacore.eval.datasets import has_answers
    from pacore.eval.grading import grader_for
    from pacore.eval.runner import Evaluation
    from pacore.progress import EvalDisplay

    async with AsyncExitStack() as stack:
        grader = grader_for(plan.grader, plan.samples)
        stack.callback(grader.close)
        backend = None
        if not plan.report_only:
            backend = await open_backend(stack, plan.backend, concurrency=plan.config.concurrency)
        if not has_answers(plan.samples):
            print(
                f"pacore: note: {plan.dataset} has no answers or tests; results are ungraded",
                file=sys.stderr,
            )
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
            progress=EvalDisplay(stream=quiet_stream() if plan.quiet else None),
            plots=None if plan.plots else False,
        )
        files = evaluation.report() if plan.report_only else await evaluation.run()
    table = files.report_md.read_text(encoding="utf-8").split("\n\n")
    print(next((block for block in table if block.startswith("|")), ""))
    print(f"pacore: wrote {files.summary_json}, {files.report_md}", file=sys.stderr)
    failed = sum(s.outcomes.failed for s in evaluation.summaries() if s.outcomes)
    if failed:
        print(f"pacore: {failed} runs failed (infrastructure); rerun to retry", file=sys.stderr)
    return 0


def _model_name(plan: EvalPlan, backend: Backend | None) -> str:
    """The model the results belong to: the backend's, else the last report's."""
    if backend is not None:
        return backend.name
    try:
        previous = json.loads((plan.out / "summary.json").read_text(encoding="utf-8"))
        return str(previous.get("model") or plan.backend.model or "unknown")
    except (OSError, ValueError, AttributeError):
        return str(plan.backend.model or "unknown")
