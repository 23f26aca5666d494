"""The code grader: HumanEval functional tests and CodeContests stdin/stdout tests, run in
the sandbox."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pacore.graders import GradeInput, get_grader
from pacore.graders.code_grader import CodeGrader
from pacore.graders.sandbox import Limits

DATA = Path(__file__).resolve().parents[1] / "data" / "code"
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")


def records(name: str, limit: int) -> list[dict[str, Any]]:
    lines = (DATA / f"{name}_head.jsonl").read_text(encoding="utf-8").splitlines()[:limit]
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def grader() -> Iterator[CodeGrader]:
    # unsafe_sandbox: these programs are ours, so a machine without namespaces runs them too
    with CodeGrader(limits=Limits(wall_s=5.0), workers=2, unsafe_sandbox=True) as code_grader:
        assert isinstance(code_grader, CodeGrader)
        yield code_grader


def mutate(solution: str) -> str:
    """Every `return <expr>` becomes `return None`."""
    return re.sub(r"^(\s*)return\b.*$", r"\1return None", solution, flags=re.MULTILINE)


def test_humaneval_canonical_solutions_pass_and_mutants_fail(grader: CodeGrader) -> None:
    tasks = records("humaneval", 10)
    items = [(t["canonical_solution"], GradeInput.from_record(t)) for t in tasks]  # completions
    fenced = "Here it is:\n```python\n{}```\n"
    items += [(fenced.format(t["prompt"] + t["canonical_solution"]), GradeInput.from_record(t))
              for t in tasks[:2]]  # fmt: skip
    items += [(mutate(t["canonical_solution"]), GradeInput.from_record(t)) for t in tasks]
    grades = grader.grade_many(items)
    passing, failing = grades[:12], grades[12:]
    assert [g.score for g in passing] == [1.0] * 12, [g.reason for g in passing]
    assert all(g.correct and g.reason == "passed" for g in passing)
    assert passing[0].extracted is not None
    assert "def has_close_elements" in passing[0].extracted
    assert [g.score for g in failing] == [0.0] * 10
    assert all(g.correct is False and g.reason.startswith("failed:") for g in failing)


def test_function_without_the_prompts_imports_still_runs(grader: CodeGrader) -> None:
    sample = GradeInput(
        tests="def check(candidate):\n    assert candidate([1, 2]) == [2, 4]\n",
        entry_point="double",
        prompt="from typing import List\n\n\ndef double(xs: List[int]) -> List[int]:\n",
    )
    answer = (
        "```python\ndef double(xs: List[int]) -> List[int]:\n    return [2 * x for x in xs]\n```"
    )
    assert grader.grade(answer, sample).correct is True


@pytest.mark.parametrize(
    ("tests", "said"),
    [
        ("def check(candidate):\n    assert ((\n", "the tests do not compile"),
        ("def foo():\n    pass\n", "define no check(candidate)"),
        ("check = 5\n", "define no check(candidate)"),
    ],
    ids=["syntax error", "no check", "check not callable"],
)
def test_tests_that_cannot_run_are_ungradable_not_wrong(
    grader: CodeGrader, tests: str, said: str
) -> None:
    """Tests that cannot run graded every program wrong, the right one included
    ("failed: KeyError: 'check'"): no program could pass. They are a broken test."""
    task = records("humaneval", 1)[0]
    sample = GradeInput.from_record({**task, "tests": tests})
    grade = grader.grade(task["canonical_solution"], sample)
    assert grade.correct is None
    assert grade.reason.startswith("broken test")
    assert said in grade.reason


SUM = "a, b = map(int, input().split())\nprint(a + b)\n"
PRODUCT = "a, b = map(int, input().split())\nprint(a * b)\n"
ADDITION_TESTS = [
    {"input": "1 2\n", "output": "3\n"},
    {"input": "2 2\n", "output": "4\n"},
    {"input": "10 5\n", "output": "15   \n\n"},  # trailing spaces and blank lines ignored
]


def test_stdin_tests_score_the_fraction_passed(grader: CodeGrader) -> None:
    sample = GradeInput(tests=ADDITION_TESTS, time_limit_s=2.0)
    right, partial, none = grader.grade_many(
        [
            (f"```python\n{SUM}```", sample),
            (f"```python\n{PRODUCT}```", sample),
            ("I don't know.", sample),
        ]
    )
    assert (right.score, right.correct, right.reason) == (1.0, True, "3/3 tests passed")
    assert partial.score == pytest.approx(1 / 3)
    assert partial.correct is False
    assert partial.reason == "1/3 tests passed; first failure: wrong output"
    assert (none.score, none.correct, none.reason) == (0.0, False, "no program")


def test_crashes_and_timeouts_fail_only_their_test(grader: CodeGrader) -> None:
    program = (
        "a, b = map(int, input().split())\n"
        "if a == 2:\n    1 / 0\n"
        "if a == 10:\n    while True:\n        pass\n"
        "print(a + b)\n"
    )
    grade = grader.grade(program, GradeInput(tests=ADDITION_TESTS, time_limit_s=0.5))
    assert grade.score == pytest.approx(1 / 3)
    assert "ZeroDivisionError" in grade.reason


def test_a_codecontests_problem(grader: CodeGrader) -> None:
    problem = records("codecontests", 1)[0]  # asc-desc-ending sort of book titles
    solution = (
        "n, m = map(int, input().split())\n"
        "rows = [input() for _ in range(n)]\n"
        "def key(i):\n"
        "    return tuple(ord(c) if j % 2 == 0 else -ord(c) for j, c in enumerate(rows[i]))\n"
        "print(*sorted(range(1, n + 1), key=lambda i: key(i - 1)))\n"
    )
    sample = GradeInput.from_record(problem)
    assert sample.time_limit_s == 2.0
    assert grader.grade(f"```python\n{solution}```", sample).score == 1.0
    wrong = solution.replace("-ord(c)", "ord(c)")
    assert grader.grade(f"```python\n{wrong}```", sample).score == 0.0


def test_samples_without_tests_are_ungradable() -> None:
    with get_grader("code") as code_grader:
        none = code_grader.grade("print(1)", GradeInput())
        assert (none.correct, none.reason) == (None, "no tests")
        no_entry = code_grader.grade("def f(): pass", GradeInput(tests="def check(c): pass"))
        assert no_entry.correct is None
