"""Benchmark: the evaluation protocol issues no round-1 request beyond the pools.

Evaluates pacore:low, pacore:medium, pacore:high, sc:4, sc:16 and sc:64 on N problems
x R runs with a pool of P against the fake server (a simulated model, in this
process's own thread), then counts the requests the server saw, split into round-1
requests (the prompt is the bare problem) and synthesis requests.

    .venv/bin/python benchmarks/bench_eval.py [--problems 30] [--runs 8] [--pool 64]

Expected: round-1 requests == problems x ceil(pool / 16) (the pool is requested 16
samples at a time), whatever the number of methods and runs; synthesis requests ==
problems x runs x (1 + 1 + 2). A second, identical invocation on the same output
folder must send no request at all.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.eval.sim_model import CORRECT, SimulatedModel  # noqa: E402
from tests.fake_server import FakeConfig, run_in_thread  # noqa: E402

from pacore.cli import main  # noqa: E402

METHODS = ["pacore:low", "pacore:medium", "pacore:high", "sc:4", "sc:16", "sc:64"]


class Counting:
    """Wraps the simulated model to count round-1 and synthesis calls (one per choice)."""

    def __init__(self) -> None:
        self.model = SimulatedModel()
        self.round1_choices = 0
        self.synthesis_choices = 0
        self.round1_requests = 0
        self.synthesis_requests = 0

    def __call__(self, messages: list[dict[str, Any]], index: int, body: dict[str, Any]) -> str:
        synthesis = "Reference Responses:" in str(messages[-1]["content"])
        if synthesis:
            self.synthesis_choices += 1
            self.synthesis_requests += index == 0
        else:
            self.round1_choices += 1
            self.round1_requests += index == 0
        return self.model(messages, index, body)


def run(args: argparse.Namespace, out: Path, data: Path) -> dict[str, Any]:
    counting = Counting()
    config = FakeConfig(responder=counting, record_bodies=False)
    with run_in_thread(config) as srv:
        argv = ["eval", "--dataset", str(data), "--out", str(out), "--backend", srv.url]
        argv += ["--runs", str(args.runs), "--pool", str(args.pool), "--seed", "1", "--quiet"]
        argv += ["--no-plots"]
        for m in METHODS:
            argv += ["--method", m]
        started = time.perf_counter()
        code = main(argv)
        wall = time.perf_counter() - started
        requests = srv.stats.requests
    if code != 0:
        raise SystemExit(f"pacore eval exited {code}")
    return {
        "wall_s": wall,
        "requests": requests,
        "round1_requests": counting.round1_requests,
        "round1_samples": counting.round1_choices,
        "synthesis_requests": counting.synthesis_requests,
    }


def main_() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", type=int, default=30)
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--pool", type=int, default=64)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "problems.jsonl"
        with data.open("w") as fh:
            for i in range(args.problems):
                record = {"id": f"p{i}", "question": f"Problem {i}?", "answer": CORRECT}
                fh.write(json.dumps(record) + "\n")
        first = run(args, Path(tmp) / "out", data)
        second = run(args, Path(tmp) / "out", data)
    expected_r1 = args.problems * math.ceil(args.pool / 16)
    expected_synth = args.problems * args.runs * (1 + 1 + 2)
    rows = [
        ("round-1 requests", first["round1_requests"], f"== {expected_r1}"),
        ("round-1 samples", first["round1_samples"], f"== {args.problems * args.pool}"),
        ("synthesis requests", first["synthesis_requests"], f"== {expected_synth}"),
        ("all requests", first["requests"], f"== {expected_r1 + expected_synth}"),
        ("wall time (s)", f"{first['wall_s']:.1f}", "info"),
        ("rerun: requests", second["requests"], "== 0"),
        ("rerun: wall time (s)", f"{second['wall_s']:.1f}", "info"),
    ]
    print(f"{args.problems} problems x {args.runs} runs, pool {args.pool}, methods {METHODS}")
    print("| metric | measured | target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")
    ok = (
        first["round1_requests"] == expected_r1
        and first["synthesis_requests"] == expected_synth
        and second["requests"] == 0
    )
    print("PASS" if ok else "MISSED")


if __name__ == "__main__":
    main_()
