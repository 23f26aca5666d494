"""`RunRecord`: the results.jsonl line format, read back as written before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pacore.errors import ConfigError
from pacore.eval.records import RunRecord
from pacore.eval.results_file import read_records

# A line as `pacore eval` wrote it before RunRecord existed: keys, order and values.
LINE = (
    '{"id": "p0", "method": "pacore:low", "family": "pacore", "run": 1, "status": "ok", '
    '"error": null, "answer": "\\\\boxed{42}", "extracted": "42", "score": 1.0, '
    '"correct": true, "reason": "correct", "ttc_tokens": 120, "max_prompt_tokens": 40, '
    '"max_context_tokens": 70, "requests": 2, "trajectories": 5, '
    '"round_correct": [[true, false, null, false]], "ref_correct": [true, false, null, false], '
    '"ref_answers": ["42", "7", null, "8"], "votes": [], "final_text": "<think>t</think>42", '
    '"latency_s": 0.25}'
)


def test_a_line_reads_and_writes_back_byte_for_byte() -> None:
    record = RunRecord.from_dict(json.loads(LINE))
    assert json.dumps(record.to_dict(), ensure_ascii=False) == LINE
    assert record.ref_correct == (True, False, None, False)
    assert record.key == ("p0", "pacore:low", "1")
    assert not record.failed


def test_old_lines_without_optional_fields_still_read() -> None:
    record = RunRecord.from_dict({"id": 3, "method": "sc:4", "run": 0, "status": "failed"})
    assert record.id == "3"
    assert record.failed
    assert record.correct is None
    assert record.round_correct == ()


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"id": "a", "method": "m", "status": "ok"}', r"r\.jsonl:1: not an eval result \(no run"),
        ('{"id": "a", "method": "m", "run": "x", "status": "ok"}', r"r\.jsonl:1: .*run 'x'"),
        ("[1, 2]", r"r\.jsonl:1: not an eval result"),
    ],
)
def test_a_foreign_line_names_file_and_line(tmp_path: Path, line: str, match: str) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=match):
        list(read_records(path))


def test_a_summary_without_the_final_texts_is_the_same() -> None:
    """The report reads records without their final texts (memory that would grow with
    the syntheses' length), counting each text's markers as it is read: the summary is
    the one the whole records give."""
    import random
    from dataclasses import replace

    from pacore.eval.methods import parse_method
    from pacore.eval.metrics import count_markers
    from pacore.eval.runner import summarize

    rng = random.Random(4)
    phrases = ["Reference 2 is right", "ref 3 slips", "参考 1", "as Ref 1 says", "I check it"]
    records = []
    for i in range(200):
        text = " ".join(rng.choice(phrases) for _ in range(rng.randint(0, 5))) or None
        right = rng.random() < 0.5
        records.append(
            RunRecord(
                id=f"p{i // 2}", method="pacore:4", family="pacore", run=i % 2, status="ok",
                error=None, answer="42" if right else "7", extracted="42" if right else "7",
                score=float(right), correct=right, reason=None, ttc_tokens=100 + i,
                max_prompt_tokens=10, max_context_tokens=20, requests=2, trajectories=5,
                ref_correct=(True, False, rng.random() < 0.5), ref_answers=("42", "7", "9"),
                final_text=text,
            )
        )  # fmt: skip
    slim = [r.without_text() for r in records]
    assert all(s.final_text is None for s in slim)
    assert all(s == replace(r, final_text=None) for s, r in zip(slim, records, strict=True))
    assert [dict(s.marker_counts()) for s in slim] == [
        count_markers(r.final_text or "") for r in records
    ]
    method = parse_method("pacore:4")
    same = lambda a, b: a == b  # noqa: E731
    whole = summarize(method, records, "d", same)
    assert whole.cross_check is not None
    assert whole.cross_check.n_solutions == 200
    assert 0 < whole.cross_check.solutions_with_marker < 200
    assert summarize(method, slim, "d", same) == whole


def test_a_report_holds_equal_values_once_and_reads_the_same(tmp_path: Path) -> None:
    """Records read for a report with one `shared` dict: equal to those read alone, the
    same summary, and their repeated values (ids, methods, statuses, the references'
    answers and grades, each round's grades) one object each, not one per line."""
    import json
    import random

    from pacore.eval.methods import parse_method
    from pacore.eval.runner import summarize

    rng = random.Random(11)
    path = tmp_path / "results.jsonl"
    with path.open("w") as fh:
        for i in range(300):
            refs = [rng.choice(["42", "7", None]) for _ in range(4)]
            right = rng.random() < 0.5
            record = {"id": f"p{i // 6}", "method": "pacore:4", "family": "pacore",
                      "run": i % 6, "status": "ok", "answer": "so 42" if right else "so 7",
                      "extracted": "42" if right else "7", "score": float(right),
                      "correct": right, "reason": "correct" if right else "wrong",
                      "round_correct": [[r == "42" for r in refs]],
                      "ref_correct": [r == "42" for r in refs], "ref_answers": refs,
                      "votes": [],
                      "final_text": "Reference 1 is right" * rng.randint(0, 2)}  # fmt: skip
            fh.write(json.dumps(record) + "\n")
    alone = [r.without_text() for r in read_records(path)]
    shared: dict[object, object] = {}
    held = [r.without_text(shared) for r in read_records(path)]
    assert held == alone
    same = lambda a, b: a == b  # noqa: E731
    method = parse_method("pacore:4")
    assert summarize(method, held, "d", same) == summarize(method, alone, "d", same)
    for name in ("id", "method", "status", "ref_answers", "ref_correct", "round_correct"):
        values = [getattr(r, name) for r in held]
        distinct = {repr(v) for v in values}
        assert len({id(v) for v in values}) == len(distinct) < len(values), name
        assert len({id(v) for v in (getattr(r, name) for r in alone)}) > len(distinct), name


def test_accuracy_counts_a_code_run_solved_only_when_every_test_passes() -> None:
    """A code run's score is its fraction of tests passed; the accuracy averaged those
    (0.28 where no run passed every test, while pass@k, the outcomes and the per-round
    accuracy of the same runs said 0). One pass@1 now: a run counts when it is correct."""
    from pacore.eval.methods import parse_method
    from pacore.eval.runner import summarize

    fractions = [0.5, 0.75, 1.0, 0.0, 0.5, 1.0]  # runs of three problems, two each
    records = [
        RunRecord(
            id=f"p{i // 2}", method="single", family="single", run=i % 2, status="ok",
            error=None, answer="code", extracted=None, score=f, correct=f == 1.0,
            reason=None, ttc_tokens=10, max_prompt_tokens=5, max_context_tokens=15,
            requests=1, trajectories=1, round_correct=((f == 1.0,),),
        )
        for i, f in enumerate(fractions)
    ]  # fmt: skip
    summary = summarize(parse_method("single"), records, "d", lambda a, b: a == b)
    solved = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]  # per problem, by construction
    expected = sum(sum(runs) / len(runs) for runs in solved) / len(solved)
    assert summary.pass_at_1 is not None
    assert summary.pass_at_1.mean == pytest.approx(expected)
    assert summary.extra["pass_at_k"]["pass@1"] == pytest.approx(expected)
