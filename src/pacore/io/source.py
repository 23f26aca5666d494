"""An input file, readable as often as a command needs: `open_input(path)`.

Commands check a whole input before they spend anything, then read it again to
work on it. A regular file can be read twice; a pipe cannot: `--input <(cat f)`,
`--input /dev/stdin` or a named FIFO would be drained by the check (the second
read finds nothing) or block forever waiting for a second writer. So a pipe is
read once, to its end, into a private spool file, and every later read comes from
the spool. Devices (`/dev/zero` never ends) and folders are refused with one line.

A `Source` names the file as the user gave it (errors say `/dev/stdin:3`, not the
spool's name) and reads like a `Path`: `open`, `read_text`, `read_bytes`, `suffix`;
`os.fspath(source)` is the readable file (pyarrow and SQLite take it).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pacore.errors import ConfigError


@dataclass(frozen=True, eq=False)
class Source:
    """A checked input: `shown` is the name the user gave, `path` the file read."""

    shown: str
    path: Path
    identity: tuple[int, int] | None = None
    """(device, inode) of the file the user named, for the output guard; None for a pipe."""
    _finalizer: Any = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        """The name the user gave."""
        return self.shown

    def __fspath__(self) -> str:
        """The readable file (the spool, for a pipe)."""
        return str(self.path)

    @property
    def name(self) -> str:
        """The last part of the name the user gave."""
        return Path(self.shown).name

    @property
    def suffix(self) -> str:
        """The suffix of the name the user gave (`""` for `/dev/stdin`)."""
        return Path(self.shown).suffix

    def open(self, mode: str = "r", **kwargs: Any) -> IO[Any]:
        """Open the readable file (reading only)."""
        if any(c in mode for c in "wax+"):
            raise ValueError("a Source is read only")
        return self.path.open(mode, **kwargs)

    def read_text(self, encoding: str = "utf-8") -> str:
        """The whole file as text."""
        return self.path.read_text(encoding=encoding)

    def read_bytes(self) -> bytes:
        """The whole file."""
        return self.path.read_bytes()


def open_input(path: str | os.PathLike[str] | Source, *, what: str = "input") -> Source:
    """`path` checked as an input: a regular file as it is, a pipe read once into a spool.

    `ConfigError` (one line) for a missing file, a folder, a device or an unreadable file.
    """
    if isinstance(path, Source):
        return path
    shown = os.fspath(path)
    try:
        info = os.stat(shown)
    except FileNotFoundError:
        raise ConfigError(f"{shown}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{shown}: is a directory, not {_article(what)} file")
    if stat.S_ISREG(info.st_mode):
        if not os.access(shown, os.R_OK):
            raise ConfigError(f"{shown}: permission denied")
        return Source(shown, Path(shown), (info.st_dev, info.st_ino))
    if stat.S_ISFIFO(info.st_mode) or stat.S_ISSOCK(info.st_mode):
        return _spooled(shown)
    raise ConfigError(f"{shown}: is a device, not {_article(what)} file")


def _article(word: str) -> str:
    """`word` with "a" or "an" before it: "an input", "a dataset"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _spooled(shown: str) -> Source:
    """Read a pipe to its end into a private file that is removed with the `Source`."""
    folder = tempfile.mkdtemp(prefix="pacore-input-")
    spool = Path(folder) / "input"
    try:
        with open(shown, "rb") as src, spool.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise ConfigError(f"{shown}: cannot read ({exc.strerror or exc})") from None
    source = Source(shown, spool)
    object.__setattr__(source, "_finalizer", weakref.finalize(source, shutil.rmtree, folder, True))
    return source
