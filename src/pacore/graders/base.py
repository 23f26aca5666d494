"""The grading contract: `Grader.grade(prediction, sample) -> Grade`.

`Grade` is the one type for a judged prediction, in the graders, the eval runner and
its results: `Grade.decided(correct, ...)` or `Grade.ungradable(reason, ...)`.

One contract serves `pacore eval` and, later, RL rewards (`Grade.score` is the reward).
A grader is a small object: `grade` for one prediction, `grade_many` for a batch
(graders that run work in other processes batch it there), and for voting over
answers `extract` (the answer inside a message) and `same` (answer equivalence under
the grader's own rule: math-verify, normalised strings, a numeric tolerance).
Graders hold pools and caches, so they are closed when done (`with get_grader(...)`).

`correct` is three-valued: True, False, or None when the sample cannot be graded (a
gold answer that does not parse, a dataset without answers, a sandbox that failed).
Ungradable is never counted as wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

from pacore.graders.extract import extract_answer, normalize_answer

TestCase = Mapping[str, Any]
"""A stdin/stdout test: `{"input": str, "output": str}` (CodeContests, LiveCodeBench)."""


@dataclass(frozen=True)
class Grade:
    """The grade of one prediction."""

    score: float
    """0..1: 1/0 for answers, the fraction of tests passed for code (the soft reward)."""
    correct: bool | None
    """True, False, or None when ungradable (never counted as wrong)."""
    extracted: str | None
    """The answer or program pulled out of the prediction; None when there was none."""
    reason: str
    """Why, in a few words: `correct`, `no answer`, `gold unparsable`, `3/5 tests passed`."""

    @classmethod
    def decided(cls, correct: bool, extracted: str | None, reason: str | None = None) -> Grade:
        """Right (score 1) or wrong (score 0); the reason defaults to `correct`/`wrong`."""
        return cls(1.0 if correct else 0.0, correct, extracted, reason or _word(correct))

    @classmethod
    def ungradable(cls, reason: str, extracted: str | None = None) -> Grade:
        """Not gradable (`correct=None`): never counted as wrong."""
        return cls(0.0, None, extracted, reason)


@dataclass(frozen=True)
class GradeInput:
    """What a grader knows about a sample besides the prediction."""

    answer: str | None = None
    """The gold answer (math, exact, numeric); None: ungradable."""
    tests: str | Sequence[TestCase] | None = None
    """Code tests: a source defining `check(candidate)`, or a list of stdin/stdout cases."""
    entry_point: str | None = None
    """The function `check` receives (functional tests)."""
    prompt: str | None = None
    """The function stub a HumanEval completion continues (prepended when needed)."""
    time_limit_s: float | None = None
    """Per-test time limit from the dataset; the code grader's own limit otherwise."""

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> GradeInput:
        """From a dataset record in the shared format (`answer`, or `tests` & co)."""
        limit = record.get("time_limit_s")
        answer = record.get("answer")
        return cls(
            answer=None if answer is None else str(answer),
            tests=record.get("tests"),
            entry_point=record.get("entry_point"),
            prompt=record.get("prompt"),
            time_limit_s=float(limit) if limit is not None else None,
        )


@runtime_checkable
class Grader(Protocol):
    """Grades predictions against samples."""

    name: str

    def grade(self, prediction: str, sample: GradeInput) -> Grade:
        """The grade of one prediction (the whole generated text or its conclusion)."""
        ...

    def grade_many(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade]:
        """Grades in the order of `items`, in parallel where the grader can."""
        ...

    def extract(self, text: str) -> str | None:
        """The answer inside a message, for voting; None when there is none to vote on."""
        ...

    def same(self, a: str, b: str) -> bool:
        """Whether two extracted answers are equivalent under this grader's rule."""
        ...

    def close(self) -> None:
        """Release pools and sandboxes; the grader may not be used afterwards."""
        ...

    def __enter__(self) -> Grader:
        """The grader itself, closed on leaving the block."""
        ...

    def __exit__(self, *exc: object) -> None:
        """Close the grader."""
        ...


class GraderBase:
    """Context-manager plumbing, a serial `grade_many`, and answer voting by the shared
    extraction rules (`extract.extract_answer`) and normal form (`normalize_answer`)."""

    name = "base"

    def grade(self, prediction: str, sample: GradeInput) -> Grade:
        """The grade of one prediction (graders override this)."""
        raise NotImplementedError

    def grade_many(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade]:
        """`grade` each item in turn."""
        return [self.grade(prediction, sample) for prediction, sample in items]

    def grade_quick(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade | None]:
        """The grades found without waiting on anything (no worker process, no sandbox),
        None for the others: a caller grades those with `grade_many`, off its event
        loop. The same grades `grade_many` gives; a grader that may block decides none
        here (this default)."""
        return [None] * len(items)

    def extract(self, text: str) -> str | None:
        """The answer `extract.extract_answer` finds, or None."""
        found = extract_answer(text)
        return found.answer if found else None

    def same(self, a: str, b: str) -> bool:
        """The same normal form (`extract.normalize_answer`)."""
        return normalize_answer(a) == normalize_answer(b)

    def same_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """`same` for each pair, in order (a grader that asks worker processes asks them
        once for all the pairs)."""
        return [self.same(a, b) for a, b in pairs]

    def same_quick(self, pairs: Sequence[tuple[str, str]]) -> list[bool | None]:
        """`same` for the pairs decided without waiting on anything, None for the others
        (a caller settles those with `same_many`, off its event loop). This default
        decides every pair: `same` here never waits."""
        return [self.same(a, b) for a, b in pairs]

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> Self:
        """The grader itself, closed on leaving the block."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the grader."""
        self.close()


def _word(correct: bool) -> str:
    return "correct" if correct else "wrong"
