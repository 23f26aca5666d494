"""`GradeMemo`: each distinct (text, gold answer) graded once; `TextMemo`: a pure
function of each distinct short text (a grader's `extract`) computed once; `SameMemo`:
each pair of answers compared once (a grader's `same`), many settled in one batch.

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
from collections.abc import Sequence
from typing import Any

from pacore.core.textmemo import TextMemo
from pacore.graders.base import Grade, GradeInput, Grader

__all__ = ["GradeMemo", "SameMemo", "TextMemo"]

Memo = tuple[bytes, str | None]


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


Pair = tuple[str, str]


class SameMemo:
    """A grader's `same(a, b)` through a memo of the pairs compared.

    A vote over N diverse answers compares up to N(N-1)/2 pairs, and the math grader
    sends each pair its rules cannot decide to its worker processes: one round trip a
    pair, each costing the caller about a millisecond of CPU, and the event loop waits.
    A caller that knows the pairs it will ask settles them first: `unsettled` decides at
    once what the grader can (`same_quick`), and `settle` compares the rest in one batch
    (`same_many`: one round trip), in a thread if the caller has an event loop. Then
    every `same` is found here. `same` must be a pure function of the pair (the graders'
    are). Safe from several threads; bounded (`size` pairs, then it starts over).
    """

    def __init__(self, grader: Any, *, size: int = 65_536) -> None:
        """Wrap `grader`'s `same` (and its `same_quick` and `same_many`, when it has them)."""
        self.grader = grader
        self.size = size
        self._known: dict[Pair, bool] = {}
        self._lock = threading.Lock()

    def __call__(self, a: str, b: str) -> bool:
        """What `grader.same(a, b)` gives."""
        found = self._known.get((a, b))
        if found is None:
            found = bool(self.grader.same(a, b))
            self._keep({(a, b): found})
        return found

    def unsettled(self, pairs: Sequence[Pair]) -> list[Pair]:
        """The distinct pairs of `pairs` neither known nor decided at once by the grader's
        `same_quick` (those it decides are kept)."""
        todo = [p for p in dict.fromkeys(pairs) if p not in self._known]
        quick = getattr(self.grader, "same_quick", None)
        if not todo or quick is None:
            return todo
        decided = quick(todo)
        self._keep({p: d for p, d in zip(todo, decided, strict=True) if d is not None})
        return [p for p, d in zip(todo, decided, strict=True) if d is None]

    def settle(self, pairs: Sequence[Pair]) -> None:
        """Compare the pairs not known yet, all in one batch (`same_many`), and keep them."""
        todo = [p for p in dict.fromkeys(pairs) if p not in self._known]
        if not todo:
            return
        many = getattr(self.grader, "same_many", None)
        found = many(todo) if many is not None else [self.grader.same(a, b) for a, b in todo]
        self._keep({p: bool(f) for p, f in zip(todo, found, strict=True)})

    def _keep(self, found: dict[Pair, bool]) -> None:
        with self._lock:
            if len(self._known) + len(found) > self.size:
                self._known.clear()
            self._known.update(found)
