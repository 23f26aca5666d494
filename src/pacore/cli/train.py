"""`pacore train`: data for training the synthesis skill.

    pacore train arith --count N --seed S --out PROBLEMS.jsonl
    pacore train pool --dataset PROBLEMS.jsonl --size 24 --backend URL --out POOL.jsonl
    pacore train filter --stage 1 --input POOL.jsonl --out KEPT.jsonl [--threshold 9/24]
    pacore train filter --stage 2 --input KEPT.jsonl --backend URL --out KEPT2.jsonl

Like `run` and `eval`: the options become a checked, typed plan (every input read,
every output path checked) before anything is opened; then `execute` opens the
backend, the store and the graders under one `AsyncExitStack`, holds the output's
`OutputLock`, and writes each output atomically at the end. `pool` and stage 2 keep
every sampled trajectory in a store next to the output, so a killed run resumes.

The RL engines' subcommands (`export`, `verl-command`, `grpo`) live in
`pacore.cli.train_rl`; `add_rl_commands` registers them when that module is there.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from pacore.cli.console import say
from pacore.cli.options import add_settings, backend_config, settings_from
from pacore.cli.resources import open_backend
from pacore.config import EMBEDDED_DEFAULT_MAX_TOKENS, MAX_WIDTH, BackendConfig, PacoreConfig
from pacore.errors import ConfigError
from pacore.io.atomic import atomic_write
from pacore.io.formats import COUNTS, FORMAT_KEY, POOL
from pacore.io.source import Source
from pacore.train.arith import ArithSettings
from pacore.train.records import PoolRecord, check_pool_path

EXIT_FAILED = 1
_SAMPLING = ("max_tokens", "temperature", "top_p", "seed", "stream", "concurrency")


@dataclass(frozen=True)
class ArithPlan:
    """`train arith`: what to generate and where."""

    settings: ArithSettings
    out: Path


@dataclass(frozen=True)
class PoolPlan:
    """`train pool`: the problems, the backend and sampling, the pool size and files."""

    records: tuple[PoolRecord, ...]
    """The problems (no responses yet), in dataset order."""
    backend: BackendConfig
    config: PacoreConfig
    size: int
    out: Path
    store: Path


@dataclass(frozen=True)
class FilterPlan:
    """`train filter`: a stage, its input, its grader and threshold, and its outputs."""

    stage: int
    records: tuple[PoolRecord, ...]
    """Stage 2's problems; stage 1 rereads `input` as it grades (memory stays flat)."""
    grader: str
    threshold: Fraction
    out: Path
    unsafe_sandbox: bool
    backend: BackendConfig | None = None
    """Stage 2: the checkpoint's server."""
    config: PacoreConfig | None = None
    samples: int = 8
    refs: tuple[int, int] = (16, 24)
    compaction: str = "conclusion"
    store: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    input: Path | Source | None = None
    total: int = 0
    """Problems in the input."""
    pool_size: int | None = None
    """Stage 1: the accuracy's denominator for records that do not say."""


@dataclass(frozen=True)
class RlPlan:
    """A subcommand of `pacore.cli.train_rl`, run as it is."""

    run: Callable[[argparse.Namespace], int]
    args: argparse.Namespace
    out: Path | None = None


TrainPlan = ArithPlan | PoolPlan | FilterPlan | RlPlan


# ---------------------------------------------------------------- options


