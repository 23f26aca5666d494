"""Graders: answer extraction, math equivalence (math-verify in a worker pool), exact and
numeric matching, the registry."""

from __future__ import annotations

import importlib.util
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pacore.errors import ConfigError
from pacore.graders import (
    GRADER_NAMES,
    GradeInput,
    extract_answer,
    extract_program,
    get_grader,
    normalize_answer,
    parse_number,
)
from pacore.graders.math_grader import MathCheck, MathGrader

GOLDS = Path(__file__).resolve().parents[1] / "data" / "math_golds.jsonl"  # from ../shared/data
needs_math_verify = pytest.mark.skipif(
    importlib.util.find_spec("math_verify") is None, reason="math-verify is not installed"
)


def golds(name: str) -> dict[str, str]:
    """The gold answers of one benchmark (MATH-500, HMMT, AIME), by id, in file order."""
    lines = GOLDS.read_text(encoding="utf-8").splitlines()
    records = map(json.loads, lines)
    return {rec["id"]: rec["answer"] for rec in records if rec["id"].startswith(_PREFIX[name])}


_PREFIX = {"hmmt_feb2025": "hmmt_feb2025-", "math500": "test/"}


def boxed(answer: str) -> str:
    return f"<think>Let me think... maybe 3?</think>So the answer is $\\boxed{{{answer}}}$."


@pytest.fixture(scope="module")
def math_grader() -> Iterator[MathGrader]:
    if importlib.util.find_spec("math_verify") is None:
        pytest.skip("math-verify is not installed")
    grader = MathGrader(MathCheck(workers=2, timeout_s=5))
    yield grader
    grader.close()


# ------------------------------------------------------------------ extraction


@pytest.mark.parametrize(
    ("text", "answer", "rule"),
    [
        (r"so $\boxed{\frac{1}{2}}$ and \boxed{3}", "3", "boxed"),
        (r"<think>\boxed{1}</think>Final: \boxed{ 2 }", "2", "boxed"),
        (r"\fbox{7}", "7", "boxed"),
        ("The final answer is $\\frac{3}{4}$.", r"\frac{3}{4}", "answer-is"),
        ("**Answer:** 42.", "42", "answer-is"),
        ("Thus the answer is \\(x = 5\\). Done", "x = 5", "answer-is"),
        ("We count.\nIn total there are 1,234 apples and 5 pears\n\n", "5", "last-number"),
        ("Total: 1,234 apples", "1234", "last-number"),
        ("ratio -3/4 here", "-3/4", "last-number"),
        ("<think>the answer is 9</think>no idea, sorry", None, None),
        (r"\boxed{\frac{1}{}", "1", "last-number"),  # an unclosed box falls back
        ("", None, None),
    ],
)
def test_extract_answer_rules(text: str, answer: str | None, rule: str | None) -> None:
    found = extract_answer(text)
    assert (found.answer if found else None) == answer
    assert (found.rule if found else None) == rule


def test_extract_program_rules() -> None:
    tagged = "Idea.\n```python\nprint(1)\n```\nAlso:\n```py\nprint(2)\n```\n```text\nout\n```"
    assert extract_program(tagged) == "print(2)\n"
    untagged = "```\nnot python (\n```\n```\nprint(3)\n```"
    assert extract_program(untagged) == "print(3)\n"
    assert extract_program("x = int(input())\nprint(x * 2)\n") == "x = int(input())\nprint(x * 2)\n"
    assert extract_program("I cannot solve this.") is None
    assert extract_program("<think>```python\nprint(0)\n```</think>") is None
    assert extract_program("```python\nprint(4)\n") == "print(4)\n"  # truncated: unclosed


def test_normal_forms_and_numbers() -> None:
    assert normalize_answer(r"$\dfrac{1}{2}$.") == normalize_answer(r"\frac{1}{2}")
    assert normalize_answer(r"\left( 1, 2 \right)") == "(1,2)"
    assert normalize_answer(r"\pi r^2") != normalize_answer(r"\pir^2")
    assert parse_number("1,234.5") == 1234.5
    assert parse_number(r"-\frac{3}{4}") == -0.75
    assert parse_number(r"10\text{ cm}") == 10
    assert parse_number(r"45^\circ") == 45
    assert parse_number("12\\%") == 12
    assert parse_number("1e-3") == 0.001
    assert parse_number("x + 1") is None
    assert parse_number("1/0") is None


