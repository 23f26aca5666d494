"""The curriculum on crafted pools: thresholds with their boundaries, filters, counts."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pacore.errors import ConfigError
from pacore.graders import Grade
from pacore.train.curriculum import (
    Counts,
    Filter,
    default_threshold,
    is_multi_answer,
    parse_threshold,
    source_of,
    stage1_verdict,
    stage2_verdict,
)
from pacore.train.records import PoolRecord

T = Fraction(9, 24)


def pool(
    correct: int, total: int = 24, truth: object = "7", pid: str = "s/p"
) -> tuple[PoolRecord, list[Grade]]:
    record = PoolRecord(pid, ({"role": "user", "content": pid},), ("r",) * total, truth)
    grades = [Grade.decided(i < correct, "x") for i in range(total)]
    return record, grades


@pytest.mark.parametrize(
    ("correct", "verdict"),
    [
        (0, "all wrong"),  # the boundary 0: dropped
        (1, "kept"),
        (8, "kept"),  # just under t
        (9, "too easy"),  # the boundary t = 9/24: dropped
        (24, "too easy"),
    ],
)
def test_stage1_threshold_boundaries(correct: int, verdict: str) -> None:
    record, grades = pool(correct)
    assert stage1_verdict(record, grades, T, check_answers=True) == verdict


def test_code_threshold_and_soft_scores() -> None:
    t = default_threshold("code")
    assert t == Fraction(15, 24)
    record, _ = pool(0, truth=[{"input": "", "output": ""}])
    soft = [Grade(0.5, False, "p", "1/2 tests passed")] * 24  # mean 1/2 < 15/24
    assert stage1_verdict(record, soft, t, check_answers=False) == "kept"
    exact = [Grade(1.0, True, "p", "")] * 15 + [Grade(0.0, False, "p", "")] * 9
    assert stage1_verdict(record, exact, t, check_answers=False) == "too easy"


def test_quality_filters() -> None:
    record, grades = pool(3)
    unparsable = [Grade.ungradable("gold unparsable")] * 24
    assert stage1_verdict(record, unparsable, T, check_answers=True) == "gold unparsable"
    none_gold, _ = pool(3, truth=None)
    assert stage1_verdict(none_gold, grades, T, check_answers=True) == "gold unparsable"
    for multi in (
        ["1", "2"],
        "3 or 4",
        "x=1; x=2",
        "\\boxed{1}, \\boxed{2}",
        {"answer": "a and b"},
    ):
        rec, _ = pool(3, truth=multi)
        assert stage1_verdict(rec, grades, T, check_answers=True) == "multi-answer", multi
    empty = PoolRecord("e", record.conversation, (), "7")
    assert stage1_verdict(empty, [], T, check_answers=True) == "no responses"
    sandbox_down = [Grade.ungradable("sandbox failed")] * 24
    assert stage1_verdict(record, sandbox_down, T, check_answers=False) == "ungradable"
    assert not is_multi_answer("(1, 2)")
    assert not is_multi_answer(None)
    assert not is_multi_answer(["5"])


def test_duplicates_after_normalisation_and_counts() -> None:
    judge = Filter(T)
    a = PoolRecord("src/a", ({"role": "user", "content": "What is 2+2?"},), ("r",) * 4, "4")
    b = PoolRecord("src/b", ({"role": "user", "content": "  what is 2 + 2 "},), ("r",) * 4, "4")
    c = PoolRecord("c", ({"role": "user", "content": "What is 3+3?"},), ("r",) * 4, "6")
    one = [Grade.decided(True, "4")] + [Grade.decided(False, "1")] * 3
    assert judge.judge(a, one) == "kept"
    assert judge.judge(b, one) == "duplicate"
    assert judge.judge(c, [Grade.decided(False, "1")] * 4) == "all wrong"
    data = judge.counts.to_json()
    assert data["sources"]["src"] == {
        "input": 2,
        "no responses": 0,
        "gold unparsable": 0,
        "multi-answer": 0,
        "duplicate": 1,
        "ungradable": 0,
        "all wrong": 0,
        "too easy": 0,
        "kept": 1,
    }
    assert data["sources"]["-"]["all wrong"] == 1
    assert data["total"]["input"] == 3
    assert data["total"]["kept"] == 1
    judge.counts.settings = {"threshold": "3/8"}
    md = judge.counts.to_markdown()
    assert "| source | input | no responses |" in md
    assert "| src | 2 | 0 | 0 | 0 | 1 | 0 | 0 | 0 | 1 |" in md
    assert "| **total** | 3 |" in md
    assert "Settings: threshold 3/8." in md


def test_a_copy_dropped_for_its_own_reason_leaves_the_question_to_the_next() -> None:
    """Of several copies of one question, the first that passes every other check is
    kept; copies dropped for their own reason never claim the question."""
    judge = Filter(T)
    question = ({"role": "user", "content": "What is 3+4?"},)
    one = [Grade.decided(True, "7")] + [Grade.decided(False, "8")] * 23
    no_gold = [Grade.ungradable("no gold answer")] * 24
    copies = [
        (PoolRecord("s/no-gold", question, ("r",) * 24, None), no_gold, "gold unparsable"),
        (
            PoolRecord("s/easy", question, ("r",) * 24, "7"),
            [Grade.decided(True, "7")] * 24,
            "too easy",
        ),
        (PoolRecord("s/first", question, ("r",) * 24, "7"), one, "kept"),
        (PoolRecord("s/again", question, ("r",) * 24, "7"), one, "duplicate"),
        (
            PoolRecord("s/wrong", question, ("r",) * 24, "7"),
            [Grade.decided(False, "8")] * 24,
            "all wrong",
        ),
    ]
    assert [judge.judge(record, grades) for record, grades, _ in copies] == [
        verdict for _, _, verdict in copies
    ]
    row = judge.counts.to_json()["total"]
    assert row["input"] == len(copies) == sum(v for k, v in row.items() if k != "input")


def test_stage2_verdicts_and_counts() -> None:
    right, wrong = Grade.decided(True, "1"), Grade.decided(False, "2")
    assert stage2_verdict([]) == "no responses"
    assert stage2_verdict([wrong, wrong]) == "never right"  # boundary 0
    assert stage2_verdict([right, right]) == "always right"  # boundary 1
    assert stage2_verdict([right, wrong]) == "kept"
    assert stage2_verdict([Grade.ungradable("x")]) == "ungradable"
    counts = Counts(stage=2)
    counts.add("a/1", "kept")
    assert counts.to_json()["total"] == {
        "input": 1,
        "no responses": 0,
        "ungradable": 0,
        "never right": 0,
        "always right": 0,
        "kept": 1,
    }
    assert "never right" in counts.to_markdown()


def test_threshold_parsing_and_sources() -> None:
    assert parse_threshold("9/24") == Fraction(3, 8)
    assert parse_threshold("0.375") == Fraction(3, 8)
    assert parse_threshold("1") == 1
    for bad in ("x", "1/0", "0", "2", "-1/2"):
        with pytest.raises(ConfigError, match="--threshold"):
            parse_threshold(bad)
    assert default_threshold("math") == Fraction(9, 24)
    assert default_threshold("exact") == Fraction(9, 24)
    assert source_of("arith/add/0-1") == "arith/add"
    assert source_of("p1") == "-"
    assert source_of("/p1") == "-"


def test_stage1_accuracy_is_over_the_pool_size() -> None:
    """Issue 19: responses the pool dropped as truncated left the denominator, so a hard
    problem (3 right of 24 sampled, 16 truncated) looked easy (3 of 8)."""
    record, grades = pool(3, total=8)
    assert stage1_verdict(record, grades, T, check_answers=True) == "too easy"  # 3/8
    sampled = PoolRecord(record.id, record.conversation, record.responses, "7", sampled=24)
    assert stage1_verdict(sampled, grades, T, check_answers=True) == "kept"  # 3/24
    assert stage1_verdict(record, grades, T, check_answers=True, pool_size=24) == "kept"
    judge = Filter(T, pool_size=24)
    assert judge.judge(record, grades) == "kept"
