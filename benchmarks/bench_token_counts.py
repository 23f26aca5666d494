"""Reported against true tokens: what each server says, and what pacore reports.

    .venv/bin/python benchmarks/bench_token_counts.py [--problems 6] [--width 4] [--max-tokens 48]

Starts llama.cpp's own HTTP server (the xllamacpp wheel, SmolLM2-135M) in its own
process and asks it the same questions several ways: the server's raw usage for a
plain `n = K` answer (what pacore used to read), then `pacore`'s backend with `n`
(streamed for exact per-choice usage), with `--no-n`, and streamed `n = 1`. The
true count of each trajectory is the server's own `/tokenize` of its text, plus the
end-of-turn token for one that stopped by itself (llama.cpp counts it). A fake
vLLM-style server (one usage per request) is measured the same way against its own
token count. Prints a markdown table: server, mode, trajectories, reported, true.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.fake_server import FakeConfig, FakeServer  # noqa: E402

from pacore.backends.openai_compat import OpenAIBackend  # noqa: E402
from pacore.types import Completion, SamplingParams  # noqa: E402

QUESTIONS = [
    "Name three colours.",
    "What is 17 times 3? Explain.",
    "Write a haiku about rain.",
    "List four animals that live in the sea.",
    "Why is the sky blue?",
    "Give two tips for sleeping well.",
    "What is the capital of France?",
    "Describe a cat in one sentence.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def true_tokens(root: str, text: str, finish: str | None) -> int:
    """The server's own count of a trajectory: its text, plus end-of-turn if it stopped."""
    tokens = len(post(f"{root}/tokenize", {"content": text})["tokens"])
    return tokens + (1 if finish == "stop" else 0)


def raw_plain(root: str, width: int, max_tokens: int, questions: list[str]) -> tuple[int, int, int]:
    """The server's usage of plain `n = width` answers, against their true tokens."""
    reported = true = count = 0
    for seed, q in enumerate(questions):
        body = {"messages": [{"role": "user", "content": q}], "n": width, "seed": seed,
                "max_tokens": max_tokens, "temperature": 1.0}  # fmt: skip
        answer = post(f"{root}/v1/chat/completions", body)
        reported += answer["usage"]["completion_tokens"]
        for choice in answer["choices"]:
            true += true_tokens(root, choice["message"]["content"], choice["finish_reason"])
            count += 1
    return count, reported, true


async def through_pacore(
    base: str, root: str | None, width: int, params: SamplingParams, questions: list[str],
    **options: Any,
) -> tuple[int, int, int, bool]:  # fmt: skip
    """pacore's counts of `width` samples per question, against the true tokens."""
    reported = true = count = 0
    exact = True
    async with OpenAIBackend(base, **options) as backend:
        await backend.start()
        for seed, q in enumerate(questions):
            msgs = [{"role": "user", "content": q}]
            out: list[Completion] = await backend.complete(
                msgs, width, SamplingParams(**{**params.__dict__, "seed": seed})
            )
            for c in out:
                reported += c.usage.completion_tokens
                exact = exact and not c.usage.estimated
                if root is not None:
                    true += true_tokens(root, c.text, c.finish_reason)
                count += 1
    return count, reported, true, exact


def row(server: str, mode: str, count: int, reported: int, true: int, per_choice: str) -> str:
    diff = reported - true
    share = f"{100 * diff / true:+.1f}%" if true else "—"
    return (
        f"| {server} | {mode} | {count} | {reported:,} | {true:,} | {diff:+,} ({share}) "
        f"| {per_choice} |"
    )


async def measure(port: int, problems: int, width: int, max_tokens: int) -> list[str]:
    """The table's rows, against the llama.cpp server on `port` and a fake vLLM."""
    questions = (QUESTIONS * 4)[:problems]
    root, base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/v1"
    rows = [
        row("llama.cpp", f"raw usage of a plain n={width} answer (read before)",
            *raw_plain(root, width, max_tokens, questions), "first choice only"),
    ]  # fmt: skip
    for mode, params, options in [
        (f"pacore, n={width} (streamed)", SamplingParams(max_tokens=max_tokens), {}),
        ("pacore, --no-n (n=1 each)", SamplingParams(max_tokens=max_tokens), {"use_n": False}),
        (f"pacore, --stream, n={width}", SamplingParams(max_tokens=max_tokens, stream=True), {}),
    ]:
        count, reported, true, exact = await through_pacore(
            base, root, width, params, questions, **options
        )
        rows.append(row("llama.cpp", mode, count, reported, true,
                        "exact" if exact else "estimated"))  # fmt: skip
    async with FakeServer(FakeConfig(record_bodies=False)) as fake:
        count, reported, _, exact = await through_pacore(
            fake.url, None, width, SamplingParams(max_tokens=max_tokens), questions
        )
        rows.append(row("fake vLLM-style (one usage per request)", f"pacore, n={width}",
                        count, reported, fake.stats.completion_tokens,
                        "exact" if exact else "split, estimated"))  # fmt: skip
    return rows


def main() -> None:
    """Start llama.cpp's server, measure, print the table, stop the server."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=6)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    port = free_port()
    cmd = [sys.executable, "-m", "tests.llama_server", "--port", str(port), "--slots", "4",
           "--ctx-per-slot", "1024"]  # fmt: skip
    server = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()
        rows = asyncio.run(measure(port, args.problems, args.width, args.max_tokens))
    finally:
        server.terminate()
        server.wait()
    print("| server | mode | trajectories | reported | true | reported − true | per choice |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
