"""Token counts per choice, from what the server reported, checked before they are used.

Servers report usage in three shapes (`wire.UsageReport`), told apart by what
they send, never by their name:

- **per choice**: one usage per choice (llama.cpp's stream sends one after each
  choice's finish). Every choice's count is exact.
- **whole request**: one usage for all the choices (vLLM, SGLang and OpenAI, streamed
  or not). The request's total is exact; each choice's share is split in proportion
  to its text and marked estimated. A whole-request usage that cannot cover the
  choices it came with (fewer tokens than the choices cut at `max_tokens` must hold,
  plus one for each other non-empty choice) is not trusted: llama.cpp's plain answer
  with `n > 1` counts only the first choice. The answer's counts are then measured
  from the text (estimated) and the caller is told, so it can ask that server for
  one choice per request from then on.
- **none**: counted from the text at about four characters a token, estimated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pacore.backends.openai_compat.wire import UsageReport, WireChoice
from pacore.types import Completion, Usage


@dataclass(frozen=True)
class Counted:
    """The completions of one answer, and whether the server's usage could be trusted."""

    completions: list[Completion]
    trusted: bool = True
    """False when a whole-request usage could not cover its choices (see the module)."""
    per_choice: bool = False
    """True when the server reported each choice's own usage (llama.cpp's stream)."""


def split_tokens(total: int, weights: Sequence[int]) -> list[int]:
    """Split `total` over choices in proportion to `weights` (largest remainder)."""
    if not weights:
        return []
    wsum = sum(weights)
    if wsum == 0:
        even = [total // len(weights)] * len(weights)
        for i in range(total - sum(even)):
            even[i] += 1
        return even
    raw = [total * w / wsum for w in weights]
    out = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


def estimate_tokens(text: str) -> int:
    """A rough token count of `text` for servers that report no usage."""
    return (len(text) + 3) // 4


def _reasoning_tokens(usage: dict[str, Any] | None) -> int | None:
    details = (usage or {}).get("completion_tokens_details") or {}
    if isinstance(details, dict) and details.get("reasoning_tokens") is not None:
        return int(details["reasoning_tokens"])
    return None


def fewest_tokens(
    choices: Sequence[WireChoice], max_tokens: int | None, room: int | None = None
) -> int:
    """The fewest completion tokens `choices` can have taken: `max_tokens` for each one
    cut by length (when a cap was asked for; at most the `room` the context window left),
    one for each other non-empty one."""
    cap = max_tokens if room is None or max_tokens is None else min(max_tokens, room)
    least = 0
    for c in choices:
        if c.finish_reason == "length" and cap is not None:
            least += max(cap, 1)
        elif c.text or c.reasoning:
            least += 1
    return least


def _text_of(c: WireChoice) -> str:
    return c.text + (c.reasoning or "")


def _counted(
    choices: Sequence[WireChoice],
    report: UsageReport,
    max_tokens: int | None,
    context_window: int | None,
) -> tuple[list[Usage], bool]:
    """Each choice's usage, and whether the server's numbers were trusted."""
    if report.per_choice is not None:
        usages = []
        for i, c in enumerate(choices):
            u = report.per_choice.get(i) or {}
            tokens = u.get("completion_tokens")
            usages.append(
                Usage(
                    int(u.get("prompt_tokens") or 0),
                    int(tokens) if tokens is not None else estimate_tokens(_text_of(c)),
                    _reasoning_tokens(u),
                    tokens is None,
                )
            )
        return usages, True
    whole = report.whole
    prompt = int(whole.get("prompt_tokens") or 0) if whole else 0
    total = whole.get("completion_tokens") if whole else None
    room = context_window - prompt if context_window is not None and prompt else None
    trusted = (
        total is None or len(choices) < 2 or int(total) >= fewest_tokens(choices, max_tokens, room)
    )
    if total is None or not trusted:
        return [Usage(prompt, estimate_tokens(_text_of(c)), None, True) for c in choices], trusted
    several = len(choices) > 1
    per_choice = split_tokens(int(total), [len(_text_of(c)) for c in choices])
    reasoning_total = _reasoning_tokens(whole)
    reasoning: list[int | None]
    if reasoning_total is None:
        reasoning = [None] * len(choices)
    elif several:
        reasoning = list(split_tokens(reasoning_total, [len(c.reasoning or "") for c in choices]))
    else:
        reasoning = [reasoning_total]
    return [
        Usage(prompt, tokens, rtok, several)
        for tokens, rtok in zip(per_choice, reasoning, strict=True)
    ], True


def build_completions(
    choices: Sequence[WireChoice],
    report: UsageReport | dict[str, Any] | None,
    latency_s: float,
    endpoint: str,
    *,
    max_tokens: int | None = None,
    context_window: int | None = None,
) -> Counted:
    """The completions of one answer with honest token counts (see the module);
    `context_window` is the server's, when known, and goes on each completion."""
    if not isinstance(report, UsageReport):
        report = UsageReport(whole=report)
    usages, trusted = _counted(choices, report, max_tokens, context_window)
    completions = [
        Completion(
            text=c.text,
            reasoning=c.reasoning,
            finish_reason=c.finish_reason,
            usage=usage,
            latency_s=latency_s,
            endpoint=endpoint,
            context_window=context_window,
        )
        for c, usage in zip(choices, usages, strict=True)
    ]
    return Counted(completions, trusted, per_choice=report.per_choice is not None)
