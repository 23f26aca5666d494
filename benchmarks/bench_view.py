"""`pacore view` at scale: load an eval folder of 10,000 records, filter it, page it.

    .venv/bin/python benchmarks/bench_view.py [--records 10000] [--out /tmp/bench_view]

Writes an eval folder whose `results.jsonl` holds `--records` (problem, method, run)
records shaped as `pacore eval` writes them (4 methods × 4 runs per problem, 16 round-1
grades and 4 references each), then times what opening it in `pacore view` costs:
`view.data.load` (read and index every record), the emergent-correctness filter, and the
first page. It also writes each record's trace (`traces.sqlite`: 16 round-1 cards and
the synthesis for PaCoRe, 16 votes for SC) and stores problem p0's texts, one of them
a megabyte, and `problems.jsonl` (each problem's question and gold, as `pacore eval`
stores them), then times a problem page (16 runs' cards) and opening that megabyte text,
and the pages of issue 21: a mark filter, PaCoRe right / SC wrong sorted by
disagreement, and the compare view. Prints markdown tables; the target is under 2 s to
open.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

from pacore.eval.datasets import Sample  # noqa: E402
from pacore.eval.problems_file import PROBLEMS, StoredProblem  # noqa: E402
from pacore.eval.records import RunRecord  # noqa: E402
from pacore.eval.traces import TRACES, CardTrace, RoundTrace, Trace, TraceFile  # noqa: E402
from pacore.store import Key, TrajectoryStore  # noqa: E402
from pacore.types import Completion, Usage  # noqa: E402
from pacore.view import data  # noqa: E402

METHODS = ("pacore:low", "pacore:high", "sc:16", "single")


def record(pid: int, method: str, run: int, rng: random.Random) -> dict[str, object]:
    """One result line as `pacore eval` writes it."""
    grades = tuple(rng.random() < 0.3 for _ in range(16))
    refs = grades[:4] if method.startswith("pacore") else ()
    correct = rng.random() < 0.5
    answer = "42" if correct else str(rng.randint(0, 99))
    return RunRecord(
        id=f"p{pid}", method=method, family=method.split(":")[0], run=run, status="ok",
        error=None, answer=f"The answer is \\boxed{{{answer}}}.", extracted=answer,
        score=1.0 if correct else 0.0, correct=correct, reason="",
        ttc_tokens=rng.randint(1000, 90000),
        max_prompt_tokens=3000, max_context_tokens=9000, requests=5, trajectories=5,
        round_correct=(grades,), ref_correct=refs, ref_answers=tuple("42" for _ in refs),
        votes=(), final_text="Reasoning... " * 20 if refs else None, latency_s=1.5,
    ).to_dict()  # fmt: skip


MESSAGE = "Checking each reference in turn, the sum is consistent. " * 5


def trace(method: str, run: int, rng: random.Random) -> Trace:
    """A run's trace as `pacore eval` writes it (texts named, not copied)."""

    def cards(prefix: str, n: int) -> tuple[CardTrace, ...]:
        return tuple(
            CardTrace(
                index=i, attempt=0, status="ok", tokens=rng.randint(500, 9000),
                message=f"{MESSAGE}\\boxed{{{rng.randint(0, 99)}}}", chars=20_000,
                sample=f"{prefix}/{i}", answer=str(rng.randint(0, 99)),
                correct=rng.random() < 0.3,
            )
            for i in range(n)
        )  # fmt: skip

    width = 1 if method == "single" else 16
    rounds = [RoundTrace(1, width, 0, "q", "s", cards("pool", width))]
    if method.startswith("pacore"):
        rounds.append(RoundTrace(2, 1, 16, f"r{run}", "s", cards(f"{method}/run{run}/r2/a0", 1)))
    return Trace("m", tuple(rounds), (len(rounds), 0))


