"""`GradeMemo`: each distinct (text, gold answer) graded once; `ExtractMemo`: each
distinct message's answer extracted once.

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

from pacore.graders.base import Grade, GradeInput, Grader

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
        self.digests = digests
        self.max_chars = max_chars
        self._grades: dict[Memo, Grade] = {}
        self._digests: dict[str, bytes] = {}
        """The hashes of short texts hashed lately: a pool trajectory's message is
        graded in every run that draws it, and a string keeps its own `hash`, so
        finding it here costs less than hashing it again."""
        self._lock = threading.Lock()

    def _key(self, text: str, gold: GradeInput) -> Memo | None:
        if gold.tests is not None:
            return None
        if len(text) > self.max_chars:
            return _digest(text), gold.answer
        digests = self._digests
        digest = digests.get(text)
        if digest is None:
            if len(digests) >= self.digests:
                digests.clear()
            digest = digests[text] = _digest(text)
        return digest, gold.answer

    def known(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade] | None:
        """The grades of `items` when every one was graded before, else None (then call
        `grade_many`, in a thread if the grader is slow): no thread hop for a hit."""
        out = []
        with self._lock:
            for text, gold in items:
                key = self._key(text, gold)
                grade = self._grades.get(key) if key is not None else None
                if grade is None:
                    return None
                out.append(grade)
            self.hits += len(out)
        return out

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


class ExtractMemo:
    """A grader's `extract` through a memo of the answers it found.

    An evaluation extracts the same messages again and again: a pool trajectory's
    conclusion in every run that draws it (the vote, the references' answers, the
    trace's cards). Extraction is a pure function of the text, so each distinct
    message is read once. Only messages up to `max_chars` are kept (conclusions are
    short; a whole text is rarely extracted twice), at most `size` of them, then it
    starts over: memory stays bounded.
    """

    def __init__(
        self, extract: Callable[[str], str | None], *, size: int = 4096, max_chars: int = 2000
    ) -> None:
        """Wrap `extract`; keep at most `size` answers of texts up to `max_chars`."""
        self.extract = extract
        self.size = size
        self.max_chars = max_chars
        self.hits = 0
        self._answers: dict[str, str | None] = {}

    def __call__(self, text: str) -> str | None:
        """What `extract(text)` gives."""
        if len(text) > self.max_chars:
            return self.extract(text)
        answers = self._answers
        try:
            found = answers[text]
        except KeyError:
            pass
        else:
            self.hits += 1
            return found
        found = self.extract(text)
        if len(answers) >= self.size:
            answers.clear()
        answers[text] = found
        return found