# ------------------------------------------------------------------ registry


def test_registry_names_and_unknown_grader() -> None:
    assert GRADER_NAMES == ("code", "exact", "math", "numeric")
    with pytest.raises(ConfigError) as info:
        get_grader("fuzzy")
    message = str(info.value)
    assert "\n" not in message
    assert "fuzzy" in message
    assert all(name in message for name in GRADER_NAMES)


def test_missing_math_verify_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "math_verify" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError, match=r"pip install 'pacore\[eval\]'"):
        get_grader("math")


# ------------------------------------------------------------------ math


HMMT_EQUIVALENT = {  # HMMT February 2025 gold → an equivalent answer in another form
    "hmmt_feb2025-3": r"\dfrac{1}{576}",
    "hmmt_feb2025-7": r"\frac{9}{\sqrt{23}}",
    "hmmt_feb2025-8": r"\frac{\pi-2}{\pi}",
    "hmmt_feb2025-10": r"\frac{-1-\sqrt{17}}{2}, \frac{-1+\sqrt{17}}{2}",
    "hmmt_feb2025-17": r"26! \cdot 2^{25}",
    "hmmt_feb2025-25": r"-2\sqrt{3}+\sqrt{23}",
    "hmmt_feb2025-30": r"\frac{\sqrt{570}}{12}",
}
MATH500_EQUIVALENT = {
    "test/precalculus/807.json": r"(3, \pi/2)",  # \left( 3, \frac{\pi}{2} \right)
    "test/algebra/1349.json": "Evelyn",  # \text{Evelyn}
    "test/prealgebra/1302.json": r"11\sqrt{2}",  # 11\sqrt2
    "test/prealgebra/1655.json": "0.34",  # \dfrac{17}{50}
    "test/prealgebra/1003.json": r"\frac{270}{7}",  # \frac{270}7\text{ degrees}
    "test/prealgebra/1044.json": "5.4",  # 5.4 \text{ cents}
    "test/precalculus/695.json": r"(-\infty,0]",  # (-\infty, 0]
    "test/intermediate_algebra/1992.json": r"(0, 9)\cup(9, 36)",
    "test/algebra/101.json": "[-2, 7]",  # x \in [-2,7]
    "test/intermediate_algebra/2015.json": r"\{-2, 1+\sqrt{5}, 1-\sqrt{5}\}",
    "test/precalculus/819.json": "C",  # \text{(C)}
}
CLOSE_BUT_WRONG = [  # (gold, answer)
    (r"\frac{1}{2}", r"\frac{1}{3}"),
    (r"\sqrt{2}", r"\sqrt{3}"),
    ("[0,1)", "[0,1]"),
    (r"(-\infty, 0]", r"(-\infty, 0)"),
    (r"\frac{9 \sqrt{23}}{23}", r"\frac{9 \sqrt{23}}{32}"),
    (r"2^{25} \cdot 26!", r"2^{24} \cdot 26!"),
    (r"1-\frac{2}{\pi}", r"1+\frac{2}{\pi}"),
    (r"\frac{-1+\sqrt{17}}{2}, \frac{-1-\sqrt{17}}{2}", r"\frac{-1+\sqrt{17}}{2}"),
    ("6 - 5i", "6 + 5i"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"\left( \frac{\pi}{2}, 3 \right)"),
    ("103", "130"),
    (r"(-\infty, 3]", r"x < 3"),
    (r"[2, \infty)", r"x \le 2"),
    ("63024", r"202 \times 312"),
]


