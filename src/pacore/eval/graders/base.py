"""The grading contract: `Grader.grade(prediction, sample) -> Grade`.

One contract serves `pacore eval` and, later, RL rewards (`Grade.score` is the reward).
A grader is a small object with two methods: `grade` for one prediction and
`grade_many` for a batch (graders that run work in other processes batch it there).
Graders hold pools and caches, so they are closed when done (`with get_grader(...)`).

`correct` is three-valued: True, False, or None when the sample cannot be graded (a
gold answer that does not parse, a dataset without answers, a sandbox that failed).
Ungradable is never counted as wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

TestCase = Mapping[str, Any]
"""A stdin/stdout test: `{"input": str, "output": str}` (CodeContests, LiveCodeBench)."""


@dataclass(frozen=True)
class Grade:
    """The verdict on one prediction."""

    score: float
    """0..1: 1/0 for answers, the fraction of tests passed for code (the soft reward)."""
    correct: bool | None
    """True, False, or None when ungradable (never counted as wrong)."""
    extracted: str | None
    """The answer or program pulled out of the prediction; None when there was none."""
    reason: str
    """Why, in a few words: `correct`, `no answer`, `gold unparsable`, `3/5 tests passed`."""


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

    def close(self) -> None:
        """Release pools and sandboxes; the grader may not be used afterwards."""
        ...

    def __enter__(self) -> Grader: ...

    def __exit__(self, *exc: object) -> None: ...


class GraderBase:
    """Context-manager plumbing and a serial `grade_many` for simple graders."""

    name = "base"

    def grade(self, prediction: str, sample: GradeInput) -> Grade:
        raise NotImplementedError

    def grade_many(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade]:
        return [self.grade(prediction, sample) for prediction, sample in items]

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ungradable(reason: str, extracted: str | None = None) -> Grade:
    return Grade(0.0, None, extracted, reason)


def verdict(correct: bool, extracted: str | None, reason: str | None = None) -> Grade:
    return Grade(1.0 if correct else 0.0, correct, extracted, reason or _word(correct))


def _word(correct: bool) -> str:
    return "correct" if correct else "wrong"
