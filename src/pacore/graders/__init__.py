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

Eval and train choose a grader the same way, `grader_name(name, tests=...)`: the name
given (built in, or a `pacore.graders` entry point: `pacore.registry`), else `code`
when the data has tests, else `math`. `grader_for` builds it and checks the machine
can run it before anything is spent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pacore.errors import ConfigError
from pacore.graders.base import Grade, GradeInput, Grader, TestCase
from pacore.graders.extract import (
    Extraction,
    extract_answer,
    extract_program,
    normalize_answer,
    parse_number,
)
from pacore.registry import Registry

__all__ = [
    "GRADERS",
    "GRADER_NAMES",
    "Extraction",
    "Grade",
    "GradeInput",
    "Grader",
    "TestCase",
    "extract_answer",
    "extract_program",
    "get_grader",
    "grader_for",
    "grader_name",
    "normalize_answer",
    "parse_number",
]


def _math(**options: Any) -> Grader:
    from pacore.graders.math_grader import MathGrader

    return MathGrader(**options)


def _exact(**options: Any) -> Grader:
    from pacore.graders.simple import ExactGrader

    return ExactGrader(**options)


def _numeric(**options: Any) -> Grader:
    from pacore.graders.simple import NumericGrader

    return NumericGrader(**options)


def _code(**options: Any) -> Grader:
    from pacore.graders.code_grader import CodeGrader

    return CodeGrader(**options)


GraderFactory = Callable[..., Grader]
"""Builds a grader from keyword options (a `Grader` class is one)."""

GRADERS: Registry[GraderFactory] = Registry(
    "grader",
    "pacore.graders",
    {"code": _code, "exact": _exact, "math": _math, "numeric": _numeric},
)
"""Every grader by name: the built-ins, then `pacore.graders` entry points."""
GRADER_NAMES: tuple[str, ...] = tuple(GRADERS.builtins)
"""The built-in graders (`GRADERS.names()` adds the installed plugins)."""


def get_grader(name: str, **options: Any) -> Grader:
    """A new grader by name; `options` go to its constructor. Close it when done."""
    return GRADERS.get(name.strip().lower())(**options)


def grader_name(name: str | None, *, tests: bool) -> str:
    """The grader to use: `name` (any case), checked against the registry and loaded
    if it is a plugin, or the one the data calls for: `code` when it has tests
    (`tests`), else `math`. An unknown name is a `ConfigError` listing the known ones."""
    if name is None:
        return "code" if tests else "math"
    chosen = name.strip().lower()
    GRADERS.get(chosen)
    return chosen


def grader_for(name: str | None, *, tests: bool, unsafe_sandbox: bool = False) -> Grader:
    """The grader `grader_name` chooses, built and checked before anything is generated.

    The code grader needs data with tests, and without namespace isolation it refuses
    to run model code unless `unsafe_sandbox` (`--unsafe-sandbox`). Any grader with a
    `check_isolation` method has it called here.
    """
    chosen = grader_name(name, tests=tests)
    if chosen == "code" and not tests:
        raise ConfigError("the code grader needs records with 'tests'")
    grader = get_grader(chosen, **({"unsafe_sandbox": unsafe_sandbox} if chosen == "code" else {}))
    try:
        check_isolation = getattr(grader, "check_isolation", None)
        if check_isolation is not None:
            check_isolation()
    except BaseException:
        grader.close()
        raise
    return grader
