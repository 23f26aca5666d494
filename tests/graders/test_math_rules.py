"""The named rewriting rules of `math_rules`, each with the case math-verify misses."""

from __future__ import annotations

import pytest

from pacore.graders import math_rules as rules
from pacore.graders.extract import extract_answer, math_target


@pytest.mark.parametrize(
    ("rule", "before", "after"),
    [
        (rules.thousands_separators, r"6\,300", "6300"),  # math-verify: 306
        (rules.thousands_separators, "20{,}000", "20000"),
        (rules.thousands_separators, "6,300", "6300"),
        (rules.thousands_separators, "1,2", "1,2"),  # a list stays a list
        (rules.degree_signs, "90°", "90"),  # math-verify: does not parse
        (rules.degree_signs, r"90^{\circ}", "90"),
        (rules.units_after_number, r"5.4\text{cents}", "5.4"),
        (rules.units_after_number, "12 meters", "12"),
        (rules.units_after_number, "3 apples and 2 pears", "3 apples and 2 pears"),
        (rules.scientific_notation, r"5.1 \times 10^{2}", "510"),  # math-verify: ≠ 510
        (rules.scientific_notation, r"6.72\times10^{-5}", "0.0000672"),
        (rules.scientific_notation, "1e-3", "0.001"),
        (rules.repeating_decimals, r"0.\overline{5}", r"\frac{5}{9}"),  # math-verify: no parse
        (rules.repeating_decimals, r"0.3\overline{8}", r"\frac{7}{18}"),
        (rules.repeating_decimals, r"-1.\overline{12}", r"-\frac{37}{33}"),
        (
            rules.plus_minus,
            r"\frac{-1\pm\sqrt{17}}{2}",
            r"\frac{-1+\sqrt{17}}{2}, \frac{-1-\sqrt{17}}{2}",
        ),
        (rules.plus_minus, r"\{1\pm\sqrt{5},-2\}", r"\{1+\sqrt{5}, 1-\sqrt{5}, -2\}"),
        (rules.plus_minus, r"1\pm2\pm3", r"1\pm2\pm3"),  # two: left alone
        (rules.iso_intervals, r"]2, 5]", "(2, 5]"),  # math-verify: does not parse
        (rules.iso_intervals, r"[2,5[", "[2,5)"),
        (rules.iso_intervals, r"]-\infty,0[\cup]1,2]", r"(-\infty,0)\cup(1,2]"),
        (rules.iso_intervals, "[2, 5]", "[2, 5]"),
        (rules.iso_intervals, "[1, 2], [3, 4]", "[1, 2], [3, 4]"),  # a list of intervals
        (rules.imaginary_unit, "6 - 5 i", "6 - 5i"),  # math-verify: two different `i`
        (rules.imaginary_unit, r"rac{1}{2} i", r"rac{1}{2}i"),
        (rules.imaginary_unit, "2 in", "2 in"),
    ],
)
def test_each_rule(rule: rules.Rule, before: str, after: str) -> None:
    assert rule(before) == after


@pytest.mark.parametrize(
    ("gold", "answer", "after"),
    [
        (r"(-\infty,3]", r"x\le 3", r"(-\infty,3]"),  # math-verify alone: wrong
        (r"(-\infty,3)", "x<3", r"(-\infty,3)"),
        (r"[2,\infty)", r"x\geq 2", r"[2,\infty)"),
        (r"(-\infty,3]", r"3\ge x", r"(-\infty,3]"),
        (r"(2,5]", r"2<x\le 5", "(2,5]"),
        (r"[-1,1]", r"-1\leq x\leq 1", "[-1,1]"),
        (r"[0,\sqrt{2}]", r"0\le x\le \sqrt{2}", r"[0,\sqrt{2}]"),
        (r"(-\infty,3]", "x ≤ 3", r"(-\infty,3]"),
        (r"(-\infty,3]", "x>3", r"(3,\infty)"),  # rewritten, and then wrong
        ("(1,2)", "1<x<2", "1<x<2"),  # an open pair could be a point: left alone
        (r"(-\infty,3]", r"x\le 3 or x>5", r"x\le 3 or x>5"),  # a union: left alone
        (r"(-\infty,3]", "1<x>2", "1<x>2"),
        (r"x\le 3", r"x\le 3", r"x\le 3"),  # the gold an inequality: math-verify's
    ],
)
def test_inequalities_against_an_interval_gold(gold: str, answer: str, after: str) -> None:
    assert rules.inequalities(gold, answer) == after


@pytest.mark.parametrize(
    ("gold", "answer", "after"),
    [
        (r"(2,5]", r"\{x\mid 2<x\le 5\}", "(2,5]"),  # math-verify alone: wrong
        (r"(2,5)", r"\{x : 2<x<5\}", "(2,5)"),  # written as a set: an interval, not a point
        (r"(-\infty,0]", r"\{x\in\mathbb{R}\mid x\le 0\}", r"(-\infty,0]"),
        (r"(2,5]", r"x\in (2,5]", "(2,5]"),
        (r"x\in (2,5]", r"x\in (2,5]", r"x\in (2,5]"),  # the gold says `\in`: left alone
        (r"\{x\mid x>1\}", r"\{x\mid x>1\}", r"\{x\mid x>1\}"),
    ],
)
def test_set_builder_and_membership(gold: str, answer: str, after: str) -> None:
    assert rules.set_builder(gold, answer) == after


