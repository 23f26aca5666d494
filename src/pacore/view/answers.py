"""Answers of a round grouped and counted, the majority, and the final answer's verdict.

Plain functions over plain data: the view shows "12 of 16 said 42" and whether the final
answer was right from all-wrong references (emergent), agreed with the references'
majority, or overturned it. Answers are compared after `normalize_answer`, as strings:
the grader's math equivalence is not rerun here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pacore.graders.extract import normalize_answer

Verdict = Literal["emergent", "agrees", "overturns", "none"]
"""What the final answer did with the answers of the messages it saw."""


@dataclass(frozen=True)
class AnswerGroup:
    """One distinct answer of a round, with how many messages gave it."""

    answer: str
    count: int
    correct: bool | None
    """True when every member was graded right; None when none was graded."""
    members: tuple[int, ...]
    """The indices of the messages that gave it."""


def _key(answer: str) -> str:
    return normalize_answer(answer)


def group_answers(
    answers: Sequence[str | None], correct: Sequence[bool | None] = ()
) -> list[AnswerGroup]:
    """The distinct answers, most frequent first (ties: first seen first); blanks left out."""
    order: dict[str, list[int]] = {}
    for i, answer in enumerate(answers):
        if answer is None or not answer.strip():
            continue
        order.setdefault(_key(answer), []).append(i)
    groups = []
    for members in order.values():
        grades = [correct[i] for i in members if i < len(correct) and correct[i] is not None]
        grade = None if not grades else all(grades)
        text = answers[members[0]] or ""
        groups.append(AnswerGroup(text.strip(), len(members), grade, tuple(members)))
    groups.sort(key=lambda g: -g.count)  # stable: equal counts keep first-seen order
    return groups


def majority(answers: Sequence[str | None]) -> str | None:
    """The most frequent answer (the first seen among equals); None when none was given."""
    groups = group_answers(answers)
    return groups[0].answer if groups else None


def is_emergent(final_correct: bool | None, refs_correct: Sequence[bool | None]) -> bool:
    """The final answer is right although every reference it saw was graded wrong."""
    return final_correct is True and bool(refs_correct) and all(c is False for c in refs_correct)


def verdict(
    final: str | None,
    final_correct: bool | None,
    ref_answers: Sequence[str | None],
    refs_correct: Sequence[bool | None] = (),
) -> Verdict:
    """What the final answer did with its references' answers (`none`: nothing to compare)."""
    if is_emergent(final_correct, refs_correct):
        return "emergent"
    top = majority(ref_answers)
    if top is None or final is None or not final.strip():
        return "none"
    return "agrees" if _key(final) == _key(top) else "overturns"


def said(groups: Sequence[AnswerGroup], total: int) -> str:
    """ "12 of 16 said 42" for the largest group; "no answers" when there is none."""
    if not groups:
        return "no answers"
    return f"{groups[0].count} of {total} said {groups[0].answer}"
