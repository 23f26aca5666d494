"""Helpers shared by tests that drive real `pacore` processes."""

from __future__ import annotations

import time
from pathlib import Path


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