def test_answer_variable_only_against_a_gold_without_equation() -> None:
    assert rules.answer_variable("5", "x = 5") == "5"
    assert rules.answer_variable("x=5", "y = 5") == "y = 5"


@pytest.mark.parametrize(
    ("gold", "answer", "verdict"),
    [
        (r"\text{(C)}", "C", "correct"),
        (r"\text{(C)}", "(B)", "wrong"),
        (r"\text{Evelyn}", "evelyn.", "correct"),
        (r"\text{east}", "west", "wrong"),
        (r"\frac{1}{576}", "0.001736", "wrong"),  # math-verify rounds to 6 places: correct
        (r"\frac{17}{50}", "0.34", "correct"),
        ("0.34", "0.3401", "correct"),  # the gold is itself a rounded decimal
        ("0.34", "0.3", "wrong"),
        (r"6\,300", "6,300", "correct"),
        ("12", "1,2", None),  # a list: math-verify decides (wrong)
        ("x + 1", "1 + x", None),  # math-verify decides
        # percentages: settled here, since math-verify's reading of `\%` depends on the
        # ANTLR runtime (4.9, pinned by verl's dependencies, reads `25\%` as 25 only)
        (r"25\%", "25", "correct"),
        (r"25\%", "0.25", "correct"),
        (r"25\%", r"\frac{1}{4}", "correct"),
        ("40", r"40\%", "correct"),
        (r"25\%", "0.3", "wrong"),
        (r"25\%", r"25\%", "correct"),
        (r"25\%", r"26\%", "wrong"),
        ("x", r"5\%", None),
        # unevaluated arithmetic: the question restated is not an answer (math-verify
        # evaluates it and says correct, which an RL policy learns to exploit)
        ("63024", "202 * 312", "wrong"),
        ("63024", r"202 \times 312.", "wrong"),
        ("17", "12+5", "wrong"),
        ("97", r"100 - 3", "wrong"),
        ("12", r"(-3)\cdot(-4)", "wrong"),
        ("-5", "-5", "correct"),
        ("1024", "2^{10}", None),  # a power: math-verify decides (correct)
        ("3", "6/2", "correct"),  # a fraction is a number
        (r"\frac{1}{2}", "1+1", None),  # not an integer gold: math-verify decides
        ("63024", r"202 \timesx", None),
        ("12345", r"123456789012^{987654321098} \bmod 1000000007", "wrong"),  # no 5 s timeout
        ("12345", "123456789012**987654321098 % 1000000007", "wrong"),
    ],
)
def test_verdicts_settled_by_the_rules(gold: str, answer: str, verdict: str | None) -> None:
    assert rules.decide(*rules.normalize_pair(gold, answer)) == verdict


def test_targets_never_take_a_number_out_of_an_interval() -> None:
    assert extract_answer("So x lies in [2, 5].") is None
    assert extract_answer("the values are 1, 2") is None
    interval = math_target("So x lies in [2, 5].")
    assert interval is not None
    assert (interval.answer, interval.rule) == ("[2, 5]", "plain-interval")
    boxes = math_target(r"$\boxed{3}$ or $\boxed{8}$, and again $\boxed{3}$")
    assert boxes is not None
    assert boxes.answer == "3, 8"
    free = math_target("Hence $x = 7$.")  # a span that ends the line is its answer
    assert free is not None
    assert (free.answer, free.rule, free.text) == ("x = 7", "math-span", "Hence $x = 7$.")
    assert math_target("<think>5</think>  ") is None


def test_extraction_stays_linear_on_degenerate_output() -> None:
    """70,000 unclosed boxes and 180,000 backticks (a model stuck in a loop) are read in one
    pass: no box and no program, rather than minutes of rescanning."""
    from pacore.graders.extract import all_boxed, extract_program, math_target, normalize_answer

    stuck = "x " + "\\boxed{" * 70_000
    assert all_boxed(stuck) == []
    # the readings added for model-style text stay linear too (each was quadratic once:
    # minutes on these, from a display search, a list in words and trailing punctuation)
    assert math_target("\\[ x " * 20_000) is not None
    listed = math_target("1, " * 20_000 + "and then some words")
    assert listed is not None
    assert listed.answer != "1"
    assert math_target("So x = " + "1 or x = " * 5_000 + "y") is not None
    assert normalize_answer("1" + " ." * 30_000 + "x").startswith("1.")
    assert normalize_answer("x" + " \\quad" * 20_000) == "x"
    # a remark after a stated answer, and a revision after a box, across a run of spaces
    # (one try a space: 100,000 of them took minutes)
    spaced = math_target("The answer is 5" + " " * 100_000 + "x")
    assert spaced is not None
    assert spaced.answer != "5"
    revised = math_target("\\boxed{5}. Wait, the answer is 5" + "\t" * 100_000 + "x")
    assert revised is not None
    target = math_target(stuck)
    assert target is not None
    assert target.answer is None
    assert extract_program("`" * 180_000) is None
    assert all_boxed(r"\boxed{\frac{1}{2}} and \boxed{\boxed{3}} or \boxed 5 , \fbox{7") == [
        r"\frac{1}{2}",
        "3",
        "3",
        "5",
    ]
