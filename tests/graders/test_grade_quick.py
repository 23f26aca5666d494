"""`grade_quick`: the grades a grader gives without waiting on a worker or a sandbox.

The runner grades in its event loop whatever `grade_quick` decides, and sends only the
rest to a thread (`GradeMemo.known`), so a quick grade must be exactly the grade
`grade_many` gives. Checked on the labelled cases of `tests/data` (real golds,
model-style answers, revisions), whose labels come from how each case was built.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pacore.graders import GradeInput, get_grader
from pacore.graders.base import Grade, GraderBase
from pacore.graders.math_grader import MathCheck, MathGrader
from pacore.graders.memo import GradeMemo

DATA = Path(__file__).resolve().parents[1] / "data"


def cases() -> list[tuple[str, GradeInput, bool]]:
    out = []
    for name in ("math_cases.jsonl", "math_generated.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            case = json.loads(line)
            out.append((case["response"], GradeInput(answer=case["gold"]), bool(case["label"])))
    return out


def test_math_quick_grades_are_the_pools_and_the_pool_is_asked_the_rest() -> None:
    labelled = cases()
    items = [(text, gold) for text, gold, _ in labelled]
    with MathGrader(MathCheck(workers=2, timeout_s=5)) as grader:
        quick = grader.grade_quick(items)
        assert grader.cache_misses == 0  # nothing was sent to the pool
        full = grader.grade_many(items)
        decided = [i for i, g in enumerate(quick) if g is not None]
        assert 0 < len(decided) < len(items)  # boxed answers by the rules; free text not
        for i in decided:
            assert quick[i] == full[i], items[i]
        # What the pool checked is cached: asked again, every item is decided quickly.
        assert grader.grade_quick(items) == full
    # The labels, from how each case was made: the one deliberate miss of the generated
    # suite (a bare `a < x < b` against an open pair, see test_math_revisions) aside.
    wrong = [labelled[i][0] for i, g in enumerate(full) if g.correct != labelled[i][2]]
    assert len(wrong) <= 1
    assert all(" < x < " in text for text in wrong)


@pytest.mark.parametrize("name", ["exact", "numeric"])
def test_string_and_number_graders_decide_everything_quickly(name: str) -> None:
    items = [(text, gold) for text, gold, _ in cases()[:400]]
    grader = get_grader(name)
    assert isinstance(grader, GraderBase)
    assert grader.grade_quick(items) == grader.grade_many(items)


def test_code_is_never_graded_quickly() -> None:
    gold = GradeInput(tests=[{"input": "", "output": "1\n"}])
    grader = get_grader("code")
    assert isinstance(grader, GraderBase)
    assert grader.grade_quick([("```python\nprint(1)\n```", gold)]) == [None]


class HalfQuick:
    """Decides texts that end in "!" quickly; the rest only in `grade_many`."""

    name = "half"

    def __init__(self) -> None:
        self.slow: list[str] = []

    def grade_quick(self, items: list[tuple[str, GradeInput]]) -> list[Grade | None]:
        return [self._grade(t) if t.endswith("!") else None for t, _ in items]

    def grade_many(self, items: list[tuple[str, GradeInput]]) -> list[Grade]:
        self.slow.extend(t for t, _ in items)
        return [self._grade(t) for t, _ in items]

    @staticmethod
    def _grade(text: str) -> Grade:
        return Grade.decided(text.startswith("7"), text)


def test_the_memo_needs_no_thread_for_quick_grades_and_keeps_them() -> None:
    inner = HalfQuick()
    memo = GradeMemo(inner)  # type: ignore[arg-type]
    gold = GradeInput(answer="7")
    quick = [("7!", gold), ("8!", gold), ("7!", gold)]
    assert memo.known(quick) == [inner._grade("7!"), inner._grade("8!"), inner._grade("7!")]
    mixed = [("7!", gold), ("7?", gold)]
    assert memo.known(mixed) is None  # "7?" needs grade_many
    assert memo.grade_many(mixed) == [inner._grade("7!"), inner._grade("7?")]
    assert inner.slow == ["7?"]  # the quick grade was kept, not graded again
    assert memo.known(mixed) == [inner._grade("7!"), inner._grade("7?")]
