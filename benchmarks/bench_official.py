"""Benchmark: client CPU of `pacore run` against a client shaped like the published script.

The authors' batch script is not in this repository. `baseline_client` below is our
own stand-in, written from its described behaviour (PACORE.md, section 6): a new HTTP
session per request with keep-alive off, K identical requests instead of one with
`n = K`, usage ignored, the same synthesis template. Both clients solve the same
problems with the same widths against one fake vLLM-like server in its own process;
each client is a subprocess whose CPU comes from `os.wait4`. Runs are interleaved.

    .venv/bin/python benchmarks/bench_official.py [--problems 64] [--preset medium] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
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

SERVER = ["--ttft", "0.05", "--per-token", "0.001", "--tokens", "100", "--owned-by", "vllm"]
WIDTHS = {"low": [4], "medium": [16], "high": [32, 4]}

BASELINE = r"""
import asyncio, json, sys
import aiohttp
from pacore.core.prompts import render_default

url, model, widths, stream = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == "1"
problems = [json.loads(line) for line in open(sys.argv[5])]

async def one(messages):
    body = {"model": model, "messages": messages, "temperature": 1.0, "top_p": 1.0,
            "stream": stream}
    connector = aiohttp.TCPConnector(force_close=True)  # keep-alive off
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(url + "/chat/completions", json=body) as response:
            if not stream:
                data = await response.json()
                return data["choices"][0]["message"]["content"] or ""
            parts = []
            async for raw in response.content:
                line = raw.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                delta = json.loads(line[6:])["choices"][0]["delta"]
                parts.append(delta.get("content") or "")
            return "".join(parts)

async def solve(question):
    refs = []
    for width in [*widths, 1]:
        prompt = question if not refs else render_default(question, refs)
        texts = await asyncio.gather(*(one([{"role": "user", "content": prompt}])
                                       for _ in range(width)))
        refs = [t.split("</think>")[-1] for t in texts]
    return refs[0]

async def main():
    semaphore = asyncio.Semaphore(64)
    async def bounded(p):
        async with semaphore:
            return await solve(p["question"])
    answers = await asyncio.gather(*(bounded(p) for p in problems))
    print(json.dumps(answers))

asyncio.run(main())
"""


def client(cmd: list[str], workdir: Path) -> float:
    err = workdir / "stderr.txt"
    with err.open("wb") as fh:
        proc = subprocess_popen(cmd, workdir, fh)
    with killed_on_error(proc):
        code, ru = reap(proc, timeout=600)
    if code != 0:
        raise RuntimeError(f"{cmd[1:3]} exited {code}: {err.read_text()[-2000:]}")
    return _rusage_cpu(ru)


def subprocess_popen(cmd: list[str], workdir: Path, err: Any) -> Any:
    import subprocess

    return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=err)


def measure(opts: argparse.Namespace, workdir: Path, *, stream: bool) -> dict[str, list[float]]:
    data = workdir / "problems.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for i in range(opts.problems):
            fh.write(json.dumps({"id": f"q{i}", "question": f"What is {i} plus 42?"}) + "\n")
    script = workdir / "baseline_client.py"
    script.write_text(BASELINE)
    cpu: dict[str, list[float]] = {"pacore": [], "baseline": []}
    for rep in range(opts.reps):
        with FakeServerProcess(SERVER, workdir) as server:
            base = [PYTHON, str(script), server.url, "fake", json.dumps(WIDTHS[opts.preset])]
            cpu["baseline"].append(client([*base, "1" if stream else "0", str(data)], workdir))
            out = workdir / f"out{rep}{int(stream)}.jsonl"
            cmd = [PYTHON, "-m", "pacore.cli", "run", "--input", str(data), "--output",
                   str(out), "--backend", server.url, "--preset", opts.preset, "--quiet",
                   "--no-text"] + (["--stream"] if stream else [])  # fmt: skip
            cpu["pacore"].append(client(cmd, workdir))
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--preset", choices=sorted(WIDTHS), default="medium")
    parser.add_argument("--reps", type=int, default=3)
    opts = parser.parse_args()
    print("| workload | pacore client CPU | baseline client CPU | pacore / baseline |")
    print("|---|---|---|---|")
    for stream in (False, True):
        with tempfile.TemporaryDirectory(prefix="pacore-bench-official-") as tmp:
            cpu = measure(opts, Path(tmp), stream=stream)
        ours, theirs = statistics.median(cpu["pacore"]), statistics.median(cpu["baseline"])
        name = f"{opts.problems} x {opts.preset}" + (", streamed" if stream else "")
        print(f"| {name} | {ours:.2f} s | {theirs:.2f} s | {ours / theirs:.2f}x |")


if __name__ == "__main__":
    main()
