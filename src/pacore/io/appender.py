"""Resumable JSONL outputs: one line per finished record, appended the moment it is done.

`inspect_lines` reads such a file without changing it: every complete line must
parse as one of the command's records, or the file is refused with one line naming
the first that does not (pacore never appends to a file it does not understand).
A last line without its newline is a write that a crash or a full disk cut short:
it is reported as `torn`, and refused only when it is a complete JSON value that is
not a record (someone else's line that merely lacks a newline).

The file is read in blocks, never whole: what is kept of it is each line's record
(as small as the command's parser makes it) and where the line lies, so a resume's
memory does not grow with the texts the lines hold. `rewrite_kept` replaces the file
with the lines kept (a torn tail cut, failures dropped for a rerun), copied from the
file itself, atomically and keeping its mode; a file changed since it was read is
refused rather than rewritten from what was read (lines written since would be lost).

`Appender` writes each line with unbuffered writes, all of it or none: a write that
fails part way (a full disk) is cut back to the last whole line before the error is
raised, so the file is a valid, resumable output the moment the error is seen, and
stays one after space is freed. (A buffered writer would flush the rest of a failed
line on close, after the cut: a fragment on the next line.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Self, TypeVar

from pacore.errors import ConfigError, StorageError
from pacore.io.atomic import atomic_output
from pacore.io.guard import kind_of
from pacore.io.jsonl import cut_lines, loads

T = TypeVar("T")


@dataclass(frozen=True)
class LinesState(Generic[T]):
    """What a resumable output holds, read without changing it."""

    records: tuple[T, ...] = ()
    """Every complete record, in file order."""
    starts: array[int] = field(default_factory=lambda: array("q"))
    """Where each record's line starts in the file (bytes)."""
    lengths: array[int] = field(default_factory=lambda: array("q"))
    """Each record's line's length, its line break included."""
    torn: bool = False
    """Whether the file ends with a line without its newline."""
    identity: tuple[int, ...] | None = None
    """The file as read (device, inode, size, modification time); None: no file."""


def _regular(path: Path) -> bool:
    """Whether `path` is a regular file (False: there is none); a folder, a device or a
    FIFO is a `ConfigError` (`/dev/zero` would be read for ever, a FIFO waited on)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{path}: is a directory, not an output file")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{path}: is {kind_of(mode)}, not a regular file; move it away")
    return True


def inspect_lines(path: Path, parse: Callable[[Any], T | None], *, refuse: str) -> LinesState[T]:
    """Read `path` (absent: empty) into records with `parse` (a JSON value to a record,
    None when it is not one); a line that is not a record is a `ConfigError`:
    `{path}:{line}: {refuse}`. Lines are cut where `bytes.splitlines` cuts them
    (`pacore.io.jsonl.cut_lines`), and blank ones are skipped."""
    if not _regular(path):
        return LinesState()
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return LinesState()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    records: list[T] = []
    starts, lengths = array("q"), array("q")
    tail: bytes | None = None
    number = end = 0
    try:
        with fh:
            for number, (start, line) in enumerate(cut_lines(fh), 1):
                end = start + len(line)
                if not line.endswith((b"\n", b"\r")):
                    tail = line  # only the last line can lack its break
                    break
                if not line.strip():
                    continue
                record = _parse(line, parse)
                if record is None:
                    raise ConfigError(f"{path}:{number}: {refuse}")
                records.append(record)
                starts.append(start)
                lengths.append(len(line))
            info = os.fstat(fh.fileno())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    # The size read, not the size now: a line appended after the last read makes a
    # later rewrite refuse the file rather than drop that line.
    identity = _identity(info, size=end)
    if tail is not None and tail.strip() and _foreign_tail(tail, parse):
        raise ConfigError(f"{path}:{number}: {refuse}")
    return LinesState(tuple(records), starts, lengths, tail is not None, identity)


def _identity(info: os.stat_result, size: int | None = None) -> tuple[int, ...]:
    """The file `info` describes, as a rewrite compares it: device, inode, size (`size`
    when given: the bytes read), modification time."""
    return (info.st_dev, info.st_ino, info.st_size if size is None else size, info.st_mtime_ns)


def _parse(line: bytes, parse: Callable[[Any], T | None]) -> T | None:
    try:
        return parse(loads(line, strict=False))
    except ConfigError:  # a format this pacore cannot read says so itself
        raise
    except (ValueError, TypeError, KeyError):
        return None


def _foreign_tail(tail: bytes, parse: Callable[[Any], Any]) -> bool:
    """A torn tail is ours when it is cut JSON starting an object, or a whole record
    missing its newline; anything else belongs to someone else."""
    if not tail.lstrip().startswith(b"{"):
        return True
    try:
        loads(tail, strict=False)
    except ValueError:
        return False
    return _parse(tail, parse) is None


def rewrite_kept(path: Path, state: LinesState[T], keep: Callable[[T], bool]) -> None:
    """Replace `path` by the lines of `state` whose record `keep` accepts (blank lines
    and a torn tail are gone), copied from the file, atomically, keeping its mode. The
    file must be as `state` read it; anything else, or a failure, is a `ConfigError`
    (a resume that cannot start), the file unchanged."""
    try:
        src = path.open("rb")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    with src:
        if _identity(os.fstat(src.fileno())) != state.identity:
            raise ConfigError(
                f"{path}: changed since pacore read it (another writer?); the file is "
                "unchanged, rerun to read it again"
            )
        try:
            with atomic_output(path, action="repair") as tmp, tmp.open("wb") as out:
                for start, length in _kept_spans(state, keep):
                    src.seek(start)
                    out.write(src.read(length))
        except StorageError as exc:
            raise ConfigError(f"{exc}; the file is unchanged") from None


def _kept_spans(state: LinesState[T], keep: Callable[[T], bool]) -> Iterator[tuple[int, int]]:
    """The byte ranges to copy: the kept lines, neighbours joined into one range."""
    start = end = -1
    for record, at, length in zip(state.records, state.starts, state.lengths, strict=True):
        if not keep(record):
            continue
        if at != end:
            if end > start:
                yield start, end - start
            start = at
        end = at + length
    if end > start:
        yield start, end - start


def json_line(record: Any) -> bytes:
    """One JSON line, UTF-8; text that is not valid Unicode (a lone surrogate a server
    sent) is written escaped rather than failing the write. A NaN or an infinity is
    written as null: strict JSON readers (the viewer's among them) refuse them."""
    try:
        text = json.dumps(record, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(record), ensure_ascii=False, allow_nan=False)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(json.loads(text), ensure_ascii=True) + "\n").encode("ascii")


