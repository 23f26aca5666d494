"""Token counts per choice, from what the server reported for the whole request.

A server reports one `usage` per request. With one choice it is that choice's,
exactly; with several (`n > 1`) the completion (and reasoning) tokens are split
over the choices in proportion to their text length, so every total stays exact
and each choice's share is marked estimated. With no usage at all the tokens are
estimated from the text (about four characters a token) rather than counted as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pacore.backends.openai_compat.wire import WireChoice
from pacore.types import Completion, Usage


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


def build_completions(
    choices: Sequence[WireChoice],
    usage: dict[str, Any] | None,
    latency_s: float,
    endpoint: str,
) -> list[Completion]:
    """Completions with honest token counts: exact for one choice, apportioned for several."""
    several = len(choices) > 1
    prompt = int(usage.get("prompt_tokens") or 0) if usage else 0
    if usage and usage.get("completion_tokens") is not None:
        weights = [len(c.text) + len(c.reasoning or "") for c in choices]
        per_choice = split_tokens(int(usage["completion_tokens"]), weights)
        estimated = several
    else:
        per_choice = [estimate_tokens(c.text + (c.reasoning or "")) for c in choices]
        estimated = True
    reasoning_total = _reasoning_tokens(usage)
    reasoning: list[int | None]
    if reasoning_total is None:
        reasoning = [None] * len(choices)
    elif several:
        reasoning = list(split_tokens(reasoning_total, [len(c.reasoning or "") for c in choices]))
    else:
        reasoning = [reasoning_total]
    return [
        Completion(
            text=c.text,
            reasoning=c.reasoning,
            finish_reason=c.finish_reason,
            usage=Usage(prompt, tokens, rtok, estimated),
            latency_s=latency_s,
            endpoint=endpoint,
        )
        for c, tokens, rtok in zip(choices, per_choice, reasoning, strict=True)
    ]
