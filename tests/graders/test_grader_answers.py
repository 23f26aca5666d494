"""Every grader extracts answers and tells equivalent ones apart, by its own rule."""

from __future__ import annotations

import importlib.util

import pytest

from pacore.graders import get_grader
from pacore.graders.base import Grade


def test_exact_votes_by_the_rule_it_grades_by() -> None:
    grader = get_grader("exact")
    assert grader.extract("so \\boxed{Yes}") == "Yes"
    assert grader.extract("nothing here") is None
    assert grader.same("Yes", "\\text{yes}")
    assert not grader.same("yes", "no")


def test_numeric_votes_within_its_tolerance() -> None:
    grader = get_grader("numeric", rel_tol=1e-3)
    assert grader.same("1,000", "1000.5")
    assert grader.same("\\frac{1}{2}", "0.5")
    assert not grader.same("1", "2")
    assert not grader.same("x", "x + 0")


def test_code_has_no_answers_to_vote_on() -> None:
    with get_grader("code") as grader:
        assert grader.extract("```python\nprint(1)\n```") is None
        assert not grader.same("a", "a")


@pytest.mark.skipif(importlib.util.find_spec("math_verify") is None, reason="needs math-verify")
def test_math_votes_by_equivalence() -> None:
    with get_grader("math") as grader:
        assert grader.extract("<think>x</think>\\boxed{\\dfrac{1}{2}}") == "\\dfrac{1}{2}"
        assert grader.same("\\dfrac{1}{2}", "0.5")  # decided without the worker pool
        assert not grader.same("3", "4")


def test_one_grade_type() -> None:
    assert Grade.decided(True, "4") == Grade(1.0, True, "4", "correct")
    assert Grade.decided(False, None, "no answer") == Grade(0.0, False, None, "no answer")
    assert Grade.ungradable("no gold answer", "4") == Grade(0.0, None, "4", "no gold answer")
