"""Final answers written in markdown, and plain-text intervals with an infinity.

The cases are built from the golds of `tests/data/math_golds.jsonl` (the integer ones):
each gold is written the way chat models end an answer in markdown, and the label comes
from the construction: the gold itself is right, the gold plus one is wrong."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacore.graders import GradeInput
from pacore.graders.extract import extract_answer, math_target, unbold
from pacore.graders.math_grader import MathCheck, MathGrader

GOLDS = [
    json.loads(line)["answer"]
    for line in (Path(__file__).parents[1] / "data" / "math_golds.jsonl").read_text().splitlines()
]
INTEGERS = [g for g in GOLDS if g.lstrip("-").isdigit()][:60]

BOLD = [
    "Adding the cases gives the count.\n\n**Final Answer:** **{}**",
    "So we are done.\n\nThe final answer is **{}**.",
    "Checking once more:\n\n**The answer is {}.**",
    "**Answer:** {}",
]


@pytest.fixture(scope="module")
def math_grader() -> Iterator[MathGrader]:
    pytest.importorskip("math_verify")
    with MathGrader(MathCheck(workers=2, timeout_s=5)) as grader:
        yield grader


def test_bold_final_answers_are_read(math_grader: MathGrader) -> None:
    """math-verify read `**42**.` as `42**.` (unparsable) and every bold answer scored
    0, right or wrong; the gold in bold is now right and its neighbour wrong."""
    assert len(INTEGERS) >= 40
    items, labels = [], []
    for gold in INTEGERS:
        wrong = str(int(gold) + 1)
        for template in BOLD:
            items += [
                (template.format(gold), GradeInput(gold)),
                (template.format(wrong), GradeInput(gold)),
            ]
            labels += [True, False]
    grades = math_grader.grade_many(items)
    missed = [
        (text, g.extracted)
        for (text, _), g, want in zip(items, grades, labels, strict=True)
        if g.correct is not want
    ]
    assert missed == []


def test_markdown_bold_is_removed_but_a_power_stays() -> None:
    assert unbold("The final answer is **42**.") == "The final answer is 42."
    assert unbold("**Final Answer:** **-7**") == "Final Answer: -7"
    assert unbold("so 2**10 = 1024") == "so 2**10 = 1024"
    assert unbold("(x+1)**2 is the **square**") == "(x+1)**2 is the square"
    found = extract_answer("The final answer is **42**.")
    assert found is not None
    assert (found.answer, found.rule) == ("42", "answer-is")
    boxed = extract_answer("**So** the answer is $\\boxed{7}$.")  # a box is read as it is
    assert boxed is not None
    assert (boxed.answer, boxed.rule) == ("7", "boxed")


@pytest.mark.parametrize(
    ("text", "gold", "right"),
    [
        ("So x lies in (2,∞).", "(2,\\infty)", True),
        ("So x lies in (-∞, 0].", "(-\\infty,0]", True),
        ("The solution set is [3, infty).", "[3,\\infty)", True),
        ("So x lies in (2,∞).", "(3,\\infty)", False),
        ("So x lies in (-∞, 0].", "(-\\infty,0)", False),
    ],
)
def test_a_plain_text_interval_with_infinity(
    math_grader: MathGrader, text: str, gold: str, right: bool
) -> None:
    """`∞` and a bare `infty` were taken as they were, and math-verify cannot read them."""
    target = math_target(text, gold)
    assert target is not None
    assert target.rule == "plain-interval"
    assert "\\infty" in (target.answer or "")
    assert math_grader.grade(text, GradeInput(gold)).correct is right


@pytest.mark.parametrize(
    ("text", "gold", "right"),
    [
        # A plain-text interval on a line that also has math: it was left to
        # math-verify, which read `1).`.
        ("So $x$ lies in (-2, 1).", "(-2,1)", True),
        ("So $x$ lies in (-2, 1).", "(-2,2)", False),
        ("Hence $a < b$ and the set is (3, 4].", "(3,4]", True),
        # A plain-text tuple of three or more: math-verify read `-1).`, or one element.
        ("So the ordered pair is (6, 31, -1).", "(6,31,-1)", True),
        ("Final answer: (6, 31, -1)", "(6,31,-1)", True),
        ("So the ordered pair is (6, 31, 1).", "(6,31,-1)", False),
        ("The coefficients are (1, -16, -4, 43).", "(1,-16,-4,43)", True),
        # A choice stated as the correct option: no answer was found.
        ("Comparing the values, the correct option is (C).", "\\text{(C)}", True),
        ("Comparing the values, the correct option is (C).", "\\text{(B)}", False),
        ("So the correct choice is **D**.", "\\text{(D)}", True),
    ],
)
def test_plain_text_intervals_tuples_and_choices(
    math_grader: MathGrader, text: str, gold: str, right: bool
) -> None:
    assert math_grader.grade(text, GradeInput(gold)).correct is right


def test_a_tuple_inside_a_math_span_is_left_to_math_verify() -> None:
    target = math_target("So the point is $(1, 2, 3)$.", "(1,2,3)")
    assert target is not None
    assert target.rule != "plain-interval"
