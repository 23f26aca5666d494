"""`results.jsonl` of an evaluation folder: read and checked, repaired, appended to.

Every line is one `RunRecord`. The file is checked before anything changes
(`inspect_results`): every complete line must be a result record, or the file is
refused with one line naming the first that is not, and left as it is. Only then,
once every other check has passed too, `prepare_resume` repairs it: a last line
without its newline (a write that a crash or a full disk interrupted) is cut off,
and infrastructure failures are dropped, so that both run again.

One record per key. A file written by an older pacore, or by two writers at once,
or by hand, may hold one `(id, method, run)` more than once; `one_per_key` keeps the
last record that did not fail (a rerun appends), else the last one, and both the
summary and the resume see only those.

`ResultsAppender` writes each record as one unbuffered append and turns a failed
write (a full disk) into a `StorageError`: the part of the line written is cut off
again (the next run would cut it anyway), and the lines before it stay valid.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pacore.errors import ConfigError, StorageError
from pacore.eval.records import RunRecord

Key = tuple[str, str, str]
"""(id, method, run) as strings: one result of an evaluation."""


@dataclass(frozen=True)
class ResultsState:
    """What `results.jsonl` holds, read without changing it."""

    records: tuple[RunRecord, ...] = ()
    """Every complete record, in file order (duplicates included)."""
    lines: tuple[bytes, ...] = ()
    """The raw complete lines, newlines kept, one per record."""
    torn: bool = False
    """Whether the file ends with a line without its newline."""

    @property
    def done(self) -> frozenset[Key]:
        """The keys a resumed evaluation skips: those with a record that did not fail."""
        return frozenset(r.key for r in self.records if not r.failed)


def inspect_results(path: Path) -> ResultsState:
    """Check that `path` is an eval results file (or absent), without changing it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ResultsState()
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a results file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    lines = data.splitlines(keepends=True)
    tail = lines.pop() if lines and not lines[-1].endswith(b"\n") else None
    records: list[RunRecord] = []
    kept: list[bytes] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = _record(line)
        if record is None:
            raise ConfigError(
                f"{path}:{number}: not an eval result line; refusing to change or append "
                "to this file (choose another --out)"
            )
        records.append(record)
        kept.append(line)
    if tail is not None and tail.strip() and _is_foreign(tail):
        raise ConfigError(
            f"{path}:{len(lines) + 1}: not an eval result line; refusing to change or "
            "append to this file (choose another --out)"
        )
    return ResultsState(tuple(records), tuple(kept), torn=tail is not None)


def _record(line: bytes) -> RunRecord | None:
    try:
        data = json.loads(line)
        return RunRecord.from_dict(data) if isinstance(data, dict) else None
    except (ValueError, TypeError):
        return None


def _is_foreign(tail: bytes) -> bool:
    """A torn tail is ours when it is cut JSON, or a whole record missing its newline;
    a complete JSON value that is no record belongs to someone else."""
    try:
        json.loads(tail)
    except ValueError:
        return False
    return _record(tail) is None


def prepare_resume(path: Path, state: ResultsState) -> None:
    """Cut a torn last line and drop failed records (rewritten atomically), so both
    run again. Call only once every check has passed: this is the first write."""
    kept = [line for line, r in zip(state.lines, state.records, strict=True) if not r.failed]
    if not state.torn and len(kept) == len(state.lines):
        return
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(b"".join(kept))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(
            f"{path}: cannot repair ({exc.strerror}); the file is unchanged"
        ) from None


def one_per_key(records: Iterable[RunRecord]) -> list[RunRecord]:
    """One record per (id, method, run): the last that did not fail, else the last."""
    chosen: dict[Key, RunRecord] = {}
    for r in records:
        previous = chosen.get(r.key)
        if previous is None or not r.failed or previous.failed:
            chosen[r.key] = r
    return list(chosen.values())


def open_append(path: Path) -> IO[bytes]:
    """`path` opened to append, unbuffered: each write goes to the file at once."""
    return path.open("ab", buffering=0)


class ResultsAppender:
    """Appends one record per line; a failed write is a `StorageError`."""

    def __init__(self, path: Path, opener: Callable[[Path], IO[bytes]] | None = None) -> None:
        """Open `path` to append (`opener` replaces `open_append`, for tests)."""
        self.path = path
        try:
            self._fh = (opener or open_append)(path)
        except OSError as exc:
            raise StorageError(f"{path}: cannot write ({exc.strerror})") from None

    def append(self, record: RunRecord) -> None:
        """Write `record` as one line, all of it or a `StorageError` (the part written
        is cut off again, as far as the file system lets us)."""
        data = memoryview((json.dumps(record.to_dict(), ensure_ascii=False) + "\n").encode())
        whole: int | None = None
        try:
            whole = self.path.stat().st_size
            while data:
                written = self._fh.write(data)
                if not written:
                    raise OSError(errno.EIO, "the file took no bytes")
                data = data[written:]
        except OSError as exc:
            if whole is not None:
                with contextlib.suppress(OSError):  # else the next run cuts the torn line
                    os.truncate(self.path, whole)
            raise StorageError(
                f"{self.path}: cannot write a result ({exc.strerror}); the results "
                "written so far are kept, rerun the same command to resume"
            ) from None

    def close(self) -> None:
        """Close the file."""
        try:
            self._fh.close()
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot close ({exc.strerror})") from None