def _finite(value: Any) -> Any:
    """`value` with every NaN and infinity replaced by None."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _whole_lines(lines: Sequence[bytes], size: int) -> int:
    """How many of `lines`, written one after another, fit whole in `size` bytes."""
    count = 0
    for line in lines:
        size -= len(line)
        if size < 0:
            break
        count += 1
    return count


def open_append(path: Path) -> IO[bytes]:
    """`path` opened to append, unbuffered (every write is one system call), created
    with the mode an ordinary `open` gives."""
    return path.open("ab", buffering=0)


class Appender:
    """Appends one line per record; a failed write is cut back and a `StorageError`.

    `noun` names the records in messages ("results"). `opener` replaces `open_append`
    (tests pass one that fails like a full disk).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        noun: str = "results",
        opener: Callable[[Path], IO[bytes]] | None = None,
    ) -> None:
        """Open `path` to append, creating its folder; `StorageError` when it cannot."""
        self.path = Path(path)
        self.noun = noun
        self.written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = (opener or open_append)(self.path)
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def append(self, line: bytes) -> None:
        """Write one whole line (ending in a newline), or raise `StorageError` with the
        file cut back to where it was."""
        self.append_lines([line])

    def append_lines(self, lines: Sequence[bytes]) -> None:
        """Write whole lines (each ending in a newline), in one system call where the
        file takes them so, or raise `StorageError` with the file cut back to the last
        whole line written: the lines before it are kept, none is torn."""
        if not lines:
            return
        block = lines[0] if len(lines) == 1 else b"".join(lines)
        data = memoryview(block)
        start: int | None = None
        try:
            start = os.stat(self.path).st_size
            while data:
                written = self._fh.write(data)
                if not written:
                    raise OSError(errno.EIO, "the file took no bytes")
                data = data[written:]
        except OSError as exc:
            if start is not None:
                whole = _whole_lines(lines, len(block) - len(data))
                self._cut(start + sum(len(line) for line in lines[:whole]))
                self.written += whole
            raise StorageError(
                f"{self.path}: cannot write ({exc.strerror or exc}); the {self.written} "
                f"{self.noun} written before are safe: free the space (or fix the file) "
                "and rerun the same command to resume"
            ) from None
        self.written += len(lines)

    def append_record(self, record: Any) -> None:
        """`append(json_line(record))`."""
        self.append(json_line(record))

    def _cut(self, size: int) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self._fh.truncate(size)
        with contextlib.suppress(OSError):  # else the next run cuts the torn line
            os.truncate(self.path, size)

    def close(self) -> None:
        """Close the file (nothing is buffered, so nothing can be lost here)."""
        with contextlib.suppress(OSError):
            self._fh.close()

    def __enter__(self) -> Self:
        """The appender itself, closed on leaving the block."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the file."""
        self.close()
