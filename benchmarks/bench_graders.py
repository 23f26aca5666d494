"""Grader throughput: math answers per second and sandboxed code executions per second.

    .venv/bin/python benchmarks/bench_graders.py            # both (~2 min on 2 cores)
    .venv/bin/python benchmarks/bench_graders.py --math     # math only (--repeat N)
    .venv/bin/python benchmarks/bench_graders.py --code     # code only

Math: predictions built from the MATH-500 gold answers (`../shared/data/math500.jsonl`),
`Some reasoning. So the answer is $\\boxed{...}$`, graded in one `grade_many` call by a
fresh grader (empty cache) whose pool was started, and its start-up timed, beforehand.
- hard: per gold, `x = <gold>`, `<gold>\\text{ units}` (equivalent) and the same forms of
  the gold with a digit changed (wrong). None is decided by the fast path of two plain
  numbers; the named rules (`math_rules.py`: a leading `x =`, units, separators ...)
  settle many of them, and the rest go through math-verify (the count is printed).
- mixed: hard plus what models mostly write: the gold's own spelling, a `\\dfrac`/spacing
  variant, and two digit-changed answers (integers among them are decided without
  math-verify).
Duplicated pairs come from golds MATH-500 repeats (`3`, `5`, ...). Each set runs
`--repeat` times with a fresh grader; the best wall time is reported, and the median
CPU time (workers' CPU from `RUSAGE_CHILDREN` after they exit, minus an idle pool's
start-up CPU, plus the parent's), which a busy machine changes far less.

Code: every CodeContests-style stdin/stdout test is one sandboxed execution (its own
process, namespaces, rlimits); a batch of small programs with several tests each,
through `CodeGrader.grade_many`, in the best isolation available and in `fallback`;
then the 164 HumanEval canonical solutions, in both modes: one test each, which is one
sandbox (the program, answering calls) plus one trusted checker process (`check()`,
calling it over pipes; see `pacore/graders/checker.py`).

Targets (issues 3 and 9): math ≥ 500 answers/s on 2 cores, code ≥ 20 tests/s. The script
prints a markdown table and never fails on a missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

from pacore.graders import GradeInput  # noqa: E402
from pacore.graders.code_grader import CodeGrader  # noqa: E402
from pacore.graders.math_grader import MathGrader  # noqa: E402
from pacore.graders.sandbox import Limits  # noqa: E402


def _bump(gold: str, rng: random.Random) -> str | None:
    """`gold` with one digit changed (a wrong answer of the same shape)."""
    digits = [m.start() for m in re.finditer(r"\d", gold)]
    if not digits:
        return None
    i = rng.choice(digits)
    return gold[:i] + str((int(gold[i]) + rng.randint(1, 9)) % 10) + gold[i + 1 :]


def hard_variants(gold: str, rng: random.Random) -> list[tuple[str, bool]]:
    """Rewritings math-verify must judge: none has gold's normal form or is a plain number."""
    out = [(f"x = {gold}", True)]
    if "," not in gold:
        out.append((f"{gold}\\text{{ units}}", True))
    for _ in range(2):
        wrong = _bump(gold, rng)
        if wrong is not None and wrong != gold:
            out.append((f"x = {wrong}", False))
    if wrong is not None and wrong != gold and "," not in gold:
        out.append((f"{wrong}\\text{{ units}}", False))
    return out


def easy_variants(gold: str, rng: random.Random) -> list[tuple[str, bool]]:
    """What models mostly write: the gold's own spelling (or `\\dfrac`, spacing), or
    other numbers of the same shape."""
    out = [(gold, True), (gold.replace("\\frac", "\\dfrac").replace(",", ", "), True)]
    for _ in range(2):
        wrong = _bump(gold, rng)
        if wrong is not None and wrong != gold:
            out.append((wrong, False))
    return out


def math_items(mixed: bool) -> list[tuple[str, GradeInput]]:
    """Hard rewritings of every MATH-500 gold; `mixed` adds the easy cases."""
    rng = random.Random(0)
    lines = (DATA / "math500.jsonl").read_text(encoding="utf-8").splitlines()
    golds = [json.loads(line)["answer"] for line in lines]
    items = []
    for gold in golds:
        variants = hard_variants(gold, rng)
        if mixed:
            variants += easy_variants(gold, rng)
        for text, _ in variants:
            prediction = f"Some reasoning.\n\nSo the answer is $\\boxed{{{text}}}$."
            items.append((prediction, GradeInput(answer=gold)))
    rng.shuffle(items)
    return items


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _math_run(items: list[tuple[str, GradeInput]] | None) -> dict[str, float]:
    """One fresh grader: warm up, grade `items` (if any), close; wall and CPU figures."""
    grader = MathGrader()
    children, own = _children_cpu(), _self_cpu()
    start = time.perf_counter()
    grader.warm_up()
    grader.equivalent("x + 1", "1 + x")  # waits for a worker (the rules cannot settle it)
    out = {"startup": time.perf_counter() - start}
    if items is not None:
        own = _self_cpu()
        start = time.perf_counter()
        grades = grader.grade_many(items)
        out["wall"] = time.perf_counter() - start
        out["parent_cpu"] = _self_cpu() - own
        out["sent"] = grader.cache_misses - 1
        out["correct"] = sum(1 for g in grades if g.correct)
        start = time.perf_counter()
        grader.grade_many(items)
        out["cached_wall"] = time.perf_counter() - start
    grader.close()
    out["worker_cpu"] = _children_cpu() - children
    return out


