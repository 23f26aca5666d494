"""Compaction C(w) and trajectory status."""

from __future__ import annotations

import pytest

from pacore.core.compaction import classify, compact, conclusion, full_text, last_boxed
from pacore.errors import ServerError
from pacore.types import Completion


def test_no_think_tag_means_all_conclusion() -> None:
    assert conclusion("The answer is 4.") == "The answer is 4."


def test_text_after_the_last_think_end_not_stripped() -> None:
    text = "<think>a</think>draft</think>\n final \n"
    assert conclusion(text) == "\n final \n"


def test_think_end_at_the_very_end_gives_empty_conclusion() -> None:
    comp = Completion(text="<think>still thinking</think>", finish_reason="stop")
    message = compact(comp)
    assert message == ""
    assert classify(comp, message) == "empty"


def test_reasoning_content_split_out_by_the_server() -> None:
    comp = Completion(text="Final: 7", reasoning="long reasoning", finish_reason="stop")
    assert compact(comp) == "Final: 7"
    assert full_text(comp) == "<think>long reasoning</think>Final: 7"
    assert compact(comp, "full") == "<think>long reasoning</think>Final: 7"


def test_truncated_trajectory_is_marked() -> None:
    comp = Completion(text="<think>I was going to say", finish_reason="length")
    message = compact(comp)
    assert classify(comp, message) == "truncated"


def test_truncated_with_split_reasoning_has_empty_message() -> None:
    comp = Completion(text="", reasoning="cut mid-thought", finish_reason="length")
    message = compact(comp)
    assert message == ""
    assert classify(comp, message) == "truncated"


def test_error_status_wins() -> None:
    comp = Completion.failed(ServerError("HTTP 500: boom"))
    assert comp.error_type == "ServerError"
    assert classify(comp, "") == "error"


def test_full_mode_keeps_everything() -> None:
    comp = Completion(text="<think>r</think>c")
    assert compact(comp, "full") == "<think>r</think>c"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\{1,2\\}} nested {x}", "\\{1,2\\}"),
        ("\\boxed 5 and more", "5"),
        ("\\fbox{x^2}", "x^2"),
        ("no box here", None),
        ("\\boxed{unclosed", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


def test_answer_mode_keeps_only_the_boxed_content() -> None:
    comp = Completion(text="<think>\\boxed{wrong}</think>So \\boxed{\\dfrac{3}{4}}.")
    assert compact(comp, "answer") == "\\dfrac{3}{4}"
    assert compact(Completion(text="no box"), "answer") == ""
    assert classify(Completion(text="no box"), "") == "empty"
