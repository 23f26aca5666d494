"""`pacore eval`: load, check, run, report. Called by `pacore.cli`."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

from pacore.errors import ConfigError

EXIT_FAILED = 1


def _model_name(args: argparse.Namespace, backend: Any) -> str:
    """The model the results belong to: the backend's, else the last report's."""
    if backend is not None:
        return str(getattr(backend, "model", None) or getattr(backend, "model_name", "model"))
    try:
        previous = json.loads((args.out / "summary.json").read_text(encoding="utf-8"))
        return str(previous.get("model") or args.model or "unknown")
    except (OSError, ValueError, AttributeError):
        return str(args.model or "unknown")


async def run_eval(args: argparse.Namespace) -> int:
    from pacore.backends import EMBEDDED
    from pacore.cli import _config, open_backend
    from pacore.eval.datasets import FieldMap, has_answers, load_dataset
    from pacore.eval.grading import grader_for
    from pacore.eval.methods import parse_method
    from pacore.eval.runner import Evaluation, check_plan
    from pacore.progress import EvalBar

    # Everything that can be wrong with the input is found before any file is written.
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    if args.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"{args.out}: exists and is not a folder")
    methods = [parse_method(name, max_width=args.max_width) for name in args.method]
    check_plan(methods, runs=args.runs, pool_size=args.pool)
    samples = load_dataset(
        args.dataset, fields=FieldMap.parse(args.fields), split=args.split, limit=args.limit
    )
    if not args.no_plots:
        from pacore.eval.plots import require_matplotlib

        require_matplotlib()
    embedded = not args.backend or args.backend == [EMBEDDED]
    config = _config(args, embedded)
    results = args.out / "results.jsonl"
    if args.report_only and not results.is_file():
        raise ConfigError(f"{results}: no results to report on; run the evaluation first")
    grader = grader_for(args.grader, samples)
    voting = [m.name for m in methods if m.family == "sc"]
    if grader.name == "code" and voting:
        grader.close()
        raise ConfigError(
            f"{voting[0]} votes over answers, and programs have none; "
            "use single or pacore methods with the code grader"
        )
    backend: Any = None
    if not args.report_only:
        try:
            backend = await open_backend(args)
        except BaseException:
            grader.close()
            raise
    if not has_answers(samples):
        print(
            f"pacore: note: {args.dataset} has no answers or tests; results are ungraded",
            file=sys.stderr,
        )
    try:
        model = _model_name(args, backend)
        evaluation = Evaluation(
            samples=samples,
            methods=methods,
            backend=backend,
            model=model,
            config=config,
            grader=grader,
            out_dir=args.out,
            dataset_name=Path(str(args.dataset)).stem,
            runs=args.runs,
            pool_size=args.pool,
            seed=config.seed or 0,
            store_path=args.store,
            jobs_in_flight=args.jobs,
            progress=EvalBar(stream=io.StringIO() if args.quiet else None),
            plots=False if args.no_plots else None,
        )
        files = evaluation.report() if args.report_only else await evaluation.run()
    finally:
        if backend is not None:
            await backend.aclose()
        closer = getattr(grader, "close", None)
        if closer is not None:
            closer()
    table = files.report_md.read_text(encoding="utf-8").split("\n\n")
    accuracy = next((block for block in table if block.startswith("|")), "")
    print(accuracy)
    print(f"pacore: wrote {files.summary_json}, {files.report_md}", file=sys.stderr)
    summary = evaluation.summaries()
    failed = sum(s.outcomes.failed for s in summary if s.outcomes)
    if failed:
        print(f"pacore: {failed} runs failed (infrastructure); rerun to retry", file=sys.stderr)
    return 0
