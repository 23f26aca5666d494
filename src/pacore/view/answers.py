"""Answers of a round grouped and counted, the majority, and what a synthesis did with it.

Plain functions over plain data: the view shows "12 of 16 said 42", whether the final
answer agreed with the references' majority or overturned it (`verdict`), and each
synthesis's mark (`mark`): emergent, beat the vote, held, lost or shared miss. Answers
graded right are one group (each is equivalent to the gold); the others are compared
after `normalize_answer`, as strings: the grader's math equivalence is not rerun here.

The references' **majority answer** is defined once, here (`majority_group`): the
largest group of equal answers, ties going to the answer seen first (as
`pacore.eval.metrics.majority_vote` breaks them, so it is the answer a vote over the
same references in the same order would give). A reference with no answer (blank, or a
failed request) casts no vote; when none answered there is no majority, and a vote
that gives no answer is wrong. The majority is right when its members were graded
right (`AnswerGroup.correct`); with no answers to group, it is right when every
reference was right and wrong when every reference was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pacore.graders.extract import normalize_answer

Verdict = Literal["emergent", "agrees", "overturns", "none"]
"""What the final answer did with the answers of the messages it saw."""

Mark = Literal["emergent", "beat-the-vote", "held", "lost", "shared-miss"]
"""What a synthesis did with its references' majority, judged by the grades (`mark`)."""

MARKS: tuple[Mark, ...] = ("emergent", "beat-the-vote", "held", "lost", "shared-miss")
"""Every mark, in the order the view lists them."""

MARK_LABELS: dict[Mark, str] = {
    "emergent": "emergent",
    "beat-the-vote": "beat the vote",
    "held": "held",
    "lost": "lost",
    "shared-miss": "shared miss",
}
MARK_MEANINGS: dict[Mark, str] = {
    "emergent": "right while every reference was wrong",
    "beat-the-vote": "right while the references' majority was wrong and some reference was right",
    "held": "right, with the references' majority right",
    "lost": "wrong while the references' majority was right",
    "shared-miss": "wrong, with the references' majority wrong",
}


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


_RIGHT = "\x00right"
"""The group key of every answer graded right: all are equivalent to the gold."""


def group_answers(
    answers: Sequence[str | None], correct: Sequence[bool | None] = ()
) -> list[AnswerGroup]:
    """The distinct answers, most frequent first (ties: first seen first); blanks left out.

    Answers graded right form one group, however they are written ("1/2", "0.5",
    "\\frac{1}{2}": the grader found each equal to the gold, so a vote with the grader's
    equivalence counts them together); the others are grouped by their normal form.
    """
    keys: list[str | None] = []
    right_forms: set[str] = set()
    for i, answer in enumerate(answers):
        if answer is None or not answer.strip():
            keys.append(None)
            continue
        form = _key(answer)
        keys.append(form)
        if i < len(correct) and correct[i] is True:
            right_forms.add(form)
    order: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key is None:
            continue
        grade = correct[i] if i < len(correct) else None
        # Right, or ungraded and written as a right one is: the gold's group.
        right = grade is True or (grade is None and key in right_forms)
        order.setdefault(_RIGHT if right else key, []).append(i)
    groups = []
    for members in order.values():
        grades = [correct[i] for i in members if i < len(correct) and correct[i] is not None]
        grade = None if not grades else all(grades)
        text = answers[members[0]] or ""
        groups.append(AnswerGroup(text.strip(), len(members), grade, tuple(members)))
    groups.sort(key=lambda g: -g.count)  # stable: equal counts keep first-seen order
    return groups


def majority_group(
    answers: Sequence[str | None], correct: Sequence[bool | None] = ()
) -> AnswerGroup | None:
    """The majority answer's group (see the module docstring); None when none was given."""
    groups = group_answers(answers, correct)
    return groups[0] if groups else None


def majority(answers: Sequence[str | None]) -> str | None:
    """The majority answer (the first seen among equals); None when none was given."""
    top = majority_group(answers)
    return top.answer if top else None


def majority_correct(
    answers: Sequence[str | None],
    correct: Sequence[bool | None],
    groups: Sequence[AnswerGroup] | None = None,
) -> bool | None:
    """Whether the references' majority answer was right (None: not known).

    The grade of the majority's members; no answer at all is a wrong vote. Without the
    answers (an older results line), every reference right or every one wrong decides.
    `groups`: `group_answers(answers, correct)`, when the caller has it already.
    """
    if not answers:  # the grades alone
        if correct and all(c is True for c in correct):
            return True
        return False if correct and all(c is False for c in correct) else None
    if groups is None:
        groups = group_answers(answers, correct)
    return groups[0].correct if groups else False  # nobody answered: the vote gives nothing


def mark(
    final_correct: bool | None,
    ref_answers: Sequence[str | None],
    refs_correct: Sequence[bool | None],
    groups: Sequence[AnswerGroup] | None = None,
) -> Mark | None:
    """What a synthesis did with its references (MARK_MEANINGS); None when it saw none,
    or a grade it needs is missing. `groups` as for `majority_correct`."""
    if final_correct is None or not (ref_answers or refs_correct):
        return None
    if is_emergent(final_correct, refs_correct):
        return "emergent"
    top = majority_correct(ref_answers, refs_correct, groups)
    if top is None:
        return None
    if not final_correct:
        return "lost" if top else "shared-miss"
    if top:
        return "held"
    return "beat-the-vote" if any(c is True for c in refs_correct) else None


def disagreement(sizes: Sequence[int]) -> float | None:
    """How split the answers were: 1 - the majority's share of the answers given
    (0: all agreed; near 1: all differ). `sizes` are the answer groups' sizes; None
    when no answer was given."""
    total = sum(sizes)
    return 1 - max(sizes) / total if total else None


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
