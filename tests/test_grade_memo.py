"""`GradeMemo`: each distinct (text, gold) is graded once, and the grades are exactly
the grader's own, in order, for any mix of repeats, golds and code samples."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence

from pacore.graders.base import Grade, GradeInput
from pacore.graders.memo import GradeMemo, TextMemo


class Counting:
    """A grader whose grade encodes its input, counting what it was asked."""

    name = "counting"

    def __init__(self) -> None:
        self.asked: list[tuple[str, GradeInput]] = []
        self.lock = threading.Lock()

    def grade_many(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade]:
        with self.lock:
            self.asked.extend(items)
        return [
            Grade(score=1.0, correct=text.endswith(gold.answer or "?"), extracted=text, reason="")
            for text, gold in items
        ]


def test_every_distinct_pair_is_graded_once_and_grades_match() -> None:
    rng = random.Random(7)
    golds = [GradeInput(answer=str(i)) for i in range(4)]
    code = GradeInput(tests=[{"input": "", "output": "1"}])
    texts = [f"the answer is {i}" for i in range(12)]
    inner = Counting()
    memo = GradeMemo(inner)  # type: ignore[arg-type]
    seen: set[tuple[str, str | None]] = set()
    code_items = 0
    for _ in range(200):
        batch = [(rng.choice(texts), rng.choice([*golds, code])) for _ in range(rng.randint(1, 9))]
        assert memo.grade_many(batch) == Counting().grade_many(batch)
        for text, gold in batch:
            if gold.tests is None:
                seen.add((text, gold.answer))
            else:
                code_items += 1
    math_asked = [(t, g.answer) for t, g in inner.asked if g.tests is None]
    assert sorted(math_asked) == sorted(seen)  # each math pair exactly once
    assert sum(g.tests is not None for _, g in inner.asked) == code_items  # code: always
    assert memo.hits > 0


def test_threads_share_the_memo_and_it_stays_bounded() -> None:
    inner = Counting()
    memo = GradeMemo(inner, size=50)  # type: ignore[arg-type]
    gold = GradeInput(answer="1")
    items = [(f"text {i}", gold) for i in range(120)]
    results: list[list[Grade]] = []

    def work() -> None:
        results.append(memo.grade_many(items))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = Counting().grade_many(items)
    assert all(r == expected for r in results)
    assert len(memo._grades) <= 120  # cleared when it would pass its size


def test_extract_memo_gives_the_extractors_answers_and_reads_each_message_once() -> None:
    from pacore.graders.extract import extract_answer

    def extract(text: str) -> str | None:
        asked.append(text)
        found = extract_answer(text)
        return found.answer if found else None

    asked: list[str] = []
    memo = TextMemo(extract, size=8, max_chars=60)
    rng = random.Random(3)
    texts = [f"so the answer is \\boxed{{{i}}}" for i in range(6)] + ["no answer here", ""]
    long = "x" * 100 + " \\boxed{7}"
    for _ in range(200):
        text = rng.choice([*texts, long])
        found = extract_answer(text)
        assert memo(text) == (found.answer if found else None)
    assert sorted(set(t for t in asked if t != long)) == sorted(set(texts))
    assert len([t for t in asked if t != long]) == len(set(texts))  # each short one once
    assert asked.count(long) == 200 - memo.hits - len(set(texts))  # long ones every time


def test_extract_memo_stays_bounded() -> None:
    memo = TextMemo(lambda text: text[-1:] or None, size=5)
    for i in range(100):
        assert memo(f"text {i}") == str(i)[-1]
        assert len(memo._values) <= 5