def add_parser(sub: Any) -> None:
    """The `train` command and its subcommands."""
    train = sub.add_parser(
        "train",
        help="data for RL training of the synthesis skill",
        description="Synthetic problems, message pools, the curriculum, RL engines.",
    )
    commands = train.add_subparsers(dest="train_command", required=True, parser_class=type(train))
    arith = commands.add_parser("arith", help="large-integer arithmetic problems (JSONL)")
    add_settings(arith, ArithSettings)
    arith.add_argument("--out", type=Path, required=True, help="the JSONL file to write")

    pool = commands.add_parser("pool", help="sample P responses per problem into a pool file")
    pool.add_argument("--dataset", type=Path, required=True, help="problems: JSONL, JSON, Parquet")
    pool.add_argument("--size", type=int, default=24, help="responses per problem (default 24)")
    pool.add_argument("--out", type=Path, required=True, help="the pool (.jsonl/.json/.parquet)")
    _add_sampling(pool)

    filt = commands.add_parser("filter", help="a curriculum stage: keep the useful problems")
    filt.add_argument("--stage", type=int, choices=(1, 2), required=True)
    filt.add_argument("--input", type=Path, required=True, help="a pool file")
    filt.add_argument("--out", type=Path, required=True, help="the kept problems")
    filt.add_argument("--threshold", help="stage 1: keep 0 < accuracy < T (9/24 math, 15/24 code)")
    filt.add_argument("--grader", help="math, code, exact or numeric (default: from the data)")
    filt.add_argument(
        "--pool-size",
        type=int,
        help="stage 1: the accuracy's denominator P for records that do not record how many "
        "responses were sampled (missing ones count as wrong; default: their responses)",
    )
    filt.add_argument(
        "--unsafe-sandbox", action="store_true", help="run code under the fallback sandbox"
    )
    filt.add_argument("--samples", type=int, default=8, help="stage 2: episodes per problem")
    add_refs_option(filt, "stage 2: |M| ~ U(LO, HI) (default 16..24)")
    filt.add_argument("--compaction", default="conclusion", help="stage 2: reference compaction")
    _add_sampling(filt)
    add_rl_commands(commands)
    for parser in commands.choices.values():
        _take_dashed_values(parser)


_DASHED_VALUE = re.compile(r"-\.?\d")
"""A word that is a value though it starts with '-': `-1..2`, `-5`, `-1e-6` (what newer
Pythons' argparse takes as a negative number)."""


def _take_dashed_values(parser: argparse.ArgumentParser) -> None:
    """Let `parser`'s options take values such as `--magnitude -1..2`: argparse reads a
    word starting with '-' as an option unless it looks like a plain negative number, and
    would answer "expected one argument" where the range's own check says what is wrong.
    No train option is spelled like a number, so nothing is lost."""
    parser._negative_number_matcher = _DASHED_VALUE


def add_refs_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """`--refs LO..HI`, the message-set sizes (16..24 by default), read by `refs_range`."""
    parser.add_argument(
        "--refs", type=refs_range, default=(16, 24), metavar="LO..HI", help=help_text
    )


def refs_range(text: str) -> tuple[int, int]:
    """`--refs LO..HI` (or N for N..N): the message-set sizes, 1 <= LO <= HI (argparse type)."""
    lo, sep, hi = text.partition("..")
    try:
        low, high = (int(lo), int(hi)) if sep else (int(lo), int(lo))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO..HI, got {text!r}") from None
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError(f"must satisfy 1 <= LO <= HI, got {text!r}")
    return low, high


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    add_settings(parser.add_argument_group("backend"), BackendConfig)
    add_settings(parser.add_argument_group("sampling"), PacoreConfig, only=_SAMPLING)
    parser.add_argument("--store", type=Path, help="trajectory store (default <out>.store.sqlite)")


def add_rl_commands(sub: Any) -> None:
    """Register `pacore.cli.train_rl`'s subcommands when that module is installed."""
    if importlib.util.find_spec("pacore.cli.train_rl") is None:
        return
    from pacore.cli import train_rl

    train_rl.add_parsers(sub)


# ---------------------------------------------------------------- plans


def plan_train(args: argparse.Namespace) -> TrainPlan:
    """Check every option and input of `pacore train ...`; ConfigError on the first problem."""
    run = getattr(args, "rl_command", None)
    if run is not None:
        return RlPlan(run, args, getattr(args, "out", None))
    planners: dict[str, Callable[[argparse.Namespace], TrainPlan]] = {
        "arith": _plan_arith,
        "pool": _plan_pool,
        "filter": _plan_filter,
    }
    return planners[args.train_command](args)


def _check_out(out: Path, *, inputs: Iterable[Path | Source] = (), jsonl: bool = False) -> None:
    """The output guard (`pacore.io.guard`) for a pool or problems file."""
    if jsonl and out.suffix.lower() != ".jsonl":
        raise ConfigError(f"{out}: the output must be a .jsonl file")
    check_pool_path(out, inputs=inputs)


