"""Batch input validation and resumable output files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pacore.batch import ResultWriter, completed_ids, read_problems, validate_problems
from pacore.errors import ConfigError
from pacore.types import Result


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_question_and_messages_records(tmp_path: Path) -> None:
    f = write_lines(
        tmp_path / "p.jsonl",
        json.dumps({"id": "a", "question": "What is 1+1?", "answer": "2"}),
        "",
        json.dumps(
            {
                "id": 7,
                "messages": [{"role": "user", "content": "Q"}],
                "ground_truth": {"answer": "x"},
            }
        ),
    )
    assert validate_problems(f) == 2
    a, b = list(read_problems(f))
    assert a.id == "a"
    assert a.messages == ({"role": "user", "content": "What is 1+1?"},)
    assert a.metadata == {"answer": "2"}
    assert b.id == "7"
    assert b.metadata == {"ground_truth": {"answer": "x"}}
    assert [p.id for p in read_problems(f, skip={"a"})] == ["7"]


def test_missing_id_gets_a_stable_content_id(tmp_path: Path) -> None:
    f = write_lines(tmp_path / "p.jsonl", json.dumps({"question": "Q"}))
    (p1,) = read_problems(f)
    (p2,) = read_problems(f)
    assert p1.id == p2.id
    assert len(p1.id) == 16


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("{not json", "p.jsonl:2: invalid JSON"),
        ('["a list"]', "p.jsonl:2: expected a JSON object"),
        ('{"id": "x"}', "p.jsonl:2: no question field"),
        ('{"id": "x", "question": "  "}', "p.jsonl:2: 'question' must be a non-empty string"),
        ('{"id": "x", "messages": []}', "p.jsonl:2: messages must be a non-empty list"),
        ('{"id": "x", "messages": [{"role": "user"}]}', r"p.jsonl:2: messages\[0\] needs"),
        (
            '{"id": "x", "messages": [{"role": "system", "content": "s"}]}',
            "p.jsonl:2: messages has no user message",
        ),
        (
            '{"id": "x", "messages": [{"role": "user", "content": "   "}]}',
            r"p.jsonl:2: messages\[0\]: the user turn is empty",
        ),
        (
            '{"id": "x", "messages": [{"role": "user", "content": [{"text": ""}]}]}',
            r"p.jsonl:2: messages\[0\]: the user turn is empty",
        ),
        ('{"id": "a", "question": "dup"}', r"p.jsonl:2: duplicate id 'a' \(first at .*p.jsonl:1\)"),
        ('{"id": {"x": 1}, "question": "q"}', "p.jsonl:2: the id must be"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, line: str, match: str) -> None:
    f = write_lines(tmp_path / "p.jsonl", json.dumps({"id": "a", "question": "Q"}), line)
    with pytest.raises(ConfigError, match=match):
        validate_problems(f)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        validate_problems(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match="is a directory"):
        validate_problems(tmp_path)
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        validate_problems(tmp_path / "bin.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ConfigError, match="no problems"):
        validate_problems(tmp_path / "empty.jsonl")


def _result(rid: str, status: str = "ok") -> Result:
    return Result(
        id=rid,
        status=status,  # type: ignore[arg-type]
        answer="4",
        final_text="4",
        rounds=(),
        widths=(4, 1),
        ttc_tokens=10,
        max_prompt_tokens=5,
        max_context_tokens=9,
        requests=2,
        latency_s=0.1,
    )


def test_writer_appends_and_flushes_each_result(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "out.jsonl"
    writer = ResultWriter(out)
    writer.write(_result("a"))
    # Visible on disk before close: a crash now loses nothing.
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["a"]
    writer.write(_result("b"))
    writer.close()
    assert completed_ids(out) == {"a", "b"}


def test_torn_last_line_is_repaired(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with ResultWriter(out) as w:
        w.write(_result("a"))
    with out.open("a") as fh:
        fh.write('{"id": "b", "answ')  # the process died mid-write
    assert completed_ids(out) == {"a"}
    assert out.read_text().endswith("}\n")
    assert len(out.read_text().splitlines()) == 1


def test_retry_failed_removes_failed_records(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with ResultWriter(out) as w:
        w.write(_result("a"))
        w.write(_result("b", "failed"))
    assert completed_ids(out) == {"a", "b"}
    assert completed_ids(out, retry_failed=True) == {"a"}
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["a"]


def test_foreign_output_file_is_refused(tmp_path: Path) -> None:
    out = write_lines(tmp_path / "out.jsonl", "hello")
    with pytest.raises(ConfigError, match=r"out\.jsonl:1: not a pacore result line"):
        completed_ids(out)
