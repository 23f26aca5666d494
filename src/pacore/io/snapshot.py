"""A private copy of a SQLite file and its write-ahead log, for reading a database
without writing beside it (`pacore.store.connect_read_only`).

Reading a log in place creates or changes the `-shm` file beside it, in the user's
folder; a copy in a private temporary folder (mode 0700) can be opened as usual. The
database is copied before the log, and again if it changed meanwhile: only a checkpoint
writes to it, and a log copied after a database that no checkpoint touched holds every
frame the copy lacks (a frame cut short at its end is ignored by SQLite).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def _stamp(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_ino, info.st_size, info.st_mtime_ns


def copy_with_log(path: Path, log: Path, *, tries: int = 5) -> Path:
    """Copy `path` and its log `log` into a new private temporary folder; the copy of
    `path` (same name, its log beside it). The caller removes the folder."""
    folder = Path(tempfile.mkdtemp(prefix="pacore-read-"))
    copy = folder / path.name
    try:
        for _ in range(tries):
            before = _stamp(path)
            shutil.copyfile(path, copy)
            try:
                shutil.copyfile(log, folder / log.name)
            except FileNotFoundError:  # checkpointed and removed meanwhile: copy again
                (folder / log.name).unlink(missing_ok=True)
            if _stamp(path) == before:
                break
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return copy
