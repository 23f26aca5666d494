"""`Appender.append_lines`: a batch of lines in one write, and what a full disk leaves."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacore.errors import StorageError
from pacore.io.appender import Appender
from tests.helpers import FullDisk

LINES = [f'{{"n": {i}, "pad": "{"x" * i}"}}\n'.encode() for i in range(6)]


def test_lines_in_one_batch_land_in_order(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(LINES[0])
    with Appender(path) as out:
        out.append_lines(LINES[1:4])
        out.append_lines([])
        out.append(LINES[4])
        assert out.written == 4
    assert path.read_bytes() == b"".join(LINES[:5])


@pytest.mark.parametrize("room", range(sum(len(x) for x in LINES[1:])))
def test_a_full_disk_keeps_the_whole_lines_before_it(tmp_path: Path, room: int) -> None:
    """Whatever part of the batch the disk took, the file ends on the last whole line
    written, and `written` counts exactly those."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(LINES[0])
    out = Appender(path, opener=lambda p: FullDisk(p.open("ab", buffering=0), room))  # type: ignore[arg-type,return-value]
    with pytest.raises(StorageError, match="No space left on device"):
        out.append_lines(LINES[1:])
    out.close()
    kept = path.read_bytes()
    fits, size = 0, 0
    for line in LINES[1:]:  # the label: how many whole lines fit in `room` bytes
        size += len(line)
        if size > room:
            break
        fits += 1
    assert kept == b"".join(LINES[: 1 + fits])
    assert out.written == fits
