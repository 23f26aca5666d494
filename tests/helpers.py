"""Helpers shared by tests that drive real `pacore` processes."""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO


def wait_for_lines(path: Path, n: int, timeout: float = 60.0) -> int:
    """Block until `path` holds at least `n` lines; return how many it holds.

    Kill-and-resume tests need a process to be midway, not a time to have passed, so
    they wait for its output. `timeout` is a generous guard against a hung process:
    `TimeoutError` then, so a test never goes on from a half-made precondition.
    """
    deadline = time.monotonic() + timeout
    while (count := _count_lines(path)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} has {count} lines, not {n}, after {timeout} s")
        time.sleep(0.02)  # polling interval, not a wait the test depends on
    return count


def _count_lines(path: Path) -> int:
    try:
        return len(path.read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        return 0


@dataclass
class FullDisk:
    """A file that takes `room` more bytes, then fails as a full disk does (the part of
    a write that fits lands first)."""

    fh: IO[bytes]
    room: int

    def write(self, data: bytes | memoryview) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        taken = bytes(data[: self.room])
        self.room -= len(taken)
        return self.fh.write(taken)

    def close(self) -> None:
        self.fh.close()
