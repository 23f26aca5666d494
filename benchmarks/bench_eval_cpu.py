"""Benchmark: client CPU per upstream request, `pacore eval` against `pacore run`.

Both commands run as subprocesses against one fake vLLM-like server (a process of its
own), on the same N problems; the client's CPU comes from `os.wait4`, the request
count from the server's stats. `run` solves each problem with `--widths 16`; `eval`
runs `single`, `sc:16` and `pacore:16` for 2 runs over a round-1 pool of 16, which
is what issue 20 measured. A second `eval` on the same folder (a resume with nothing
left) shows what reading a finished folder costs. A last `eval` of `pacore:16` for one
run sends exactly the requests `run` sends (a round-1 pool of 16, one synthesis per
problem): eval's own cost on the same requests.

Every output is `--tokens` words long (60 by default, as issue 20 measured; 3000 gives
outputs of a model's length, about 18 KB each, reasoning included).

    .venv/bin/python benchmarks/bench_eval_cpu.py [--problems 300 1000] [--tokens 60]
        [--json-out F]
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

from bench_engine import (
    PYTHON,
    FakeServerProcess,
    _rusage_cpu,
    killed_on_error,
    reap,
)


def server_args(tokens: int) -> list[str]:
    """The fake vLLM-like server's options: every output `tokens` words long."""
    return ["--ttft", "0.005", "--per-token", "0", "--tokens", str(tokens), "--owned-by", "vllm"]


def problems(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            record = {"id": f"q{i}", "question": f"What is {i} plus 42?", "answer": str(i + 42)}
            fh.write(json.dumps(record) + "\n")
    return path


def client(cmd: list[str], workdir: Path) -> tuple[float, int]:
    """Run a pacore command; its CPU seconds and peak RSS (kB)."""
    err = workdir / "stderr.txt"
    with err.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=fh)
    with killed_on_error(proc):
        code, ru = reap(proc, timeout=3600)
    if code != 0:
        raise RuntimeError(f"{cmd[2]} exited {code}: {err.read_text()[-2000:]}")
    return _rusage_cpu(ru), int(ru.ru_maxrss)


def requests_of(server: FakeServerProcess) -> int:
    server.stop()
    return int(server.stats.get("requests", 0))


def measure(n: int, workdir: Path, tokens: int = 60) -> dict[str, Any]:
    data = problems(workdir / "problems.jsonl", n)
    base = [PYTHON, "-m", "pacore.cli"]
    row: dict[str, Any] = {"problems": n, "tokens": tokens}
    options = server_args(tokens)
    with FakeServerProcess(options, workdir) as server:
        out = workdir / "run.jsonl"
        cmd = [*base, "run", "--input", str(data), "--output", str(out), "--backend",
               server.url, "--widths", "16", "--quiet", "--no-text"]  # fmt: skip
        cpu, rss = client(cmd, workdir)
        reqs = requests_of(server)
    row["run"] = {"cpu_s": cpu, "requests": reqs, "ms_per_request": 1000 * cpu / reqs,
                  "rss_kb": rss}  # fmt: skip
    folder = workdir / "ev"
    with FakeServerProcess(options, workdir) as server:
        cmd = [*base, "eval", "--dataset", str(data), "--method", "single", "--method",
               "sc:16", "--method", "pacore:16", "--runs", "2", "--pool", "16",
               "--backend", server.url, "--out", str(folder), "--quiet", "--no-plots"]  # fmt: skip
        cpu, rss = client(cmd, workdir)
        reqs = requests_of(server)
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    row["eval"] = {"cpu_s": cpu, "requests": reqs, "ms_per_request": 1000 * cpu / reqs,
                   "rss_kb": rss, "folder_mb": size / 1e6}  # fmt: skip
    with FakeServerProcess(options, workdir) as server:
        cmd[cmd.index("--backend") + 1] = server.url
        cpu, rss = client(cmd, workdir)
        reqs = requests_of(server)
    row["eval_resume"] = {"cpu_s": cpu, "requests": reqs, "rss_kb": rss}
    # The requests `run` sends, and no others: one method, one run.
    with FakeServerProcess(options, workdir) as server:
        cmd = [*base, "eval", "--dataset", str(data), "--method", "pacore:16", "--runs", "1",
               "--pool", "16", "--backend", server.url, "--out", str(workdir / "same"),
               "--quiet", "--no-plots"]  # fmt: skip
        cpu, rss = client(cmd, workdir)
        reqs = requests_of(server)
    row["eval_same"] = {"cpu_s": cpu, "requests": reqs, "ms_per_request": 1000 * cpu / reqs}
    row["ratio"] = row["eval"]["ms_per_request"] / row["run"]["ms_per_request"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--tokens", type=int, default=60, help="words in every output")
    parser.add_argument("--json-out", type=Path)
    opts = parser.parse_args()
    rows = []
    for n in opts.problems:
        with tempfile.TemporaryDirectory(prefix="pacore-bench-eval-cpu-") as tmp:
            rows.append(measure(n, Path(tmp), opts.tokens))
        print(f"  {n} problems done", file=sys.stderr)
    print("| problems | run: ms CPU / request (requests) | eval: ms CPU / request (requests) "
          "| eval / run | eval peak RSS | folder | resume CPU "
          "| eval of pacore:16, 1 run: ms / request (requests), / run |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        run, ev, again, same = r["run"], r["eval"], r["eval_resume"], r["eval_same"]
        print(
            f"| {r['problems']:,} | {run['ms_per_request']:.2f} ({run['requests']:,}) "
            f"| {ev['ms_per_request']:.2f} ({ev['requests']:,}) | {r['ratio']:.1f}x "
            f"| {ev['rss_kb'] / 1024:.0f} MB | {ev['folder_mb']:.1f} MB "
            f"| {again['cpu_s']:.2f} s ({again['requests']} requests) "
            f"| {same['ms_per_request']:.2f} ({same['requests']:,}), "
            f"{same['ms_per_request'] / run['ms_per_request']:.1f}x |"
        )
    if opts.json_out:
        opts.json_out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
