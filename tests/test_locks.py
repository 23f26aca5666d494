"""The one-writer lock: refused with the holder's PID, released on exit and on a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pacore.errors import ConfigError
from pacore.io.locks import OutputLock

ROOT = Path(__file__).resolve().parents[1]


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    with (
        OutputLock(target),
        pytest.raises(ConfigError, match=rf"being written by another pacore \(PID {os.getpid()}\)"),
    ):
        OutputLock(target).acquire()
    assert not (tmp_path / "out.jsonl.lock").exists()  # removed on release
    with OutputLock(target):  # free again
        pass


def test_the_lock_dies_with_a_killed_holder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    code = (
        "import sys, time; from pacore.io.locks import OutputLock; "
        f"OutputLock({str(target)!r}).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    holder = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=f"PID {holder.pid}"):
            OutputLock(target).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = OutputLock(target)  # the stale lock file is left, but its lock died
    lock.acquire()
    lock.release()
