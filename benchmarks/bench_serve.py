"""`pacore serve` under load: the openai SDK against the server, the fake upstream behind it.

Three processes, as deployed: the fake upstream (`python -m tests.fake_server`), `pacore
serve --upstream ...`, and this script's clients (`openai.AsyncOpenAI`, one shared pool).

    .venv/bin/python benchmarks/bench_serve.py [--requests 200] [--passthrough 64]

1. `--requests` concurrent `pacore-low` requests (4 + 1 trajectories each): every one
   must succeed; p50/p99 latency against the upstream critical path (two rounds of one
   request each: 2 x (ttft + tokens x per-token)), requests/s, the server's peak RSS.
2. Passthrough overhead: `--passthrough` concurrent plain requests, first straight to
   the upstream, then through pacore serve; p50/p99 of each and the difference.
Prints a markdown table; figures go in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
QUESTION = [{"role": "user", "content": "What is 6 * 7?"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(args: list[str], ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[:3]} did not start")
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def burst(base_url: str, model: str, count: int) -> tuple[list[float], float, int]:
    """`count` concurrent requests: their latencies (s), the wall time, the failures."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=120)

    async def one() -> float | None:
        start = time.perf_counter()
        try:
            reply = await client.chat.completions.create(model=model, messages=QUESTION)  # type: ignore[arg-type]
        except openai.OpenAIError:
            return None
        assert reply.choices[0].message.content
        return time.perf_counter() - start

    started = time.perf_counter()
    got = await asyncio.gather(*(one() for _ in range(count)))
    wall = time.perf_counter() - started
    await client.close()
    ok = [g for g in got if g is not None]
    return ok, wall, count - len(ok)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--passthrough", type=int, default=64)
    p.add_argument("--ttft", type=float, default=0.05)
    p.add_argument("--per-token", type=float, default=0.002)
    p.add_argument("--tokens", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3, help="passthrough bursts, best p50 kept")
    args = p.parse_args()

    up_port, serve_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    served = f"http://127.0.0.1:{serve_port}/v1"
    fake = [PY, "-m", "tests.fake_server", "--port", str(up_port), "--ttft", str(args.ttft)]
    fake += ["--per-token", str(args.per_token), "--tokens", str(args.tokens)]
    serve = [PY, "-m", "pacore", "serve", "--upstream", upstream, "--port", str(serve_port)]
    serve += ["--concurrency", "256", "--wait-ready", "30"]
    critical = 2 * (args.ttft + args.tokens * args.per_token)
    rows: list[tuple[str, str]] = []
    with process(fake, f"{upstream}/models"), process(serve, f"{served[:-3]}/health") as srv:
        asyncio.run(burst(served, "pacore-low", 8))  # warm up connections
        lat, wall, failed = asyncio.run(burst(served, "pacore-low", args.requests))
        rows += [
            (f"{args.requests} concurrent pacore-low: failed", str(failed)),
            ("p50 latency / critical path", f"{pct(lat, 0.5):.3f} s / {critical:.3f} s"),
            ("p99 latency / critical path", f"{pct(lat, 0.99):.3f} s / {critical:.3f} s"),
            ("requests/s", f"{args.requests / wall:.0f}"),
            ("server peak RSS", f"{peak_rss_mb(srv.pid):.0f} MB"),
        ]
        best: dict[str, tuple[float, float]] = {}
        for _ in range(args.rounds):
            for name, url in (("direct", upstream), ("via pacore", served)):
                lat, _, failed = asyncio.run(burst(url, "fake-model", args.passthrough))
                assert not failed
                p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
                if name not in best or p50 < best[name][0]:
                    best[name] = (p50, p99)
        (d50, d99), (v50, v99) = best["direct"], best["via pacore"]
        n = args.passthrough
        rows += [
            (f"passthrough x{n}: direct p50 / p99", f"{d50 * 1000:.1f} / {d99 * 1000:.1f} ms"),
            (f"passthrough x{n}: via pacore p50 / p99", f"{v50 * 1000:.1f} / {v99 * 1000:.1f} ms"),
            (
                "passthrough overhead p50 / p99",
                f"{(v50 - d50) * 1000:.1f} / {(v99 - d99) * 1000:.1f} ms",
            ),
            ("server peak RSS (after all)", f"{peak_rss_mb(srv.pid):.0f} MB"),
        ]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