def bench_math(repeat: int) -> list[tuple[str, str, str, str]]:
    idle = _math_run(None)  # workers' start-up CPU, subtracted below
    rows = [("math", "pool start-up: spawn, import math-verify, warm the parser",
             f"{idle['startup']:.2f} s wall, {idle['worker_cpu']:.1f} s CPU", "info")]  # fmt: skip
    for mixed in (False, True):
        items = math_items(mixed)
        runs = [_math_run(items) for _ in range(repeat)]
        best = min(runs, key=lambda r: r["wall"])
        walls = sorted(r["wall"] for r in runs)
        cpus = sorted(r["worker_cpu"] - idle["worker_cpu"] + r["parent_cpu"] for r in runs)
        cpu = cpus[len(cpus) // 2]
        pairs = len({(s.answer, p) for p, s in items})
        rate = len(items) / best["wall"]
        label = "mixed: model-like + hard" if mixed else "hard: every pair through math-verify"
        rows.append(
            (
                "math",
                f"{label}: {len(items)} answers, {pairs} distinct (gold, answer) pairs, "
                f"{best['sent']:.0f} sent to math-verify, {best['correct']:.0f} correct",
                f"{rate:,.0f} answers/s (best of {repeat}; walls "
                + ", ".join(f"{w:.2f}" for w in walls)
                + " s)",
                "PASS" if rate >= 500 else "MISSED (target 500/s)",
            )
        )
        rows.append(
            (
                "math",
                f"  same, CPU (median): {cpu:.2f} s in workers + parent → answers per "
                "CPU-second; ×2 = two cores nobody else uses",
                f"{len(items) / cpu:,.0f}/s per core, {2 * len(items) / cpu:,.0f}/s on 2",
                "info",
            )
        )
        if mixed:
            rows.append(("math", "  same set again: all from the cache",
                         f"{len(items) / best['cached_wall']:,.0f} answers/s", "info"))  # fmt: skip
    return rows


SUM = "a, b = map(int, input().split())\nprint(a + b)\n"
SUM_WRONG_ABOVE_50 = "a, b = map(int, input().split())\nprint(a + b + (a > 50))\n"


def code_items(problems: int, tests: int) -> list[tuple[str, GradeInput]]:
    rng = random.Random(1)
    items = []
    for p in range(problems):
        cases = []
        for _ in range(tests):
            a, b = rng.randint(0, 100), rng.randint(0, 100)
            cases.append({"input": f"{a} {b}\n", "output": f"{a + b}\n"})
        source = SUM if p % 2 == 0 else SUM_WRONG_ABOVE_50
        prediction = f"Here is my solution:\n```python\n{source}```\n"
        items.append((prediction, GradeInput(tests=cases, time_limit_s=2.0)))
    return items


def humaneval_items() -> list[tuple[str, GradeInput]]:
    lines = (DATA / "humaneval.jsonl").read_text(encoding="utf-8").splitlines()
    tasks = [json.loads(line) for line in lines]
    return [(t["canonical_solution"], GradeInput.from_record(t)) for t in tasks]


def _code_run(
    label: str, items: list[tuple[str, GradeInput]], executions: int, **options: Any
) -> tuple[str, str, str, str]:
    # unsafe_sandbox: the benchmark's programs are ours, so `fallback` may run them
    grader = CodeGrader(limits=Limits(wall_s=10.0), unsafe_sandbox=True, **options)
    try:
        grader.grade_many(items[:2])  # probe the isolation, warm the page cache
        start = time.perf_counter()
        grades = grader.grade_many(items)
        wall = time.perf_counter() - start
        rate = executions / wall
        mean = sum(g.score for g in grades) / len(grades)
        mode, workers = grader.sandbox.mode, grader.workers
        return (
            "code",
            f"{label}: {executions} executions, mean score {mean:.2f}; "
            f"{mode} isolation, {workers} sandboxes at a time",
            f"{rate:,.1f} executions/s ({wall:.2f} s)",
            "PASS" if rate >= 20 else "MISSED (target 20/s)",
        )
    finally:
        grader.close()


def bench_code(problems: int, tests: int) -> list[tuple[str, str, str, str]]:
    contests = code_items(problems, tests)
    executions = problems * tests
    label = f"stdin tests, {problems} programs × {tests} tests"
    rows = [
        _code_run(label, contests, executions),
        _code_run(label, contests, executions, isolation="fallback"),
    ]
    quarter = problems // 4
    serial = f"stdin tests, {quarter} programs × {tests} tests, one sandbox at a time"
    rows.append(_code_run(serial, contests[:quarter], quarter * tests, workers=1))
    if (DATA / "humaneval.jsonl").exists():
        items = humaneval_items()
        functional = "HumanEval canonical solutions (check() in the trusted checker)"
        rows.append(_code_run(functional, items, len(items)))
        rows.append(_code_run(functional, items, len(items), isolation="fallback"))
    return rows


def _plain_math_verify(pair: tuple[str, str]) -> bool:
    """math-verify 0.9.0 as documented, its defaults (in a worker's main thread, where
    its `signal.alarm` timeouts work): gold first."""
    from math_verify import parse, verify

    gold, response = pair
    try:
        return bool(verify(parse("\\boxed{" + gold + "}"), parse(response)))
    except Exception:  # a crash is a wrong verdict
        return False


def generated_cases() -> list[dict[str, Any]]:
    """Every case of the generated differential suite (`tests/data/make_generated_cases.py`)."""
    import importlib.util

    path = ROOT / "tests" / "data" / "make_generated_cases.py"
    spec = importlib.util.spec_from_file_location("make_generated_cases", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cases: list[dict[str, Any]] = module.generate(DATA)
    return cases


def bench_agreement(show: int) -> None:
    """Agreement with the construction labels, per class and per wrapper, for this grader
    and for plain math-verify on the same cases; prints markdown tables."""
    from collections import Counter
    from concurrent.futures import ProcessPoolExecutor

    cases = generated_cases()
    pairs = [(c["gold"], c["response"]) for c in cases]
    grader = MathGrader()
    try:
        grader.warm_up()
        start = time.perf_counter()
        grades = grader.grade_many([(r, GradeInput(answer=g)) for g, r in pairs])
        ours_s = time.perf_counter() - start
    finally:
        grader.close()
    ours = [g.correct is True for g in grades]
    start = time.perf_counter()
    with ProcessPoolExecutor() as pool:
        theirs = list(pool.map(_plain_math_verify, pairs, chunksize=64))
    theirs_s = time.perf_counter() - start
    print(f"{len(cases)} cases; this grader {ours_s:.1f} s, plain math-verify {theirs_s:.1f} s\n")
    for key in ("class", "wrapper"):
        total, right, right_mv = Counter[str](), Counter[str](), Counter[str]()
        for case, a, b in zip(cases, ours, theirs, strict=True):
            total[case[key]] += 1
            right[case[key]] += a == case["label"]
            right_mv[case[key]] += b == case["label"]
        print(f"| {key} | cases (right / wrong) | this grader | plain math-verify |")
        print("|---|---|---|---|")
        for name in sorted(total):
            positives = sum(1 for c in cases if c[key] == name and c["label"])
            print(
                f"| {name} | {total[name]} ({positives} / {total[name] - positives}) | "
                f"{100 * right[name] / total[name]:.2f} % | "
                f"{100 * right_mv[name] / total[name]:.2f} % |"
            )
        n, r, rm = len(cases), sum(right.values()), sum(right_mv.values())
        print(f"| **all** | **{n}** | **{100 * r / n:.2f} %** | **{100 * rm / n:.2f} %** |\n")
    both = Counter(
        (a == c["label"], b == c["label"]) for c, a, b in zip(cases, ours, theirs, strict=True)
    )
    print(f"(this grader right, math-verify right): {dict(both)}")
    missed = [(c, a) for c, a in zip(cases, ours, strict=True) if a != c["label"]]
    for case, verdict in missed[:show]:
        print(f"MISS {case['class']}/{case['wrapper']} gold={case['gold']!r} "
              f"label={case['label']} ours={verdict}: {case['response']!r}")  # fmt: skip


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}, "
        f"{datetime.date.today().isoformat()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--math", action="store_true")
    parser.add_argument("--code", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="math runs per set (best wall)")
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--tests", type=int, default=5)
    parser.add_argument(
        "--agreement", action="store_true", help="the generated suite: agreement per class"
    )
    parser.add_argument("--show", type=int, default=0, help="with --agreement: misses to print")
    args = parser.parse_args()
    if args.agreement:
        print(f"machine: {machine()}\n")
        bench_agreement(args.show)
        return
    both = not (args.math or args.code)
    load_before = f"{os.getloadavg()[0]:.2f}"
    rows = []
    if args.math or both:
        rows += bench_math(args.repeat)
    if args.code or both:
        rows += bench_code(args.problems, args.tests)
    print(f"machine: {machine()}")
    print(f"load average before: {load_before}, after: {os.getloadavg()[0]:.2f}\n")
    print("| grader | scenario | measured | target |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    missed = [r for r in rows if r[3].startswith("MISSED")]
    if missed:
        print("\nMISSED: " + "; ".join(r[1] for r in missed))


if __name__ == "__main__":
    main()