def _check_counts(out: Path) -> None:
    """The counts tables `train filter` writes beside its output: new, or its own."""
    from pacore.io.guard import check_output, first_record_owned

    base = out.with_name(out.name + ".counts")
    check_output(base.with_name(base.name + ".json"), owned=first_record_owned(COUNTS))
    check_output(base.with_name(base.name + ".md"), owned=_counts_markdown)


def _counts_markdown(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(64).startswith(b"# Curriculum stage ")


def _plan_arith(args: argparse.Namespace) -> ArithPlan:
    settings = settings_from(args, ArithSettings)
    _check_out(args.out, jsonl=True)
    return ArithPlan(settings, args.out)


def _sampling(args: argparse.Namespace) -> tuple[BackendConfig, PacoreConfig, Path]:
    backend = backend_config(args)
    values: dict[str, Any] = {}
    if args.max_tokens is None and backend.embedded:
        values["max_tokens"] = EMBEDDED_DEFAULT_MAX_TOKENS
    config = settings_from(args, PacoreConfig, **values)
    from pacore.store import check_store_path

    store = args.store or args.out.with_name(args.out.name + ".store.sqlite")
    check_store_path(store, inputs=[args.out])
    return backend, config, store


def _plan_pool(args: argparse.Namespace) -> PoolPlan:
    from pacore.eval.datasets import load_dataset

    if not 1 <= args.size <= MAX_WIDTH:
        raise ConfigError(f"--size must be from 1 to {MAX_WIDTH:,}")
    _check_out(args.out, inputs=[args.dataset])
    backend, config, store = _sampling(args)
    samples = load_dataset(args.dataset)
    records = tuple(
        PoolRecord(s.id, s.messages, (), _ground_truth(s.answer, s.tests, s.entry_point, s.prompt))
        for s in samples
    )
    return PoolPlan(records, backend, config, args.size, args.out, store)


def _ground_truth(answer: str | None, tests: Any, entry: str | None, prompt: str | None) -> Any:
    """A problem's ground truth: its answer, or its tests in the eval dataset format."""
    if tests is None:
        return answer
    truth: dict[str, Any] = {"tests": tests}
    if entry is not None:
        truth.update(entry_point=entry, prompt=prompt)
    return truth


def _plan_filter(args: argparse.Namespace) -> FilterPlan:
    from pacore.graders import grader_name
    from pacore.train.curriculum import default_threshold, parse_threshold
    from pacore.train.records import read_pool
    from pacore.train.rewards import has_tests

    if args.grader is not None:  # a bad name is refused before the pool is read
        grader_name(args.grader, tests=False)
    from pacore.io.source import open_input

    source = open_input(args.input, what="pool")  # a pipe is read once, then reread here
    _check_out(args.out, inputs=[source])
    _check_counts(args.out)
    # Stage 1 validates the whole input here without keeping it, and rereads it as it
    # grades: a pool of 8,000 problems x 24 long responses never sits in memory.
    kept_here = args.stage == 2
    total, all_tests, held = 0, True, []
    for record in read_pool(source):
        total += 1
        all_tests = all_tests and has_tests(record.ground_truth)
        if kept_here:
            held.append(record)
    if not total:
        raise ConfigError(f"{source}: no problems")
    records = tuple(held)
    grader = grader_name(args.grader, tests=all_tests)
    if args.stage == 2 and args.threshold is not None:
        raise ConfigError("--threshold is for stage 1 (stage 2 keeps 0 < accuracy < 1)")
    threshold = parse_threshold(args.threshold) if args.threshold else default_threshold(grader)
    if args.pool_size is not None and (args.stage != 1 or args.pool_size < 1):
        raise ConfigError("--pool-size is for stage 1 and must be at least 1")
    if args.unsafe_sandbox and grader != "code":
        raise ConfigError("--unsafe-sandbox is for the code grader")
    if args.stage == 1:
        given = [f for f in ("backend", "store") if getattr(args, f, None)]
        if given:
            raise ConfigError(f"--{given[0]} is for stage 2 (stage 1 grades the pool as it is)")
        settings = {"grader": grader, "threshold": str(threshold)}
        return FilterPlan(
            1,
            (),
            grader,
            threshold,
            args.out,
            args.unsafe_sandbox,
            settings=settings,
            input=source,
            total=total,
            pool_size=args.pool_size,
        )
    return _plan_stage2(args, records, grader, threshold, source)


def _plan_stage2(
    args: argparse.Namespace,
    records: tuple[PoolRecord, ...],
    grader: str,
    threshold: Fraction,
    source: Source,
) -> FilterPlan:
    from pacore.core.compaction import COMPACTION_MODES

    if not 1 <= args.samples <= MAX_WIDTH:
        raise ConfigError(f"--samples must be from 1 to {MAX_WIDTH:,}")
    lo, hi = args.refs
    if args.compaction not in COMPACTION_MODES:
        raise ConfigError(f"unknown --compaction; choose one of {', '.join(COMPACTION_MODES)}")
    backend, config, store = _sampling(args)
    settings = {
        "grader": grader,
        "samples": args.samples,
        "refs": f"{lo}..{hi}",
        "compaction": args.compaction,
        "seed": config.seed or 0,
    }
    return FilterPlan(
        2,
        records,
        grader,
        threshold,
        args.out,
        args.unsafe_sandbox,
        backend=backend,
        config=config,
        samples=args.samples,
        refs=(lo, hi),
        compaction=args.compaction,
        store=store,
        settings=settings,
        input=source,
        total=len(records),
    )


# ---------------------------------------------------------------- execution


async def execute(plan: TrainPlan) -> int:
    """Run a checked plan; 0 when done, 1 when something must be rerun."""
    if isinstance(plan, RlPlan):
        return plan.run(plan.args)
    if isinstance(plan, ArithPlan):
        return _execute_arith(plan)
    if isinstance(plan, PoolPlan):
        return await _execute_pool(plan)
    return await _execute_filter(plan)


def _execute_arith(plan: ArithPlan) -> int:
    from pacore.io.locks import OutputLock
    from pacore.train.arith import generate

    with OutputLock(plan.out):
        marker = {FORMAT_KEY: POOL.tag}
        lines = (
            json.dumps({**marker, **r}, ensure_ascii=False) + "\n" for r in generate(plan.settings)
        )
        atomic_write(plan.out, "".join(lines))
    say(f"pacore: {plan.settings.count} problems written to {plan.out}")
    return 0


async def _execute_pool(plan: PoolPlan) -> int:
    from dataclasses import replace

    from pacore.io.locks import OutputLock
    from pacore.store import TrajectoryStore
    from pacore.train.pool import PoolJob, fill_pools
    from pacore.train.records import write_pool

    async with AsyncExitStack() as stack:
        backend = await open_backend(stack, plan.backend, concurrency=plan.config.concurrency)
        stack.enter_context(OutputLock(plan.out))
        store = stack.enter_context(TrajectoryStore(plan.store))
        found: dict[str, tuple[str, ...]] = {}
        sampled: dict[str, int] = {}
        failed = dropped = 0
        jobs = (PoolJob(r.id, r.conversation) for r in plan.records)
        async for pooled in fill_pools(
            jobs,
            backend=backend,
            store=store,
            model=backend.name,
            size=plan.size,
            params=plan.config.sampling(),
            concurrency=plan.config.concurrency,
        ):
            found[pooled.id] = pooled.responses
            sampled[pooled.id] = len(pooled.responses) + pooled.dropped
            failed += pooled.failed
            dropped += pooled.dropped
        write_pool(
            plan.out,
            (replace(r, responses=found[r.id], sampled=sampled[r.id]) for r in plan.records),
        )
    kept = sum(len(v) for v in found.values())
    notes = [f"{dropped} truncated or empty dropped"] if dropped else []
    notes += [f"{failed} failed: rerun to sample them"] if failed else []
    line = f"pacore: {kept} responses for {len(found)} problems written to {plan.out}"
    say(line + (f" ({'; '.join(notes)})" if notes else ""))
    return EXIT_FAILED if failed else 0


async def _execute_filter(plan: FilterPlan) -> int:
    from pacore.io.locks import OutputLock
    from pacore.train.curriculum import KEPT, Filter
    from pacore.train.records import write_pool
    from pacore.train.rewards import RewardModel

    async with AsyncExitStack() as stack:
        model = stack.enter_context(RewardModel(unsafe_sandbox=plan.unsafe_sandbox))
        model.check(plan.grader)  # a missing extra or sandbox: refused before any work
        backend = None
        if plan.stage == 2:
            assert plan.backend is not None
            assert plan.config is not None
            backend = await open_backend(stack, plan.backend, concurrency=plan.config.concurrency)
        stack.enter_context(OutputLock(plan.out))
        if plan.stage == 1:
            judge = Filter(
                plan.threshold, check_answers=plan.grader != "code", pool_size=plan.pool_size
            )
            kept = write_pool(plan.out, _stage1(plan, model, judge))
            counts = judge.counts
        else:
            verdicts, counts = await _stage2(plan, model, backend, stack)
            kept = write_pool(plan.out, (r for r in plan.records if verdicts[r.id] == KEPT))
        counts.settings = plan.settings
        base = plan.out.with_name(plan.out.name + ".counts")
        table = json.dumps({FORMAT_KEY: COUNTS.tag, **counts.to_json()}, indent=2) + "\n"
        atomic_write(base.with_name(base.name + ".json"), table)
        atomic_write(base.with_name(base.name + ".md"), counts.to_markdown())
    say(
        f"pacore: stage {plan.stage}: kept {kept} of {plan.total} problems in "
        f"{plan.out}; counts in {base}.json and {base}.md"
    )
    return 0


STAGE1_CHUNK = 64
"""Problems read, graded and judged at a time by stage 1."""


def _stage1(plan: FilterPlan, model: Any, judge: Any) -> Iterator[PoolRecord]:
    """The kept problems of the input, read again and graded a chunk at a time."""
    from pacore.train.curriculum import KEPT
    from pacore.train.records import read_pool

    assert plan.input is not None
    records = read_pool(plan.input)
    while part := list(itertools.islice(records, STAGE1_CHUNK)):
        items = [(text, r.ground_truth) for r in part for text in r.responses]
        grades = model.grades(items, kind=plan.grader)
        offset = 0
        for record in part:
            mine = grades[offset : offset + len(record.responses)]
            offset += len(record.responses)
            if judge.judge(record, mine) == KEPT:
                yield record


async def _stage2(
    plan: FilterPlan, model: Any, backend: Any, stack: AsyncExitStack
) -> tuple[dict[str, str], Any]:
    from collections import Counter

    from pacore.graders import Grade
    from pacore.store import TrajectoryStore
    from pacore.train.curriculum import Counts, stage2_verdict
    from pacore.train.episodes import episode
    from pacore.train.pool import PoolJob, fill_pools

    assert plan.config is not None
    assert plan.store is not None
    store = stack.enter_context(TrajectoryStore(plan.store))
    seed = plan.config.seed or 0
    lo, hi = plan.refs
    # A fresh M for every sample: sample k is the problem's epoch-k episode, as the
    # k-th epoch of training would draw it, sampled once.
    owner = {f"{r.id}#M{k}": r for r in plan.records for k in range(plan.samples)}
    jobs = (
        PoolJob(
            job,
            episode(
                r, int(job.rpartition("#M")[2]), lo=lo, hi=hi, seed=seed, compaction=plan.compaction
            ),
        )
        for job, r in owner.items()
    )
    counts = Counts(stage=2)
    verdicts: dict[str, str] = {}
    graded: dict[str, list[Grade]] = {}
    arrived: Counter[str] = Counter()
    async for pooled in fill_pools(
        jobs,
        backend=backend,
        store=store,
        model=backend.name,
        size=1,
        params=plan.config.sampling(),
        concurrency=plan.config.concurrency,
    ):
        record = owner[pooled.id]
        grades = graded.setdefault(record.id, [])
        grades += model.grades(
            [(t, record.ground_truth) for t in pooled.responses], kind=plan.grader
        )
        # a synthesis cut off by the token limit is a wrong one, as in the paper
        grades += [Grade.decided(False, None, "truncated")] * pooled.dropped
        arrived[record.id] += 1
        if arrived[record.id] == plan.samples:
            verdicts[record.id] = stage2_verdict(grades)
            counts.add(record.id, verdicts[record.id])
    return verdicts, counts
