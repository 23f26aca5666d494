"""`GradeMemo`: each distinct (text, gold answer) graded once; `TextMemo`: a pure
function of each distinct short text (a grader's `extract`) computed once.

An evaluation grades the same texts many times: a round-1 pool trajectory is a
reference in every run of every method that draws it. Math, exact and numeric
grades are pure functions of the text and the gold answer, so they are kept (by a
128-bit hash of the text, never the text itself) and reused; code is graded every
time (a run of untrusted code is not a pure function). Safe to call from several
threads at once; bounded (`size` grades, then it starts over).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from pacore.graders.base import Grade, GradeInput, Grader

Memo = tuple[bytes, str | None]
T = TypeVar("T")


class GradeMemo:
    """`grade_many` through a memo of earlier grades (see the module docstring)."""

    def __init__(
        self, grader: Grader, *, size: int = 20_000, digests: int = 4096, max_chars: int = 2000
    ) -> None:
        """Wrap `grader`; keep at most `size` grades, and the hashes of at most
        `digests` texts up to `max_chars` long."""
        self.grader = grader
        self.size = size
        self.hits = 0
        self._grades: dict[Memo, Grade] = {}
        self._digests = TextMemo(_digest, size=digests, max_chars=max_chars)
        """The hashes of short texts hashed lately: a pool trajectory's message is
        graded in every run that draws it."""
        self._lock = threading.Lock()

    def _key(self, text: str, gold: GradeInput) -> Memo | None:
        if gold.tests is not None:
            return None
        return self._digests(text), gold.answer

    def known(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade] | None:
        """The grades of `items` when every one was graded before, or the grader decides
        each without waiting (`grade_quick`: no worker, no sandbox), else None (then call
        `grade_many`, in a thread if the grader is slow): no thread hop for these."""
        out: list[Grade | None] = []
        missing: dict[Memo, list[int]] = {}
        with self._lock:
            for i, (text, gold) in enumerate(items):
                key = self._key(text, gold)
                if key is None:
                    return None
                grade = self._grades.get(key)
                if grade is None:
                    missing.setdefault(key, []).append(i)
                out.append(grade)
            self.hits += len(out) - sum(len(places) for places in missing.values())
        if missing:
            quick = getattr(self.grader, "grade_quick", None)
            if quick is None:
                return None
            firsts = [places[0] for places in missing.values()]
            graded = quick([items[i] for i in firsts])
            with self._lock:
                if len(self._grades) + len(graded) > self.size:
                    self._grades.clear()
                for (key, places), grade in zip(missing.items(), graded, strict=True):
                    if grade is None:
                        return None  # the ones decided are kept: `grade_many` finds them
                    self._grades[key] = grade
                    for i in places:
                        out[i] = grade
        return [g for g in out if g is not None]

    def grade_many(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade]:
        """The grades of `items`, in order; only texts not graded before are graded."""
        keys = [self._key(text, gold) for text, gold in items]
        out: list[Grade | None] = [None] * len(items)
        todo: dict[Memo | int, list[int]] = {}
        with self._lock:
            for i, key in enumerate(keys):
                known = self._grades.get(key) if key is not None else None
                if known is not None:
                    out[i] = known
                    self.hits += 1
                else:
                    todo.setdefault(key if key is not None else -1 - i, []).append(i)
        if todo:
            firsts = [places[0] for places in todo.values()]
            graded = self.grader.grade_many([items[i] for i in firsts])
            with self._lock:
                if len(self._grades) + len(graded) > self.size:
                    self._grades.clear()
                for (name, places), grade in zip(todo.items(), graded, strict=True):
                    if not isinstance(name, int):
                        self._grades[name] = grade
                    for i in places:
                        out[i] = grade
        return [g for g in out if g is not None]


def _digest(text: str) -> bytes:
    """A 128-bit hash of `text`."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


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