def test_equivalent_forms_of_real_golds(math_grader: MathGrader) -> None:
    hmmt, math500 = golds("hmmt_feb2025"), golds("math500")
    cases = [(hmmt[k], v) for k, v in HMMT_EQUIVALENT.items()]
    cases += [(math500[k], v) for k, v in MATH500_EQUIVALENT.items()]
    cases += [(r"\frac{1}{2}", r"\dfrac{1}{2}"), ("10", r"10\text{ cm}"), ("90^\\circ", "90")]
    cases += [(r"(-\infty, 3]", r"x \le 3"), (r"\left[ -1, 1 \right]", r"-1 \leq x \leq 1")]
    grades = math_grader.grade_many([(boxed(answer), GradeInput(answer=g)) for g, answer in cases])
    wrong = [(g, a, grade.reason) for (g, a), grade in zip(cases, grades, strict=True)
             if grade.correct is not True]  # fmt: skip
    assert not wrong
    assert all(grade.score == 1.0 for grade in grades)
    assert grades[0].extracted == HMMT_EQUIVALENT["hmmt_feb2025-3"]


def test_wrong_answers_that_look_close(math_grader: MathGrader) -> None:
    grades = math_grader.grade_many([(boxed(a), GradeInput(answer=g)) for g, a in CLOSE_BUT_WRONG])
    assert [g.correct for g in grades] == [False] * len(CLOSE_BUT_WRONG)
    assert all(g.score == 0.0 and g.reason == "wrong" for g in grades)


def test_fallback_extraction_and_no_answer(math_grader: MathGrader) -> None:
    gold = GradeInput(answer=r"\frac{3}{4}")
    stated = math_grader.grade("So the answer is: $0.75$.", gold)
    assert (stated.correct, stated.extracted, stated.reason) == (
        True,
        "0.75",
        "correct (answer-is)",
    )
    last = math_grader.grade("we get 3/4", gold)
    assert (last.correct, last.reason) == (True, "correct (last-number)")
    nothing = math_grader.grade("<think>it is 3/4</think>I give up.", gold)
    assert (nothing.correct, nothing.extracted, nothing.reason) == (False, None, "no answer")


def test_unparsable_gold_is_ungradable_and_unparsable_answer_is_wrong(
    math_grader: MathGrader,
) -> None:
    bad_gold = math_grader.grade(boxed("5"), GradeInput(answer=r"\frac{1}{"))
    assert (bad_gold.correct, bad_gold.score, bad_gold.reason) == (None, 0.0, "gold unparsable")
    no_gold = math_grader.grade(boxed("5"), GradeInput(answer=None))
    assert (no_gold.correct, no_gold.reason) == (None, "no gold answer")
    bad_answer = math_grader.grade(boxed("(("), GradeInput(answer="2"))
    assert (bad_answer.correct, bad_answer.reason) == (False, "answer unparsable")


