"""`inspect_lines` reads a resumable output a block at a time and keeps only each line's
record and place; `rewrite_kept` copies the kept lines from the file itself.

The files are generated: each is built from a list of pieces (records, blank lines,
line breaks, a torn or whole last line), and what inspection must find comes from how
the file was built, block sizes small enough for every break to fall across blocks.
"""

from __future__ import annotations

import json
import random
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pacore.errors import ConfigError
from pacore.eval.results_file import Held, inspect_results, prepare_resume
from pacore.io import appender, jsonl
from pacore.io.appender import inspect_lines, rewrite_kept

REFUSE = "not ours"


def _record(data: Any) -> int | None:
    """A record is an object with an integer `n`."""
    if not isinstance(data, dict) or type(data.get("n")) is not int:
        return None
    return int(data["n"])


@dataclass
class Built:
    data: bytes
    records: list[int]
    spans: list[tuple[int, int]]
    """(start, length) of each record's line."""
    torn: bool


def _build(rng: random.Random, records: int) -> Built:
    """A file of `records` record lines, blank lines between some, each line ended by
    LF, CR LF or CR, and maybe a last line without its break (cut JSON, or a whole
    record)."""
    out = bytearray()
    numbers, spans = [], []
    for n in range(records):
        while rng.random() < 0.2:  # blank lines: skipped, and dropped by a rewrite
            # (an empty one after a lone CR would make CR LF: one break, not two lines)
            blank = rng.choice([b"  ", b"\t"] if out.endswith(b"\r") else [b"", b"  ", b"\t"])
            out += blank + rng.choice([b"\n", b"\r\n", b"\r"])
        pad = "é" * rng.choice([0, 1, 5, 40, 300])  # multi-byte text, long and short
        line = json.dumps({"n": n, "pad": pad}, ensure_ascii=False).encode()
        line += rng.choice([b"\n", b"\r\n", b"\r"])
        spans.append((len(out), len(line)))
        numbers.append(n)
        out += line
    torn = rng.random() < 0.5
    if torn:
        whole = json.dumps({"n": records, "pad": "x" * rng.randint(0, 50)}).encode()
        out += whole[: rng.randint(1, len(whole))]  # cut anywhere, or not at all
    return Built(bytes(out), numbers, spans, torn)


@pytest.mark.parametrize("seed", range(40))
def test_generated_files_are_read_as_built_across_any_block_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    built = _build(rng, rng.randint(0, 30))
    path = tmp_path / "out.jsonl"
    path.write_bytes(built.data)
    monkeypatch.setattr(jsonl, "LINE_BLOCK", rng.choice([1, 2, 3, 7, 64, 1 << 20]))
    state = inspect_lines(path, _record, refuse=REFUSE)
    assert list(state.records) == built.records
    assert list(zip(state.starts, state.lengths, strict=True)) == built.spans
    assert state.torn is built.torn
    # Keep a random subset: the file becomes exactly those lines, as they were.
    keep = {n for n in built.records if rng.random() < 0.6}
    rewrite_kept(path, state, lambda n: n in keep)
    lines = zip(built.spans, built.records, strict=True)
    expected = b"".join(built.data[at : at + size] for (at, size), n in lines if n in keep)
    assert path.read_bytes() == expected
    assert list(inspect_lines(path, _record, refuse=REFUSE).records) == sorted(keep)