def write_traces(out: Path, records: int, rng: random.Random) -> None:
    """Every record's trace, and problem p0's round-1 texts (the first a megabyte)."""
    per_problem = len(METHODS) * 4
    traces = TraceFile(out / TRACES, out / "trajectories.sqlite")
    for i in range(records):
        pid, rest = divmod(i, per_problem)
        method, run = METHODS[rest // 4], rest % 4
        traces.put((f"p{pid}", method, run), trace(method, run, rng))
    traces.close()
    with TrajectoryStore(out / "trajectories.sqlite") as store:
        for i in range(16):
            text = ("Let me think about this carefully. " * 30_000)[
                : 1_000_000 if i == 0 else 20_000
            ]
            completion = Completion(text, finish_reason="stop", usage=Usage(100, 9000))
            store.put(Key("m", "q", "s", f"pool/{i}"), completion)


def main() -> None:
    """Write the folder, then time opening, filtering and paging it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_view"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    per_problem = len(METHODS) * 4
    with (args.out / "results.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(args.records):
            pid, rest = divmod(i, per_problem)
            method, run = METHODS[rest // 4], rest % 4
            fh.write(json.dumps(record(pid, method, run, rng)) + "\n")
    size = (args.out / "results.jsonl").stat().st_size
    write_traces(args.out, args.records, rng)
    with (args.out / PROBLEMS).open("w", encoding="utf-8") as fh:  # as `pacore eval` stores them
        for pid in range(-(-args.records // per_problem)):
            question = f"Problem {pid}: what is six times seven?"
            sample = Sample(f"p{pid}", ({"role": "user", "content": question},), answer="42")
            fh.write(json.dumps(StoredProblem.of(sample, "bench").to_dict()) + "\n")
    started = time.perf_counter()
    loaded = data.load(args.out)
    opened = time.perf_counter() - started
    started = time.perf_counter()
    emergent = data.filter_rows(loaded, data.Filters(emergent=True))
    filtered = time.perf_counter() - started
    started = time.perf_counter()
    first = data.page(emergent, 1)
    paged = time.perf_counter() - started
    from starlette.testclient import TestClient

    from pacore.view.app import create_app

    started = time.perf_counter()
    app = create_app(loaded)  # the SC pairs and method partners are found here, once
    built = time.perf_counter() - started
    with TestClient(app) as client:
        started = time.perf_counter()
        overview = client.get("/")
        rendered = time.perf_counter() - started
        started = time.perf_counter()
        listed = client.get("/problems?emergent=1")
        listed_s = time.perf_counter() - started
        started = time.perf_counter()
        problem = client.get("/problem/p0")
        problem_s = time.perf_counter() - started
        started = time.perf_counter()
        big = client.get("/text/0/1/0")
        big_s = time.perf_counter() - started
        timed = {}
        for name, url in (
            ("mark filter", "/problems?mark=held"),
            (
                "PaCoRe right, SC wrong, by disagreement",
                "/problems?versus=pacore-right&sort=-disagreement",
            ),
            ("sorted by TTC", "/problems?sort=-ttc"),
            ("compare view", "/compare/p0?a=pacore:low&b=sc:16&run=0"),
        ):
            started = time.perf_counter()
            reply = client.get(url)
            timed[name] = time.perf_counter() - started
            assert reply.status_code == 200, (url, reply.status_code)
    assert overview.status_code == listed.status_code == problem.status_code == 200
    assert len(big.text) == 1_000_000
    cards = problem.text.count('class="card ')
    print("| records | file | open (load + index) | overview page | emergent filter | "
          "first page | filtered list page |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {len(loaded.rows):,} | {size / 1e6:.1f} MB | {opened:.2f} s | "
        f"{rendered * 1000:.0f} ms | {filtered * 1000:.0f} ms ({len(emergent):,} rows) | "
        f"{paged * 1000:.1f} ms ({len(first.rows)} rows) | {listed_s * 1000:.0f} ms |"
    )
    traces_mb = (args.out / TRACES).stat().st_size / 1e6
    print()
    print("| traces.sqlite | problem page (runs, cards) | page size | 1 MB text on expand |")
    print("|---|---|---|---|")
    print(
        f"| {traces_mb:.0f} MB | {problem_s * 1000:.0f} ms (16 runs, {cards} cards) | "
        f"{len(problem.content) / 1e3:.0f} kB | {big_s * 1000:.0f} ms |"
    )
    print()
    print(f"app built (pairs found): {built * 1000:.0f} ms")
    print()
    print("| " + " | ".join(timed) + " |")
    print("|" + "---|" * len(timed))
    print("| " + " | ".join(f"{t * 1000:.0f} ms" for t in timed.values()) + " |")


if __name__ == "__main__":
    main()