def test_repeated_pairs_hit_the_cache(
    math_grader: MathGrader, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [(boxed(rf"\sqrt{{{n}}} + 1"), GradeInput(answer=rf"1 + \sqrt{{{n}}}")) for n in (2, 3)]
    items.append(items[0])  # a duplicate inside one batch is checked once
    misses, hits = math_grader.cache_misses, math_grader.cache_hits
    first = math_grader.grade_many(items)
    assert math_grader.cache_misses - misses == 2
    round_trips: list[list[tuple[str, str, str]]] = []
    check = math_grader._pool.check

    def counted(keys: list[tuple[str, str, str]]) -> list[tuple[str, str | None]]:
        round_trips.append(keys)
        return check(keys)

    monkeypatch.setattr(math_grader._pool, "check", counted)
    second = math_grader.grade_many(items)
    assert round_trips == []  # answered from the cache, no round trip to the pool
    assert math_grader.cache_hits - hits == 2
    assert first == second
    assert all(g.correct for g in first)


def test_equivalent_for_vote_clustering(math_grader: MathGrader) -> None:
    assert math_grader.equivalent("3, 5, 7", r"\{7, 5, 3\}")
    assert math_grader.equivalent(r"\dfrac{1}{2}", r"\frac12")  # fast path, no worker
    assert not math_grader.equivalent("1/2", "1/3")
    assert math_grader.equivalent_many([("0.5", r"\frac{1}{2}"), ("x", "y")]) == [True, False]


@needs_math_verify
def test_hung_item_is_killed_graded_timeout_and_the_pool_recovers() -> None:
    # A hard timeout far below the soft one: the parent kills the worker by pid.
    with MathGrader(MathCheck(workers=1, timeout_s=60, hard_timeout_s=0.5)) as grader:
        assert isinstance(grader, MathGrader)
        slow = boxed(r"(2^{2^{2^{2^{2^{100}}}}})!")
        grades = grader.grade_many(
            [(slow, GradeInput(answer="5")), (boxed(r"2\sqrt{2}"), GradeInput(answer=r"\sqrt8"))]
        )
        assert (grades[0].correct, grades[0].reason) == (False, "timeout")
        assert grades[1].correct is True
        assert grader._pool.restarts == 1


@needs_math_verify
def test_soft_timeout_interrupts_math_verify() -> None:
    from pacore.graders import _math_worker as worker

    assert worker._parse("1")  # import math-verify before any timer runs
    previous = signal.signal(signal.SIGPROF, worker._on_timer)
    worker._State.timeout_s = 0.3
    try:
        assert worker._timed("5", r"(2^{2^{2^{2^{2^{100}}}}})!")[0] == worker.TIMEOUT
    finally:
        signal.signal(signal.SIGPROF, previous)


@needs_math_verify
def test_faster_parsing_changes_no_parse() -> None:
    from pacore.graders import _math_worker as worker

    converter = worker._module("latex2sympy2_extended.latex2sympy2")._Latex2Sympy
    srepr = worker._module("sympy").srepr
    answers = list(golds("hmmt_feb2025").values()) + list(golds("math500").values())[:60]
    answers += ["x = 3R^2", "[ \\frac{\\pi^2}{8}, \\frac{5 \\pi^2}{4} ]", "x =", "007", "1,000"]

    def parsed() -> list[list[str]]:
        return [[srepr(p) for p in worker._parse(a) or []] for a in answers]

    saved = converter.create_parser, converter.parse_number
    try:
        before = parsed()
        assert worker.enable_two_stage_parsing()
        assert worker.enable_fast_integers()
        after = parsed()
    finally:
        converter.create_parser, converter.parse_number = saved
    assert before == after


# ------------------------------------------------------------------ exact, numeric


def test_exact_grader() -> None:
    with get_grader("exact") as grader:
        assert grader.grade(boxed(r"\text{(B)}"), GradeInput(answer="(b)")).correct is True
        assert grader.grade(boxed("Navin"), GradeInput(answer=r"\text{Navin}")).correct is True
        assert grader.grade(boxed("1/2"), GradeInput(answer="0.5")).correct is False
        blank = grader.grade(boxed("x"), GradeInput(answer="  "))
        assert (blank.correct, blank.reason) == (None, "no gold answer")
        assert grader.grade("nothing here", GradeInput(answer="a")).reason == "no answer"


def test_numeric_grader() -> None:
    with get_grader("numeric", rel_tol=1e-3) as grader:
        assert grader.grade(boxed("0.3334"), GradeInput(answer=r"\frac{1}{3}")).correct is True
        assert grader.grade(boxed("0.34"), GradeInput(answer=r"\frac{1}{3}")).correct is False
        assert grader.grade("total: 1,234.0", GradeInput(answer="1234")).score == 1.0
        not_number = grader.grade(boxed("x+1"), GradeInput(answer="2"))
        assert (not_number.correct, not_number.reason) == (False, "answer not a number")
        gold_text = grader.grade(boxed("2"), GradeInput(answer=r"\text{Evelyn}"))
        assert (gold_text.correct, gold_text.reason) == (None, "gold not a number")


ORPHAN_SCRIPT = """
import multiprocessing, os, signal, sys
from pacore.graders.math_grader import MathCheck, MathGrader

if __name__ == "__main__":
    grader = MathGrader(MathCheck(workers=2, timeout_s=5))
    assert grader.equivalent_many([("x^2 + 2x + 1", "(x+1)^2")]) == [True]  # the pool runs
    print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no cleanup: a crash, an OOM kill, kill -9
"""


def test_math_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    """A `kill -9` of pacore left its math-verify workers running for good, holding its
    stdout and stderr open: `pacore eval ... | cat` never ended."""
    import os
    import subprocess
    import sys
    import time

    pytest.importorskip("math_verify")
    script = tmp_path / "orphans.py"
    script.write_text(ORPHAN_SCRIPT)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -9, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert pids  # the workers started so far

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for p in left:  # never leave them behind, whatever the verdict
        os.kill(p, 9)
    assert not left