def test_the_cut_is_the_whole_file_splitlines_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against `bytes.splitlines` on the whole file (how it was read before): a lone CR
    ends a line, CR LF is one break, and so across every block boundary."""
    rng = random.Random(7)
    pieces = [b'{"n": 1}', b"\r", b"\n", b"\r\r", b'{"n": 2}\r\n', b"\n\r", b'{"n": 3}']
    for _ in range(200):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        path = tmp_path / "f.jsonl"
        path.write_bytes(data)
        monkeypatch.setattr(jsonl, "LINE_BLOCK", rng.randint(1, 9))
        with path.open("rb") as fh:
            got = list(jsonl.cut_lines(fh))
        want, at = [], 0
        for line in data.splitlines(keepends=True):
            want.append((at, line))
            at += len(line)
        assert got == want, data


@pytest.mark.parametrize("seed", range(40))
def test_the_viewer_reads_the_lines_a_resume_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """`scan_objects` (the viewer's reader) finds every record line where the resume's
    reader does, whatever ends the lines (LF, CR LF, a lone CR), and `line_at` rereads
    exactly the line a span names (the viewer rereads a run's line when it is opened)."""
    rng = random.Random(1000 + seed)
    built = _build(rng, rng.randint(0, 30))
    path = tmp_path / "out.jsonl"
    path.write_bytes(built.data)
    monkeypatch.setattr(jsonl, "LINE_BLOCK", rng.choice([1, 2, 5, 64, 1 << 20]))
    scanned = [(offset, obj) for _, offset, obj in jsonl.scan_objects(path)]
    objects = [(offset, obj["n"]) for offset, obj in scanned if obj is not None]
    starts = [start for start, _ in built.spans]
    assert objects[: len(built.records)] == list(zip(starts, built.records, strict=True))
    with path.open("rb") as fh:
        for start, size in built.spans:
            assert jsonl.line_at(fh, start) == built.data[start : start + size]
        assert jsonl.line_at(fh, len(built.data)) == b""


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b'{"n": 1}\nnot json\n{"n": 2}\n', 2),
        (b'{"n": 1}\r\n\r\n{"x": 1}\r\n', 3),
        (b'{"n": 1}\n[1, 2]', 2),  # a whole JSON value without its newline: not ours
        (b'{"n": 1}\nhello', 2),
    ],
)
def test_a_line_that_is_not_a_record_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, line: int
) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(content)
    for block in (1, 3, 1 << 20):
        monkeypatch.setattr(jsonl, "LINE_BLOCK", block)
        with pytest.raises(ConfigError) as caught:
            inspect_lines(path, _record, refuse=REFUSE)
        assert str(caught.value) == f"{path}:{line}: {REFUSE}"
    assert path.read_bytes() == content


def test_a_file_changed_since_it_was_read_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": 2}\n{"n": 3')
    state = inspect_lines(path, _record, refuse=REFUSE)
    assert state.torn
    with path.open("ab") as fh:  # another writer finishes its line meanwhile
        fh.write(b'}\n{"n": 4}\n')
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="changed since pacore read it"):
        rewrite_kept(path, state, lambda n: True)
    assert path.read_bytes() == before
    again = inspect_lines(path, _record, refuse=REFUSE)
    assert list(again.records) == [1, 2, 3, 4]
    assert not again.torn


def test_a_line_appended_after_the_last_read_is_never_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that appends between the inspection's last read and its look at the
    file: the repair is refused, so the appended line survives."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": 2}\n')
    read = jsonl.cut_lines

    def then_append(fh: Any) -> Any:
        yield from read(fh)
        with path.open("ab") as other:
            other.write(b'{"n": 3}\n')

    monkeypatch.setattr(appender, "cut_lines", then_append)
    state = inspect_lines(path, _record, refuse=REFUSE)
    assert (list(state.records), state.torn) == ([1, 2], False)
    with pytest.raises(ConfigError, match="changed since pacore read it"):
        rewrite_kept(path, state, lambda n: n != 1)  # a failed run dropped, say
    assert path.read_bytes() == b'{"n": 1}\n{"n": 2}\n{"n": 3}\n'


def test_a_missing_file_is_empty_and_a_folder_is_refused(tmp_path: Path) -> None:
    state = inspect_lines(tmp_path / "none.jsonl", _record, refuse=REFUSE)
    assert (state.records, state.torn, state.identity) == ((), False, None)
    with pytest.raises(ConfigError, match="is a directory"):
        inspect_lines(tmp_path, _record, refuse=REFUSE)


def _results_line(i: int, status: str, text: str) -> bytes:
    record = {"format": "pacore.eval/1", "id": f"p{i}", "method": "pacore:16", "run": 0,
              "status": status, "final_text": text}  # fmt: skip
    return (json.dumps(record) + "\n").encode()


def test_a_resume_keeps_keys_not_texts(tmp_path: Path) -> None:
    """A results file of long syntheses: inspecting it for a resume holds each line's
    key and failure, never its text, and reads it a block at a time (its peak memory
    is a few blocks, not the file). Failed lines are dropped by copying the others."""
    path = tmp_path / "results.jsonl"
    text = "t" * 200_000
    with path.open("wb") as fh:
        for i in range(100):
            fh.write(_results_line(i, "failed" if i % 10 == 3 else "ok", text))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        state = inspect_results(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > 20_000_000
    assert peak < 6 * jsonl.LINE_BLOCK < size / 3
    assert all(type(r) is Held for r in state.records)
    assert len(state.done) == 90
    before = path.read_bytes().splitlines(keepends=True)
    prepare_resume(path, state)
    assert path.read_bytes() == b"".join(x for i, x in enumerate(before) if i % 10 != 3)
    assert len(inspect_results(path).records) == 90
