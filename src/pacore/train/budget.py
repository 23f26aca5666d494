"""Prompt budgets: an episode that fits `max_prompt_length`, its problem always whole.

An RL engine that meets a prompt over its budget cuts it (verl 0.9.1's agent loop
keeps the last `max_prompt_length` tokens, so the problem statement, which comes
first, is what goes). Here the budget is met by dropping whole references instead:

- `fit_episode`: the drawn references in draw order, the last ones dropped until the
  prompt fits, never below `min_refs`; if the first `min_refs` still do not fit, the
  `min_refs` shortest of the pool are used (`fallback`). The problem text is never
  touched. The draw order is random, so dropping from its end drops references at
  random, not the long ones first (which would bias M towards short answers).
- `minimum_episode`: the smallest prompt a problem can have (its `min_refs` shortest
  references): a problem whose minimum does not fit is left out when the data loads.
- `PromptLengths`: the distribution of prompt lengths the export reports.

Lengths are counted by a `TokenCounter`: the model's tokenizer with its chat template
(`tokenizer_counter`), or, without one, `char_estimate` (one token per
`CHARS_PER_TOKEN` characters, an over-estimate for English and LaTeX).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pacore.core.compaction import COMPACTION_MODES, compact
from pacore.errors import ConfigError
from pacore.train.episodes import episode_messages
from pacore.train.records import PoolRecord
from pacore.types import Completion, Message

TokenCounter = Callable[[Sequence[Message]], int]
"""The prompt length, in tokens, of chat messages sent with a generation prompt."""
CHARS_PER_TOKEN = 3
"""`char_estimate`'s rate: BPE tokenizers average 3.5-4.5 characters a token on English
and LaTeX, so counting 3 errs towards longer prompts."""
TEMPLATE_ALLOWANCE = 16
"""Tokens `char_estimate` adds per message for the chat template's markers."""


def char_estimate(messages: Sequence[Message]) -> int:
    """An upper estimate of a prompt's tokens without a tokenizer (see the module docstring)."""
    from pacore.core.prompts import message_text

    chars = sum(len(message_text(m)) for m in messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + TEMPLATE_ALLOWANCE * (len(messages) + 1)


def tokenizer_counter(tokenizer: Any) -> TokenCounter:
    """Count with `tokenizer`'s chat template and a generation prompt, as verl and vLLM
    render the prompt (special tokens come from the template, none are added)."""

    def count(messages: Sequence[Message]) -> int:
        text = tokenizer.apply_chat_template(
            [dict(m) for m in messages], add_generation_prompt=True, tokenize=False
        )
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


@dataclass(frozen=True)
class Fitted:
    """An episode's prompt within a budget, and what fitting it cost."""

    messages: list[Message]
    picks: list[int]
    """The positions in the pool of the references kept, in order."""
    dropped: int
    """References of the draw left out."""
    fallback: bool = False
    """The first `min_refs` drawn did not fit: the pool's shortest were used."""
    tokens: int = 0
    """The prompt's length as counted."""


def compacted(text: str, compaction: str) -> str:
    """A response as a reference shows it (`pacore.core.compaction.compact`)."""
    if compaction not in COMPACTION_MODES:
        raise ConfigError(f"unknown compaction {compaction!r}")
    return compact(Completion(text=text), compaction)


def _compacted_length(text: str, compaction: str) -> int:
    return len(compacted(text, compaction))


def fit_episode(
    record: PoolRecord,
    picks: Sequence[int],
    *,
    budget: int,
    min_refs: int,
    count: TokenCounter,
    compaction: str = "conclusion",
) -> Fitted:
    """The longest prefix of the draw `picks` (positions in the pool, at least `min_refs`
    kept) whose prompt fits `budget`.

    Found by bisection, so a 24-reference draw costs about five counts. When even
    `min_refs` references do not fit, the pool's `min_refs` shortest (compacted) are
    used; `tokens` then tells whether that fits (the loader leaves such rows out).
    """
    refs = list(picks)

    def build(kept: Sequence[int]) -> tuple[list[Message], int]:
        texts = [record.responses[i] for i in kept]
        messages = episode_messages(record, texts, compaction=compaction)
        return messages, count(messages)

    messages, tokens = build(refs)
    if tokens <= budget:
        return Fitted(messages, refs, 0, tokens=tokens)
    floor = min(min_refs, len(refs))
    lo, hi = floor, len(refs) - 1  # the answer is in [floor, hi], if any prefix fits
    best: tuple[int, list[Message], int] | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        trial, length = build(refs[:mid])
        if length <= budget:
            best, lo = (mid, trial, length), mid + 1
        else:
            hi = mid - 1
    if best is not None:
        kept, messages, tokens = best
        return Fitted(messages, refs[:kept], len(refs) - kept, tokens=tokens)
    shortest = shortest_indices(record, floor, compaction)
    messages, tokens = build(shortest)
    return Fitted(messages, shortest, len(refs) - len(shortest), fallback=True, tokens=tokens)


def shortest_indices(record: PoolRecord, size: int, compaction: str) -> list[int]:
    """The positions of the `size` responses that are shortest once compacted, in pool order."""
    order = sorted(
        range(len(record.responses)),
        key=lambda i: (_compacted_length(record.responses[i], compaction), i),
    )
    return sorted(order[:size])


def longest_references(record: PoolRecord, size: int, compaction: str) -> list[str]:
    """The `size` responses of the pool that are longest once compacted."""
    order = sorted(
        range(len(record.responses)),
        key=lambda i: (-_compacted_length(record.responses[i], compaction), i),
    )
    return [record.responses[i] for i in order[:size]]


def minimum_episode(record: PoolRecord, min_refs: int, compaction: str) -> list[Message]:
    """The smallest prompt a problem can be fitted to: its `min_refs` shortest references."""
    texts = [record.responses[i] for i in shortest_indices(record, min_refs, compaction)]
    return episode_messages(record, texts, compaction=compaction)


def worst_episode(record: PoolRecord, hi: int, compaction: str) -> list[Message]:
    """The longest prompt a draw can give: the `hi` longest references."""
    return episode_messages(
        record, longest_references(record, hi, compaction), compaction=compaction
    )


def _quantile(ordered: Sequence[int], q: float) -> int:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class PromptLengths:
    """Prompt lengths seen, summarised as a distribution."""

    values: list[int] = field(default_factory=list)

    def add(self, tokens: int) -> None:
        """One more prompt's length."""
        self.values.append(tokens)

    def summary(self) -> dict[str, int]:
        """`count`, `min`, `p50`, `p90`, `p99`, `max` (empty: just `count` 0)."""
        ordered = sorted(self.values)
        if not ordered:
            return {"count": 0}
        return {
            "count": len(ordered),
            "min": ordered[0],
            "p50": _quantile(ordered, 0.5),
            "p90": _quantile(ordered, 0.9),
            "p99": _quantile(ordered, 0.99),
            "max": ordered[-1],
        }
