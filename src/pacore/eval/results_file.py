"""`results.jsonl` of an evaluation folder: read and checked, repaired, appended to.

Every line is one `RunRecord`. The file is checked before anything changes
(`inspect_results`): every complete line must be a result record, or the file is
refused with one line naming the first that is not, and left as it is. What the
check keeps of each line is its key and whether it failed (`Held`), not its texts:
a resume's memory does not grow with the syntheses' length. Only then,
once every other check has passed too, `prepare_resume` repairs it: a last line
without its newline (a write that a crash or a full disk interrupted) is cut off,
and infrastructure failures are dropped, so that both run again.

One record per key. A file written by an older pacore, or by two writers at once,
or by hand, may hold one `(id, method, run)` more than once; `one_per_key` keeps the
last record that did not fail (a rerun appends), else the last one, and both the
summary and the resume see only those.

Reading, repairing and appending are the files layer's (`pacore.io.appender`): this
module says what an eval line is. Every line written says its format
(`"format": "pacore.eval/1"`); a line of a newer format is refused with one line.
`ResultsAppender` writes each record as one unbuffered append and turns a failed
write (a full disk) into a `StorageError`, the part of the line written cut off again.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pacore.errors import ConfigError
from pacore.eval.records import RunRecord
from pacore.io.appender import (
    Appender,
    LinesState,
    inspect_lines,
    json_line,
    open_append,
    rewrite_kept,
)
from pacore.io.formats import EVAL_RESULTS, FORMAT_KEY
from pacore.io.jsonl import read_jsonl

__all__ = ["open_append"]

Key = tuple[str, str, str]
"""(id, method, run) as strings: one result of an evaluation."""


class Held(NamedTuple):
    """What a resume keeps of one results line: its key and whether it failed (not the
    record: its texts would stay in memory for the whole run)."""

    key: Key
    failed: bool

    @property
    def id(self) -> str:
        """The problem's id."""
        return self.key[0]


@dataclass(frozen=True)
class ResultsState:
    """What `results.jsonl` holds, read without changing it."""

    lines: LinesState[Held] = field(default_factory=LinesState)
    """Every complete line's key and failure, and where it lies in the file."""

    @property
    def records(self) -> tuple[Held, ...]:
        """Every complete line's key and failure, in file order (duplicates included)."""
        return self.lines.records

    @property
    def torn(self) -> bool:
        """Whether the file ends with a line without its newline."""
        return self.lines.torn

    @functools.cached_property
    def done(self) -> frozenset[Key]:
        """The keys a resumed evaluation skips: those with a record that did not fail."""
        return frozenset(r.key for r in self.records if not r.failed)


def _parser(path: Path) -> Any:
    def parse(data: Any) -> RunRecord | None:
        if not isinstance(data, dict):
            return None
        EVAL_RESULTS.version_of(data.get(FORMAT_KEY), str(path))
        return RunRecord.from_dict(data)

    return parse


def inspect_results(path: Path) -> ResultsState:
    """Check that `path` is an eval results file (or absent), without changing it."""
    refuse = (
        "not an eval result line; refusing to change or append to this file (choose another --out)"
    )
    parse = _parser(path)

    def held(data: Any) -> Held | None:
        record = parse(data)
        return None if record is None else Held(record.key, record.failed)

    return ResultsState(inspect_lines(path, held, refuse=refuse))


def read_records(path: Path) -> Iterator[RunRecord]:
    """Every record of a results file; a line that is not one is a `ConfigError`."""
    parse = _parser(path)
    for number, data in read_jsonl(path):
        try:
            record = parse(data)
        except ConfigError:
            raise
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: {exc}") from None
        if record is None:
            raise ConfigError(f"{path}:{number}: not an eval result (a JSON object)")
        yield record


def prepare_resume(path: Path, state: ResultsState) -> None:
    """Cut a torn last line and drop failed records (rewritten atomically), so both
    run again. Call only once every check has passed: this is the first write."""
    if state.torn or any(r.failed for r in state.records):
        rewrite_kept(path, state.lines, lambda r: not r.failed)


def one_per_key(records: Iterable[RunRecord]) -> list[RunRecord]:
    """One record per (id, method, run): the last that did not fail, else the last."""
    chosen: dict[Key, RunRecord] = {}
    for r in records:
        previous = chosen.get(r.key)
        if previous is None or not r.failed or previous.failed:
            chosen[r.key] = r
    return list(chosen.values())


class ResultsAppender(Appender):
    """Appends one record per line (`pacore.io.appender.Appender`), marked with its
    format; a failed write is cut back and a `StorageError`."""

    def __init__(self, path: Path, opener: Any = None) -> None:
        """Open `path` to append (`opener` replaces `open_append`, for tests)."""
        super().__init__(path, opener=opener or (lambda p: open_append(p)))

    def append_run(self, record: RunRecord) -> None:
        """Write `record` as one line, all of it or a `StorageError`."""
        self.append_runs([record])

    def append_runs(self, records: Sequence[RunRecord]) -> None:
        """Write `records`, a line each, in one write: all of them or a `StorageError`
        (the file cut back to where it was)."""
        tag = EVAL_RESULTS.tag
        self.append_lines([json_line({FORMAT_KEY: tag, **r.to_dict()}) for r in records])
