"""Token counts per choice, from what the server reported, checked before they are used.

Servers report usage in three shapes (`wire.UsageReport`), told apart by what
they send, never by their name:

- **per choice**: one usage per choice (llama.cpp's stream sends one after each
  choice's finish). Every choice's count is exact.
- **whole request**: one usage for all the choices (vLLM, SGLang and OpenAI, streamed
  or not). The request's total is exact; each choice's share is split in proportion
  to its text and marked estimated. A whole-request usage that cannot cover the
  choices it came with (fewer tokens than the choices cut at `max_tokens` must hold,
  plus a token per 16 characters of each other non-empty choice) is not trusted:
  llama.cpp's plain answer with `n > 1` counts only the first choice. The answer's
  counts are then measured
  from the text (estimated) and the caller is told, so it can ask that server for
  one choice per request from then on.
- **none**: counted from the text at about four characters a token, estimated (the
  prompt too, when the request's size is known).

A usage that could not be true is treated as none, never recorded as sent: one the
wire layer refused (a count that is not a whole number from 0 to 2^31 - 1), or one
that does not fit its request (more prompt tokens than the prompt's characters could
make or the context window holds, more completion tokens than `max_tokens` allows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pacore.backends.openai_compat.wire import Tokens, UsageReport, WireChoice, read_usage
from pacore.types import Completion, Usage

PROMPT_OVERHEAD = 4096
"""Tokens a server may add to a prompt beyond its text: the chat template's markers and
a system prompt of its own. A prompt reported larger than four tokens a character plus
this is not believed."""
MESSAGE_OVERHEAD = 16
"""Characters counted for each message beyond its content (its role, its markers)."""


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


def prompt_size(messages: Any) -> int | None:
    """The characters of a request's `messages` (their text, and a little for each
    message), for the checks and the estimate of its prompt tokens; None if unreadable."""
    if type(messages) is not list:
        return None
    size = 0
    for m in messages:
        content = m.get("content") if type(m) is dict else None
        if type(content) is str:
            size += len(content)
        elif type(content) is list:
            size += sum(
                len(p["text"]) for p in content if type(p) is dict and type(p.get("text")) is str
            )
        size += MESSAGE_OVERHEAD
    return size


def fewest_tokens(
    choices: Sequence[WireChoice], max_tokens: int | None, room: int | None = None
) -> int:
    """The fewest completion tokens `choices` can have taken: `max_tokens` for each one
    cut by length (when a cap was asked for; at most the `room` the context window left),
    and for each other non-empty one a token per `MOST_CHARS_PER_TOKEN` characters of its
    text (at least one)."""
    cap = max_tokens if room is None or max_tokens is None else min(max_tokens, room)
    least = 0
    for c in choices:
        if c.finish_reason == "length" and cap is not None:
            least += max(cap, 1)
        elif c.text or c.reasoning:
            least += max(1, len(_text_of(c)) // MOST_CHARS_PER_TOKEN)
    return least


MOST_CHARS_PER_TOKEN = 16
"""More characters a token than any tokenizer averages over a whole text (about 4 in
English prose, 3-8 in code): a whole-request usage below one token per 16 characters of
its choices counted only some of them (llama.cpp's plain answer with `n > 1` counts
the first)."""


def _text_of(c: WireChoice) -> str:
    return c.text + (c.reasoning or "")


@dataclass(frozen=True)
class _Request:
    """What the request asked, for checking the usage of its answer."""

    max_tokens: int | None
    context_window: int | None
    prompt_chars: int | None

    def possible(self, usage: Tokens | None, choices: int) -> Tokens | None:
        """`usage` if it fits this request for `choices` choices, else None."""
        if usage is None:
            return None
        prompt, completion = usage.prompt, usage.completion
        if prompt is not None:
            if self.prompt_chars is not None and prompt > 4 * self.prompt_chars + PROMPT_OVERHEAD:
                return None
            if self.context_window is not None and prompt > self.context_window:
                return None
        cap = self.max_tokens
        if completion is not None and cap is not None and completion > cap * max(choices, 1):
            return None
        return usage

    def estimated_prompt(self) -> int:
        """The prompt's tokens counted from its text (0 when its size is unknown)."""
        return (self.prompt_chars + 3) // 4 if self.prompt_chars is not None else 0

    def estimated(self, c: WireChoice, prompt: int | None = None) -> Usage:
        """`c`'s usage counted from its text."""
        prompt = self.estimated_prompt() if prompt is None else prompt
        return Usage(prompt, estimate_tokens(_text_of(c)), None, True)


def _counted(
    choices: Sequence[WireChoice], report: UsageReport, asked: _Request
) -> tuple[list[Usage], bool]:
    """Each choice's usage, and whether the server's numbers were trusted."""
    if report.per_choice is not None:
        usages = []
        for i, c in enumerate(choices):
            u = asked.possible(report.per_choice.get(i), 1)
            if u is None or u.completion is None:
                prompt = u.prompt if u is not None else None
                usages.append(asked.estimated(c, prompt))
            else:
                usages.append(Usage(u.prompt or 0, u.completion, u.reasoning, False))
        return usages, True
    whole = asked.possible(report.whole, len(choices))
    if whole is None:
        return [asked.estimated(c) for c in choices], True
    prompt = whole.prompt or 0
    total = whole.completion
    room = asked.context_window - prompt if asked.context_window is not None and prompt else None
    trusted = (
        total is None or len(choices) < 2 or total >= fewest_tokens(choices, asked.max_tokens, room)
    )
    if total is None or not trusted:
        return [asked.estimated(c, prompt) for c in choices], trusted
    several = len(choices) > 1
    per_choice = split_tokens(total, [len(_text_of(c)) for c in choices])
    reasoning_total = whole.reasoning
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
    prompt_chars: int | None = None,
) -> Counted:
    """The completions of one answer with honest token counts (see the module);
    `context_window` is the server's, when known, and goes on each completion;
    `prompt_chars` is the request's `prompt_size`, when known. A `dict` is read as a
    whole-request usage object."""
    if not isinstance(report, UsageReport):
        report = UsageReport(whole=read_usage(report))
    if type(max_tokens) is not int or max_tokens < 1:
        max_tokens = None
    asked = _Request(max_tokens, context_window, prompt_chars)
    usages, trusted = _counted(choices, report, asked)
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
