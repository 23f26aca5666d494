"""Compaction C(w): what of a trajectory is passed to the next round.

Modes:
- `conclusion` (the paper's): the text after the last `</think>`; a server that
  splits reasoning into `reasoning_content` already hands us the conclusion as
  `content`. A text without `</think>` is all conclusion (models that do not
  think aloud, such as SmolLM2).
- `full`: the whole trajectory, reasoning included (the no-compaction ablation).
- `answer`: only the content of the last `\\boxed{...}` of the conclusion.
"""

from __future__ import annotations

from typing import Literal

from pacore.types import Completion, Status

CompactionMode = Literal["conclusion", "full", "answer"]
COMPACTION_MODES: tuple[CompactionMode, ...] = ("conclusion", "full", "answer")

THINK_END = "</think>"


def full_text(completion: Completion) -> str:
    """The whole generated text, with split-out reasoning put back in front."""
    if completion.reasoning:
        return f"<think>{completion.reasoning}{THINK_END}{completion.text}"
    return completion.text


def conclusion(text: str) -> str:
    """The text after the last `</think>`, exactly as generated (not stripped)."""
    _, sep, tail = text.rpartition(THINK_END)
    return tail if sep else text


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced."""
    best = -1
    for marker in ("\\boxed", "\\fbox"):
        best = max(best, text.rfind(marker))
    if best < 0:
        return None
    i = best + (6 if text.startswith("\\boxed", best) else 5)
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":
        # `\boxed 5`: the argument runs to the next whitespace or `$`.
        end = i
        while end < len(text) and not text[end].isspace() and text[end] != "$":
            end += 1
        return text[i:end] or None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None  # unbalanced: the box never closed


def compact(completion: Completion, mode: CompactionMode = "conclusion") -> str:
    """The message of one trajectory under `mode`."""
    if mode == "full":
        return full_text(completion)
    # When the server split reasoning out, `text` is already the conclusion; a
    # `</think>` left inside it still marks where the conclusion starts.
    message = conclusion(completion.text)
    if mode == "answer":
        boxed = last_boxed(message)
        return boxed if boxed is not None else ""
    return message


def is_truncated(completion: Completion) -> bool:
    """The trajectory was cut by the token limit before it concluded."""
    return completion.finish_reason == "length"


def classify(completion: Completion, message: str) -> Status:
    """The status of a trajectory given its compacted message."""
    if completion.error is not None:
        return "error"
    if is_truncated(completion):
        return "truncated"
    if not message.strip():
        return "empty"
    return "ok"
