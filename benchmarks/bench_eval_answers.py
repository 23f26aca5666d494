"""Benchmark: an evaluation whose samples disagree, graded by the math grader.

The fake server's samples all give one answer, so a vote never compares two different
answers and the grader's worker processes are never asked. A real model's samples on
hard problems disagree. Here every completion's conclusion is a MATH-500 worked
solution (`../shared/data/math500.jsonl`) picked by a hash of the request (the same
texts on every run), after a reasoning block, answered at once in process (the
backend's `start` and `complete` replaced, as `bench_eval_machinery.py` does): what is
left is eval's own work, the grading of 500 real golds against real solutions, the votes
over 16 mostly different answers, and the report's analyses, math-verify included.

One `pacore eval` of `single`, `sc:16` and `pacore:16` for 2 runs over the 500
problems, in a fresh interpreter; CPU from `os.wait4` (the grader's worker processes
included) and wall time. `--problems N` takes the first N.

    .venv/bin/python benchmarks/bench_eval_answers.py [--problems 500] [--reps 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import PYTHON, _rusage_cpu, killed_on_error, reap

MATH500 = Path(__file__).resolve().parents[2] / "shared" / "data" / "math500.jsonl"


def _client(workdir: Path) -> None:
    """One evaluation, in this process, every request answered with solutions."""
    import zlib

    from pacore.backends.openai_compat import client
    from pacore.cli import main
    from pacore.types import Completion, Usage

    rows = [json.loads(line) for line in MATH500.read_text(encoding="utf-8").splitlines()]
    solutions = [r["solution"] for r in rows]
    thinking = "<think>" + "Let me think about it. " * 100 + "</think>"

    async def start(self: Any) -> None:
        self.model = self.model or "fake-model"

    async def complete(self: Any, messages: Any, n: int, params: Any, **kw: Any) -> Any:
        if kw.get("counter") is not None:
            kw["counter"].requests += 1
        out = []
        for i in range(n):
            key = f"{messages[-1]['content']}|{params.seed}|{i}".encode()
            text = thinking + solutions[zlib.crc32(key) % len(solutions)]
            out.append(Completion(text, finish_reason="stop", usage=Usage(300, 900)))
        return out

    client.OpenAIBackend.start = start  # type: ignore[method-assign]
    client.OpenAIBackend.complete = complete  # type: ignore[method-assign]
    argv = ["eval", "--dataset", str(workdir / "problems.jsonl"), "--runs", "2", "--pool",
            "16", "--backend", "http://127.0.0.1:9/v1", "--out", str(workdir / "ev"),
            "--quiet", "--no-plots", "--method", "single", "--method", "sc:16",
            "--method", "pacore:16"]  # fmt: skip
    code = main(argv)
    raise SystemExit(code)


def measure(n: int, workdir: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in MATH500.read_text(encoding="utf-8").splitlines()][:n]
    with (workdir / "problems.jsonl").open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({"id": r["id"], "question": r["question"], "answer": r["answer"]}))
            fh.write("\n")
    err = workdir / "stderr.txt"
    started = time.perf_counter()
    with err.open("wb") as fh:
        proc = subprocess.Popen(
            [PYTHON, __file__, "--client", str(workdir)], stdout=subprocess.DEVNULL, stderr=fh
        )
    with killed_on_error(proc):
        code, ru = reap(proc, timeout=3600)
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"eval exited {code}: {err.read_text()[-2000:]}")
    summary = json.loads((workdir / "ev" / "summary.json").read_text())
    pass_at_1 = {name: m.get("accuracy") for name, m in summary["methods"].items()}
    return {"problems": n, "cpu_s": _rusage_cpu(ru), "wall_s": wall, "pass_at_1": pass_at_1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--client", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.client is not None:
        _client(opts.client)
        return
    print("| problems | CPU (workers included) | wall | pass@1 single / sc:16 / pacore:16 |")
    print("|---|---|---|---|")
    for _ in range(opts.reps):
        with tempfile.TemporaryDirectory(prefix="pacore-bench-answers-") as tmp:
            row = measure(opts.problems, Path(tmp))
        accuracy = " / ".join(
            f"{row['pass_at_1'].get(m, 0):.3f}" for m in ("single", "sc:16", "pacore:16")
        )
        print(
            f"| {row['problems']} | {row['cpu_s']:.1f} s | {row['wall_s']:.1f} s | {accuracy} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
