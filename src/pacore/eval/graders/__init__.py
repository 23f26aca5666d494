"""Graders: how right is a prediction? One contract for eval metrics and RL rewards.

    with get_grader("math") as grader:
        grade = grader.grade(prediction_text, GradeInput(answer="\\frac{1}{2}"))
        grades = grader.grade_many([(text, GradeInput.from_record(rec)) for ...])
        grade.score, grade.correct, grade.extracted, grade.reason

| name      | compares                                              | module            |
|-----------|-------------------------------------------------------|-------------------|
| `math`    | math-verify equivalence, in a worker process pool      | `math_grader.py`  |
| `exact`   | normalised strings                                    | `simple.py`       |
| `numeric` | numbers within a tolerance                            | `simple.py`       |
| `code`    | tests run in a sandbox (stdin/stdout or `check()`)    | `code_grader.py`  |

`correct=None` means ungradable (no or unparsable gold, sandbox failure): metrics leave
it out, never count it wrong. Answer and program extraction rules: `extract.py`.
In async code, call `grade_many` through `asyncio.to_thread` (it blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pacore.errors import ConfigError
from pacore.eval.graders.base import Grade, GradeInput, Grader, TestCase
from pacore.eval.graders.extract import (
    Extraction,
    extract_answer,
    extract_program,
    normalize_answer,
    parse_number,
)

__all__ = [
    "GRADER_NAMES",
    "Extraction",
    "Grade",
    "GradeInput",
    "Grader",
    "TestCase",
    "extract_answer",
    "extract_program",
    "get_grader",
    "normalize_answer",
    "parse_number",
]


def _math(**options: Any) -> Grader:
    from pacore.eval.graders.math_grader import MathGrader

    return MathGrader(**options)


def _exact(**options: Any) -> Grader:
    from pacore.eval.graders.simple import ExactGrader

    return ExactGrader(**options)


def _numeric(**options: Any) -> Grader:
    from pacore.eval.graders.simple import NumericGrader

    return NumericGrader(**options)


def _code(**options: Any) -> Grader:
    from pacore.eval.graders.code_grader import CodeGrader

    return CodeGrader(**options)


_FACTORIES: dict[str, Callable[..., Grader]] = {
    "math": _math,
    "exact": _exact,
    "numeric": _numeric,
    "code": _code,
}
GRADER_NAMES: tuple[str, ...] = tuple(sorted(_FACTORIES))


def get_grader(name: str, **options: Any) -> Grader:
    """A new grader by name; `options` go to its constructor. Close it when done."""
    factory = _FACTORIES.get(name.strip().lower())
    if factory is None:
        raise ConfigError(f"unknown grader {name!r}; valid graders: {', '.join(GRADER_NAMES)}")
    return factory(**options)
