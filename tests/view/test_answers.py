"""The view's pure answer functions, on crafted answers."""

from __future__ import annotations

from pacore.view.answers import group_answers, is_emergent, majority, said, verdict


def test_answers_are_grouped_counted_and_ordered() -> None:
    groups = group_answers(["42", "7", " 42", None, "", "7", "42"], [True, False, True])
    assert [(g.answer, g.count) for g in groups] == [("42", 3), ("7", 2)]
    assert groups[0].members == (0, 2, 6)
    assert groups[0].correct is True
    assert groups[1].correct is False
    assert said(groups, 7) == "3 of 7 said 42"
    assert said([], 4) == "no answers"


def test_equal_counts_keep_first_seen_order_and_latex_spacing_is_ignored() -> None:
    assert majority(["\\frac{1}{2}", "3", "\\dfrac{1}{2}", "3"]) == "\\frac{1}{2}"
    assert majority([None, " "]) is None
    assert group_answers(["5"])[0].correct is None


def test_emergent_needs_a_right_final_and_only_wrong_references() -> None:
    assert is_emergent(True, [False, False])
    assert not is_emergent(True, [False, True])
    assert not is_emergent(True, [False, None])
    assert not is_emergent(True, [])
    assert not is_emergent(False, [False])
    assert not is_emergent(None, [False])


def test_verdict_names_what_the_final_did_with_the_majority() -> None:
    assert verdict("42", True, ["1", "2"], [False, False]) == "emergent"
    assert verdict("42", True, ["42", "42", "1"], [True, True, False]) == "agrees"
    assert verdict("1", False, ["42", "42", "1"], [True, True, False]) == "overturns"
    assert verdict("1", None, ["1", "2", "1"]) == "agrees"
    assert verdict(None, None, ["1"]) == "none"
    assert verdict("1", None, []) == "none"
