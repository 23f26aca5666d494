"""One writer per output: an exclusive OS lock next to the file or folder it guards.

`OutputLock(path)` locks `<path>.lock` with `flock`, so the lock dies with the process
that holds it (exit, crash or `kill -9`); the file holds the holder's PID, to name it
to a second writer, which is refused at once with one line. The lock file is removed on
a clean release. A lock on a file that a releasing writer has just removed is detected
and taken again on the new file, so two writers never both hold one.

One output has one lock under any name: the lock file is named after the output's real
path (a symlink to it locks the same file), and an output that exists is itself
`flock`ed too (a hard link is the same inode).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from pacore.errors import ConfigError


class OutputLock:
    """An exclusive lock on `path` (a results file or an evaluation folder)."""

    def __init__(self, path: str | Path) -> None:
        """A lock for `path`, not yet taken."""
        self.path = Path(path)
        real = Path(os.path.realpath(self.path))  # a symlink's target: one lock a file
        self.lock_path = real.with_name(real.name + ".lock")
        self._fd: int | None = None
        self._target: int | None = None
        """The output itself, `flock`ed while it exists (its other names: hard links)."""

    def acquire(self) -> None:
        """Take the lock, or raise `ConfigError` naming the PID of the writer that has it.
        The folder the lock goes in is created if need be (the output's own folder: the
        command creates it too)."""
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{self.lock_path.parent}: cannot create ({exc.strerror})") from None
        for _ in range(10):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise ConfigError(f"{self.lock_path}: cannot lock ({exc.strerror})") from None
                raise ConfigError(
                    f"{self.path} is being written by another pacore "
                    f"(PID {self._holder()}); wait for it to finish, or choose another output"
                ) from None
            if self._still_linked(fd):
                self._fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                try:
                    self._target = self._lock_output()
                except BaseException:
                    self.release()
                    raise
                return
            os.close(fd)  # the holder removed the file as we locked it: lock the new one
        raise ConfigError(f"{self.lock_path}: could not be locked")  # pragma: no cover

    def _lock_output(self) -> int | None:
        """Lock the output itself when it exists; refuse when a writer that named it
        otherwise (a hard link) holds it."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block
        except OSError:
            return None  # not there yet (or unreadable: the output guard says why)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(
                    f"{self.path} is being written by another pacore (under another name); "
                    "wait for it to finish, or choose another output"
                ) from None
            return None
        return fd

    def release(self) -> None:
        """Remove the lock file and let the lock go (the OS would on exit anyway)."""
        if self._target is not None:
            os.close(self._target)
            self._target = None
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.lock_path.unlink()
        os.close(self._fd)
        self._fd = None

    def _open(self) -> int:
        try:
            return os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"{self.lock_path}: cannot create the lock ({exc.strerror})"
            ) from None

    def _still_linked(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.lock_path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def _holder(self) -> str:
        """The holder's PID. It writes it just after it takes the lock, so a writer that
        lost a race by microseconds may look before it is there: wait for it briefly."""
        for _ in range(50):
            try:
                pid = self.lock_path.read_text(encoding="utf-8").strip()
            except OSError:
                return "unknown"
            if pid:
                return pid
            time.sleep(0.02)
        return "unknown"

    def __enter__(self) -> OutputLock:
        """Take the lock for the block."""
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release the lock."""
        self.release()
