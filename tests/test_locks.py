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


@pytest.mark.parametrize("link", ["symlink", "hardlink", "symlinked folder"])
def test_an_output_under_another_name_is_the_same_output(tmp_path: Path, link: str) -> None:
    """Two writers, one naming the output, one a link to it, both wrote every result."""
    real = tmp_path / "real.jsonl"
    real.write_text('{"id": "a"}\n')
    if link == "symlink":
        other = tmp_path / "sym.jsonl"
        other.symlink_to(real)
    elif link == "hardlink":
        other = tmp_path / "hard.jsonl"
        os.link(real, other)
    else:
        (tmp_path / "alias").symlink_to(tmp_path)
        other = tmp_path / "alias" / "real.jsonl"
    for first, second in ((real, other), (other, real)):
        with OutputLock(first), pytest.raises(ConfigError, match="being written by another"):
            OutputLock(second).acquire()
        with OutputLock(second):  # each free again once released
            pass
    assert real.read_text() == '{"id": "a"}\n'
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")) == []


def test_a_new_output_through_a_symlink_locks_its_target(tmp_path: Path) -> None:
    (tmp_path / "sym.jsonl").symlink_to(tmp_path / "new.jsonl")  # dangling until written
    with OutputLock(tmp_path / "sym.jsonl"), pytest.raises(ConfigError):
        OutputLock(tmp_path / "new.jsonl").acquire()
