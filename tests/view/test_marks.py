"""Each synthesis's mark, on reference sets built so that the expected mark is known.

A case is built from its parts: how many references hold the gold (written in several
LaTeX spellings), the sizes of the wrong answers' groups, how many references gave no
answer, and whether the synthesis was right. Which of those makes the majority follows
from the sizes (ties are built apart), so the expected mark comes from how the case was
made, never from the code under test.
"""

from __future__ import annotations

import random

import pytest

from pacore.eval.metrics import majority_vote
from pacore.graders.extract import normalize_answer
from pacore.view.answers import (
    MARKS,
    Mark,
    disagreement,
    group_answers,
    majority_correct,
    majority_group,
    mark,
)

GOLD_SPELLINGS = ("\\frac{1}{2}", "\\dfrac{1}{2}", "\\tfrac{1}{2}", " \\frac{1}{2} ")


def build(
    rng: random.Random, right: int, wrong_sizes: list[int], blanks: int
) -> tuple[list[str | None], list[bool | None]]:
    """Shuffled references: `right` spellings of the gold, a group of `n` equal wrong
    answers per size, `blanks` without an answer (graded wrong, as a failed one is)."""
    refs: list[tuple[str | None, bool | None]] = [
        (rng.choice(GOLD_SPELLINGS), True) for _ in range(right)
    ]
    for group, size in enumerate(wrong_sizes):
        refs += [(str(100 + group), False)] * size
    refs += [(rng.choice([None, "", "  "]), False) for _ in range(blanks)]
    rng.shuffle(refs)
    return [a for a, _ in refs], [c for _, c in refs]


def expected(final: bool, right: int, wrong_sizes: list[int]) -> Mark:
    """The mark by definition, for a case whose largest group is unique."""
    majority_right = right > max(wrong_sizes, default=0)
    if final and right == 0:
        return "emergent"
    if final:
        return "held" if majority_right else "beat-the-vote"
    return "lost" if majority_right else "shared-miss"


def cases(n: int, seed: int = 0) -> list[tuple[bool, int, list[int], int]]:
    """(final right, right references, wrong group sizes, blanks), each with a unique
    largest group among those that answered."""
    rng = random.Random(seed)
    found: list[tuple[bool, int, list[int], int]] = []
    while len(found) < n:
        right = rng.choice([0, 0, 1, 2, 3, 5, 8])
        sizes = [rng.randint(1, 6) for _ in range(rng.randint(0 if right else 1, 4))]
        counts = [right, *sizes] if right else sizes
        if sorted(counts)[-1:] == sorted(counts)[-2:-1]:  # a tie at the top
            continue
        found.append((rng.random() < 0.5, right, sizes, rng.randint(0, 3)))
    return found


@pytest.mark.parametrize(("final", "right", "sizes", "blanks"), cases(300))
def test_the_mark_follows_from_how_the_references_were_built(
    final: bool, right: int, sizes: list[int], blanks: int
) -> None:
    rng = random.Random(f"{final}{right}{sizes}{blanks}")
    answers, grades = build(rng, right, sizes, blanks)
    assert mark(final, answers, grades) == expected(final, right, sizes)
    assert majority_correct(answers, grades) is (right > max(sizes, default=0))


def test_every_mark_is_made_by_the_generated_cases() -> None:
    made = {expected(*case[:3]) for case in cases(300)}
    assert made == set(MARKS)


@pytest.mark.parametrize("seed", range(100))
def test_the_majority_is_the_answer_a_vote_gives(seed: int) -> None:
    """Ties included: `majority_group` and the eval's `majority_vote` pick the same."""
    rng = random.Random(seed)
    answers: list[str | None] = [
        rng.choice([None, "", "7", "8", "9", *GOLD_SPELLINGS]) for _ in range(rng.randint(0, 9))
    ]
    keys = [normalize_answer(a) if a and a.strip() else None for a in answers]
    vote = majority_vote(keys)
    top = majority_group(answers)
    if vote.winner is None:
        assert top is None
    else:
        assert top is not None
        assert top.members[0] == vote.winner
        assert top.count == max(vote.sizes)


def test_ties_go_to_the_answer_seen_first() -> None:
    # 42 and 7 both twice: 42 came first, so the vote (and the majority) is 42, right.
    answers, grades = ["42", "7", "7", "42"], [True, False, False, True]
    assert mark(False, answers, grades) == "lost"
    assert mark(True, [*answers[::-1][1:], "42"], [False, False, True, True]) == "beat-the-vote"


def test_blank_and_ungraded_references_and_missing_answers() -> None:
    # Nobody answered: the vote gives nothing, which is wrong.
    assert mark(True, [None, ""], [False, False]) == "emergent"
    assert mark(False, [None, ""], [False, False]) == "shared-miss"
    assert majority_correct([None], [False]) is False
    # An ungraded majority: not known.
    assert mark(True, ["5", "5", "6"], [None, None, True]) is None
    assert mark(False, ["5", "5", "6"], [None, None, True]) is None
    # An older line without answers: only unanimous grades decide.
    assert mark(False, [], [True, True]) == "lost"
    assert mark(True, [], [False, False]) == "emergent"
    assert mark(False, [], [False, False]) == "shared-miss"
    assert mark(True, [], [True, False]) is None
    # No references, or an ungraded synthesis: no mark.
    assert mark(True, [], []) is None
    assert mark(None, ["42"], [True]) is None


def test_disagreement_is_one_minus_the_majority_share() -> None:
    assert disagreement([4]) == 0
    assert disagreement([1, 1, 1, 1]) == 0.75
    assert disagreement([3, 1]) == 0.25
    assert disagreement([]) is None
    assert disagreement([0]) is None


def test_right_answers_written_differently_are_one_vote() -> None:
    """Real outputs write the gold many ways that no string normal form unifies; the
    grader found each right, so they vote together, as the eval's vote (with the
    grader's equivalence) counts them."""
    spellings = ["0.5", "1/2", "\\frac{1}{2}", "\\boxed{\\tfrac12}", "50\\%", "one half"]
    assert len({normalize_answer(s) for s in spellings[:4]}) > 1  # the case is real
    rng = random.Random(5)
    for _ in range(200):
        right = rng.randint(1, len(spellings))
        wrong = rng.randint(1, 6)
        refs = [(s, True) for s in rng.sample(spellings, right)] + [("7", False)] * wrong
        rng.shuffle(refs)
        answers, grades = [a for a, _ in refs], [c for _, c in refs]
        first_right = grades.index(True) < grades.index(False)
        majority_right = right > wrong or (right == wrong and first_right)
        assert majority_correct(answers, grades) is majority_right
        assert mark(True, answers, grades) == ("held" if majority_right else "beat-the-vote")
        assert mark(False, answers, grades) == ("lost" if majority_right else "shared-miss")
        assert disagreement([g.count for g in group_answers(answers, grades)]) == pytest.approx(
            min(right, wrong) / (right + wrong)
        )
