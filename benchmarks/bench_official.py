"""Benchmark: client CPU of `pacore run` against a client shaped like the published script.

The authors' batch script is not in this repository. `BASELINE` below is our own
stand-in, written from its described behaviour (PACORE.md, section 6) and from what the
published `base_exp.py` does per problem, in our words: a new HTTP session per request
with keep-alive off, K identical requests instead of one with `n = K`, usage ignored,
retries with 5-20 s sleeps, a log line per problem and round (loguru when installed),
the messages deep-copied and the Jinja2 template compiled for every synthesis prompt,
each round's answers sorted and shuffled with a fixed seed, every round's texts written
at the end. Its transport helper is not published; ours reads SSE lines with
`json.loads` and concatenates the deltas. Both clients solve the same
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
from pacore.core.prompts import DEFAULT_TEMPLATE

SERVER = ["--ttft", "0.05", "--per-token", "0.001", "--tokens", "100", "--owned-by", "vllm"]
WIDTHS = {"low": [4], "medium": [16], "high": [32, 4]}

BASELINE = r"""
import asyncio, copy, json, random, sys
import aiohttp, jinja2
try:
    from loguru import logger  # what the published script logs with
except ImportError:
    import logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s | %(levelname)s | %(message)s")
    logger = logging.getLogger("baseline")

url, model, widths, stream = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == "1"
problems = [json.loads(line) for line in open(sys.argv[5])]
output, max_concurrent, retry_times, seed = sys.argv[6], 64, 5, 42
with open(sys.argv[7], encoding="utf-8") as fh:
    DEFAULT_TEMPLATE = fh.read()
semaphore = None

async def post(messages):
    body = {"model": model, "messages": messages, "max_tokens": None, "temperature": 1.0,
            "top_p": 1.0, "stream": stream}
    for attempt in range(retry_times):
        try:
            connector = aiohttp.TCPConnector(force_close=True)  # keep-alive off
            timeout = aiohttp.ClientTimeout(total=7200)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                async with session.post(url + "/chat/completions", json=body) as response:
                    response.raise_for_status()
                    if not stream:
                        return await response.json()
                    content, reasoning = "", ""
                    async for raw in response.content:
                        line = raw.decode("utf-8").strip()
                        if not line.startswith("data:"):
                            continue
                        payload = line[5:].strip()
                        if payload == "[DONE]":
                            break
                        chunk = json.loads(payload)
                        if not chunk.get("choices"):
                            continue
                        delta = chunk["choices"][0].get("delta", {})
                        content += delta.get("content") or ""
                        reasoning += delta.get("reasoning_content") or ""
                    return {"choices": [{"message": {"content": content,
                                                     "reasoning_content": reasoning}}]}
        except Exception as exc:
            logger.warning(f"attempt {attempt + 1} failed: {exc}")
            await asyncio.sleep(random.uniform(5, 20))
    raise RuntimeError("all retries failed")

async def call(messages):
    async with semaphore:
        return await post(messages)

async def parallel(messages, count):
    tasks = [asyncio.create_task(call(messages)) for _ in range(count)]
    out = []
    for next_done in asyncio.as_completed(tasks):
        try:
            message = (await next_done).get("choices", [{}])[0]["message"]
            out.append({"content": message.get("content", ""),
                        "reasoning_content": message.get("reasoning_content", "")})
        except Exception as exc:
            logger.error(f"call failed: {exc}")
            out.append({"content": "", "reasoning_content": ""})
    out.sort(key=lambda r: len(r["content"]))
    random.Random(seed).shuffle(out)
    return out

async def solve(index, problem):
    messages = [{"role": "user", "content": problem["question"]}]
    rounds = []
    logger.info(f"[{problem['id']}] {len(widths) + 1} rounds")
    for number, width in enumerate([*widths, 1]):
        logger.info(f"[{problem['id']}] Round {number}: {width} responses")
        if number == 0:
            current = messages
        else:
            refs = [r["content"].split("</think>")[-1] for r in rounds[-1] if r.get("content")]
            current = copy.deepcopy(messages)
            prompt = jinja2.Template(DEFAULT_TEMPLATE).render(
                original_prompt=problem["question"], ref_responses=refs)
            current[-1]["content"] = prompt
        rounds.append(await parallel(current, width))
    logger.info(f"[{problem['id']}] Done")
    final = rounds[-1][0] if rounds[-1] else {}
    return {"request_id": problem["id"], "final_response": final.get("content", ""),
            "final_reasoning_content": final.get("reasoning_content", ""),
            "round_responses": rounds}

async def main():
    global semaphore
    semaphore = asyncio.Semaphore(max_concurrent)
    results = await asyncio.gather(*(solve(i, p) for i, p in enumerate(problems)))
    with open(output, "w", encoding="utf-8") as fh:
        for result in results:
            fh.write(json.dumps(result, ensure_ascii=False) + "\n")

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
    import os
    import subprocess

    # Both clients start as installed packages do: from cached bytecode (a warm-up run
    # writes it), whatever this shell says about writing it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=err, env=env)


def measure(opts: argparse.Namespace, workdir: Path, *, stream: bool) -> dict[str, list[float]]:
    data = workdir / "problems.jsonl"
    with data.open("w", encoding="utf-8") as fh:
        for i in range(opts.problems):
            fh.write(json.dumps({"id": f"q{i}", "question": f"What is {i} plus 42?"}) + "\n")
    script = workdir / "baseline_client.py"
    script.write_text(BASELINE)
    template = workdir / "template.jinja"
    template.write_text(DEFAULT_TEMPLATE, encoding="utf-8")
    cpu: dict[str, list[float]] = {"pacore": [], "baseline": []}
    for rep in range(-1, opts.reps):  # rep -1 warms up (bytecode, page cache), not counted
        with FakeServerProcess(SERVER, workdir) as server:
            base = [opts.baseline_python, str(script), server.url, "fake",
                    json.dumps(WIDTHS[opts.preset]), "1" if stream else "0", str(data)]  # fmt: skip
            theirs = workdir / f"baseline{rep + 1}{int(stream)}.jsonl"
            baseline_cpu = client([*base, str(theirs), str(template)], workdir)
            out = workdir / f"out{rep + 1}{int(stream)}.jsonl"
            cmd = [PYTHON, "-m", "pacore.cli", "run", "--input", str(data), "--output",
                   str(out), "--backend", server.url, "--preset", opts.preset, "--quiet",
                   *opts.pacore_args] + (["--stream"] if stream else [])  # fmt: skip
            pacore_cpu = client(cmd, workdir)
            if rep >= 0:
                cpu["baseline"].append(baseline_cpu)
                cpu["pacore"].append(pacore_cpu)
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--preset", choices=sorted(WIDTHS), default="medium")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--baseline-python",
        default=PYTHON,
        help="the interpreter of the stand-in (one with aiohttp, jinja2 and, as the "
        "published script uses, loguru; without loguru it logs with `logging`)",
    )
    parser.add_argument(
        "--pacore-args", nargs="*", default=[], help="extra `pacore run` options, e.g. --no-text"
    )
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
