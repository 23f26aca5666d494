"""Benchmark: the client CPU of `pacore eval` and `pacore run` with every request
answered at once, in process: what each command costs besides HTTP.

Each measurement is a fresh interpreter that runs the `pacore` command line in process
with `OpenAIBackend.start` and `OpenAIBackend.complete` replaced by instant stand-ins
(the same completion text as the fake server's default responder, 30 prompt and 60
completion tokens). Nothing goes over the network, so the CPU left is the command's own:
start-up, the engine, and for eval the store, grading, traces, results lines and report.
Its CPU comes from `os.wait4`; the fastest of `--reps` is kept, the workloads
alternated. Workloads, on N problems:

  run    `pacore run --widths 16 --no-text` (2 requests a problem)
  same   `pacore eval --method pacore:16 --runs 1 --pool 16` (the same requests)
  eval   `pacore eval` of single, sc:16 and pacore:16 for 2 runs, pool 16 (3 requests)

    .venv/bin/python benchmarks/bench_eval_machinery.py [--problems 1000] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import PYTHON, _rusage_cpu, killed_on_error, reap

WORKLOADS = ("run", "same", "eval")
TEXT = "<think>reasoning about it, sample {i}</think>The answer is \\boxed{{42}}."


def _client(workload: str, workdir: Path) -> None:
    """One measurement, in this process: the command line with instant requests."""
    from pacore.backends.openai_compat import client
    from pacore.cli import main
    from pacore.types import Completion, Usage

    async def start(self: Any) -> None:
        self.model = self.model or "fake-model"

    async def complete(self: Any, messages: Any, n: int, params: Any, **kw: Any) -> Any:
        if kw.get("counter") is not None:
            kw["counter"].requests += 1
        usage = Usage(30, 60)
        return [Completion(TEXT.format(i=i), finish_reason="stop", usage=usage) for i in range(n)]

    client.OpenAIBackend.start = start  # type: ignore[method-assign]
    client.OpenAIBackend.complete = complete  # type: ignore[method-assign]
    data, url = str(workdir / "problems.jsonl"), "http://127.0.0.1:9/v1"
    if workload == "run":
        argv = ["run", "--input", data, "--output", str(workdir / "run.jsonl"), "--widths",
                "16", "--no-text"]  # fmt: skip
    else:
        methods = ["pacore:16"] if workload == "same" else ["single", "sc:16", "pacore:16"]
        argv = ["eval", "--dataset", data, "--runs", "1" if workload == "same" else "2",
                "--pool", "16", "--out", str(workdir / workload), "--no-plots"]  # fmt: skip
        argv += [x for m in methods for x in ("--method", m)]
    code = main([*argv, "--backend", url, "--quiet"])
    if code != 0:
        raise SystemExit(f"{workload} exited {code}")


def measure(workload: str, workdir: Path) -> float:
    """CPU seconds of one workload in a fresh interpreter."""
    for left in ("run.jsonl", workload):
        path = workdir / left
        if path.is_file():
            path.unlink()
        elif path.is_dir():
            for f in path.iterdir():
                f.unlink()
            path.rmdir()
    cmd = [PYTHON, __file__, "--_client", workload, "--_workdir", str(workdir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    with killed_on_error(proc):
        code, ru = reap(proc, timeout=1800)
    if code != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"{workload} failed ({code}): {err[-2000:]}")
    return _rusage_cpu(ru)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--_client", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--_workdir", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts._client:
        _client(opts._client, opts._workdir)
        return
    with tempfile.TemporaryDirectory(prefix="pacore-bench-machinery-") as tmp:
        workdir = Path(tmp)
        with (workdir / "problems.jsonl").open("w", encoding="utf-8") as fh:
            for i in range(opts.problems):
                record = {"id": f"q{i}", "question": f"What is {i} plus 42?", "answer": str(i + 42)}
                fh.write(json.dumps(record) + "\n")
        cpu: dict[str, list[float]] = {w: [] for w in WORKLOADS}
        for _ in range(opts.reps):
            for workload in WORKLOADS:
                cpu[workload].append(measure(workload, workdir))
    best = {w: min(v) for w, v in cpu.items()}
    print(f"{opts.problems} problems, fastest of {opts.reps}, CPU seconds (whole process)")
    print("| run | eval of pacore:16, 1 run (same requests) | eval, 3 methods x 2 runs |")
    print("|---|---|---|")
    print(f"| {best['run']:.2f} s | {best['same']:.2f} s ({best['same'] / best['run']:.1f}x) "
          f"| {best['eval']:.2f} s ({best['eval'] / best['run']:.1f}x) |")  # fmt: skip
    if opts.json_out:
        opts.json_out.write_text(json.dumps({"problems": opts.problems, "cpu_s": cpu}, indent=2))


if __name__ == "__main__":
    main()
