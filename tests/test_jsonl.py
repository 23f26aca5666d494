"""The one JSONL reader: records with their line numbers, one-line errors, torn lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacore.errors import ConfigError
from pacore.io.jsonl import cut_torn_line, read_jsonl, read_lines


def test_records_come_with_their_line_numbers(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"a": 1}\n\n  \n[2]\r\n"x"\n', encoding="utf-8")
    assert list(read_jsonl(f)) == [(1, {"a": 1}), (4, [2]), (5, "x")]
    assert [line for _, line in read_lines(f)][1] == "[2]\r\n"  # kept byte for byte


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b'{"a": 1}\n{oops\n', r"d\.jsonl:2: invalid JSON \(Expecting property name"),
        (b"\xff\xfe\x00garbage", r"d\.jsonl:1: not UTF-8 text"),
        (b'{"a": 1}\n{"b": 2}\n{"c": "\xe9"}\n', r"d\.jsonl:3: not UTF-8 text"),  # its line
    ],
)
def test_bad_content_is_one_line_naming_the_file(
    tmp_path: Path, content: bytes, match: str
) -> None:
    f = tmp_path / "d.jsonl"
    f.write_bytes(content)
    with pytest.raises(ConfigError, match=match) as info:
        list(read_jsonl(f))
    assert "\n" not in str(info.value)


def test_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.jsonl: no such file"):
        list(read_jsonl(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match="is a directory"):
        list(read_jsonl(tmp_path))


@pytest.mark.parametrize(
    ("content", "kept"),
    [
        (b'{"a": 1}\n{"b": ', b'{"a": 1}\n'),
        (b'{"a": 1}\n', b'{"a": 1}\n'),
        (b'{"torn', b""),
        (b"", b""),
    ],
)
def test_a_torn_last_line_is_cut(tmp_path: Path, content: bytes, kept: bytes) -> None:
    f = tmp_path / "out.jsonl"
    f.write_bytes(content)
    cut_torn_line(f)
    assert f.read_bytes() == kept
