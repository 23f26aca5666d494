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
