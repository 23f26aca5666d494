"""`TextMemo`: a pure function of short texts, each computed once (bounded).

Used for a grader's `extract` over an evaluation's messages, `GradeMemo`'s text hashes,
and the answer normalisations a vote and the graders repeat (`graders.extract`,
`graders.math_rules`). It imports nothing of pacore, so any layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TextMemo(Generic[T]):
    """A pure function of a short text, through a memo of what it gave.

    An evaluation reads the same messages again and again: a pool trajectory's
    conclusion in every run that draws it (the vote, the references' answers, the
    trace's cards, the grade memo's key). Each distinct text up to `max_chars` is read
    once (conclusions are short; a whole text is rarely read twice), at most `size` of
    them, then it starts over: memory stays bounded. A string keeps its own `hash`, so
    finding one here costs less than reading it again. Used for a grader's `extract`
    and for `GradeMemo`'s text hashes.
    """

    def __init__(self, fn: Callable[[str], T], *, size: int = 4096, max_chars: int = 2000) -> None:
        """Wrap `fn`; keep at most `size` results of texts up to `max_chars` long."""
        self.fn = fn
        self.size = size
        self.max_chars = max_chars
        self.hits = 0
        self._values: dict[str, T] = {}

    def __call__(self, text: str) -> T:
        """What `fn(text)` gives."""
        if len(text) > self.max_chars:
            return self.fn(text)
        values = self._values
        try:
            found = values[text]
        except KeyError:
            pass
        else:
            self.hits += 1
            return found
        found = self.fn(text)
        if len(values) >= self.size:
            values.clear()
        values[text] = found
        return found

    def __len__(self) -> int:
        """Texts held."""
        return len(self._values)

    def __contains__(self, text: object) -> bool:
        """Whether `text`'s result is held."""
        return text in self._values
