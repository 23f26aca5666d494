"""Whole-file writes that never leave half a file: `atomic_write` and `atomic_output`.

The data goes to a temporary file in the target's folder (created, with its parents,
when missing: every command makes its output's folders), is flushed to disk, and
then replaces the target with `os.replace`, so a reader sees the old file or the new
one, never a part. A failure (a full disk, Ctrl-C) removes the temporary file and
leaves the target as it was.

The new file gets the mode an ordinary `open` would give it (0666 less the umask),
or keeps the mode of the file it replaces: `mkstemp`'s 0600 would hide a report or a
data set from the rest of a team.

Errors are `StorageError`s naming the target (`OSError` does not leave this module).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pacore.errors import StorageError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(target: Path) -> int:
    """The mode `target` should have: its current one, else 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike[str], *, action: str = "write") -> Iterator[Path]:
    """A temporary path beside `target` to write into; it replaces `target` when the
    block ends without an error, and is removed when it raises. A failure is a
    `StorageError`: `{target}: cannot {action} ({reason})`."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise StorageError(f"{target}: cannot {action} ({exc.strerror or exc})") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, default_mode(target))
        _fsync(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise StorageError(f"{target}: cannot {action} ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(target: str | os.PathLike[str], data: bytes | str) -> None:
    """Write `data` (text is UTF-8) to `target` atomically; `StorageError` on failure."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_output(target) as tmp, tmp.open("wb") as fh:
        fh.write(payload)
