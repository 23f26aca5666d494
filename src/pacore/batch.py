"""Batch files: JSONL problems in, JSONL results out, resumable.

Input records are `{"id", "question"}` or `{"id", "messages"}` (the published
sample format); any other field, such as `ground_truth`, is kept as metadata
and written back with the result. Output is one JSON object per line, appended
and flushed the moment a problem finishes, so a crash loses nothing and a rerun
skips every id already written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from pacore.core.planning import problem_key
from pacore.core.prompts import problem_slot
from pacore.errors import ConfigError, StorageError
from pacore.jsonl import cut_torn_line, has_lone_surrogate, read_jsonl, read_lines
from pacore.types import Problem, Result


def _problem_from_record(record: Any, where: str) -> Problem:
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise ConfigError(f"{where}: 'messages' must be a non-empty list of chat messages")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ConfigError(f"{where}: every message needs a 'role' and a 'content'")
            _check_content(m["content"], f"{where}: messages[{i}].content")
        try:
            problem_slot(messages)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        msgs = tuple(dict(m) for m in messages)
        meta = {k: v for k, v in record.items() if k not in ("id", "messages")}
    elif "question" in record:
        question = record["question"]
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"{where}: 'question' must be a non-empty string")
        msgs = ({"role": "user", "content": question},)
        meta = {k: v for k, v in record.items() if k not in ("id", "question")}
    else:
        raise ConfigError(f"{where}: a record needs 'question' or 'messages'")
    _check_unicode(record, where)
    raw_id = record.get("id")
    if raw_id is None:
        pid = problem_key(msgs)
    elif isinstance(raw_id, str | int) and not isinstance(raw_id, bool) and str(raw_id) != "":
        pid = str(raw_id)
    else:
        raise ConfigError(f"{where}: 'id' must be a non-empty string or an integer")
    return Problem(id=pid, messages=msgs, metadata=meta)


def _check_content(content: Any, where: str) -> None:
    """A message's content: text, or a list of parts whose text parts hold text."""
    if isinstance(content, str):
        return
    if isinstance(content, list) and all(
        isinstance(part, dict) and isinstance(part.get("text", ""), str) for part in content
    ):
        return
    raise ConfigError(
        f"{where} must be a string or a list of content parts, got {type(content).__name__}"
    )


def _check_unicode(record: dict[str, Any], where: str) -> None:
    """Every text of the record must be valid Unicode: a lone surrogate (`"\\udfff"`)
    parses as JSON but can never be written back as UTF-8."""
    for name, value in record.items():
        if has_lone_surrogate(value):
            raise ConfigError(
                f"{where}: field {name!r} holds a lone surrogate, which is not valid Unicode text"
            )


def _problems(path: Path) -> Iterator[tuple[int, Problem]]:
    for number, record in read_jsonl(path):
        yield number, _problem_from_record(record, f"{path}:{number}")


def validate_problems(path: str | Path) -> int:
    """Read the whole file once, checking every record; return the count.

    Catching a bad line 9,000 before any model call is made beats failing
    halfway. Duplicate ids are errors: results are keyed by id.
    """
    path = Path(path)
    seen: dict[str, int] = {}
    for number, problem in _problems(path):
        if problem.id in seen:
            raise ConfigError(
                f"{path}:{number}: duplicate id {problem.id!r} (first on line {seen[problem.id]})"
            )
        seen[problem.id] = number
    if not seen:
        raise ConfigError(f"{path}: no problems in the file")
    return len(seen)


def read_problems(
    path: str | Path, *, skip: set[str] | frozenset[str] = frozenset()
) -> Iterator[Problem]:
    """Stream the problems of a JSONL file, leaving out ids in `skip`."""
    for _, problem in _problems(Path(path)):
        if problem.id not in skip:
            yield problem


RESULT_FIELDS = ("id", "status", "ttc_tokens", "rounds")
"""The fields every line of a `pacore run` results file has: how one is recognised."""


@dataclass(frozen=True)
class OutputState:
    """What a results file holds, read without changing it (see `inspect_output`)."""

    keys: frozenset[tuple[str, ...]] = frozenset()
    """The key of every complete result line."""
    rerunnable: frozenset[tuple[str, ...]] = frozenset()
    """Keys whose result failed in a way a rerun may fix (not `failure: input`)."""
    failed: frozenset[tuple[str, ...]] = frozenset()
    """Keys whose result failed, for any reason."""
    torn: bool = False
    """Whether the last line lacks its newline (a write a crash interrupted)."""

    def done(self, *, retry_failed: bool) -> frozenset[tuple[str, ...]]:
        """The keys a run skips: all, or all but the rerunnable failures."""
        return self.keys - self.rerunnable if retry_failed else self.keys


def inspect_output(
    path: str | Path,
    *,
    key: tuple[str, ...] = ("id",),
    required: tuple[str, ...] = RESULT_FIELDS,
    input_path: str | Path | None = None,
) -> OutputState:
    """Check that `path` is a results file pacore may append to, without changing it.

    It must be absent, or a regular, writable file (never a device such as /dev/full,
    never the input file under another name) whose every complete line is a JSON
    object with the `required` fields. A last line without its newline is a torn
    write, allowed only where it could be one of ours. Anything else is a
    `ConfigError` of one line: pacore never appends to a file it does not understand.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        return OutputState()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path}: is a directory, not an output file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: not a regular file; results go to a file pacore can append to")
    if input_path is not None and _same_file(info, Path(input_path)):
        raise ConfigError(f"{path}: is the input file under another name; choose another output")
    if not os.access(path, os.W_OK):
        raise ConfigError(f"{path}: not writable (permission denied)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    return _state(path, data, key, required)


def _same_file(info: os.stat_result, other: Path) -> bool:
    try:
        theirs = other.stat()
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == (theirs.st_dev, theirs.st_ino)


def _state(path: Path, data: bytes, key: tuple[str, ...], required: tuple[str, ...]) -> OutputState:
    torn = bool(data) and not data.endswith(b"\n")
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" after a final newline, else the torn line
    refuse = f"{path}:{{}}: not a pacore result line; refusing to append to this file"
    keys, rerunnable, failed = set(), set(), set()
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            if not isinstance(record, dict) or not all(f in record for f in required):
                raise ValueError
            k = tuple(str(record[f]) for f in key)
        except (ValueError, TypeError):
            raise ConfigError(refuse.format(number)) from None
        keys.add(k)
        if record.get("status") == "failed":
            failed.add(k)
            if record.get("failure") != "input":
                rerunnable.add(k)
    if torn and not tail.lstrip().startswith(b'{"id":'):  # not the start of one of ours
        raise ConfigError(refuse.format(len(lines) + 1))
    return OutputState(frozenset(keys), frozenset(rerunnable), frozenset(failed), torn)


def prepare_output(
    path: str | Path,
    *,
    key: tuple[str, ...] = ("id",),
    required: tuple[str, ...] = RESULT_FIELDS,
    retry_failed: bool = False,
) -> OutputState:
    """Make `path` ready to append to: cut a torn last line and, with `retry_failed`,
    drop the rerunnable failures (rewritten atomically). Call it only once every check
    has passed and the output's lock is held; the state it returns is what was kept."""
    path = Path(path)
    state = inspect_output(path, key=key, required=required)
    try:
        if state.torn:
            cut_torn_line(path)
        if retry_failed and state.rerunnable:
            _drop_lines(path, key, state.rerunnable)
            state = replace(
                state,
                keys=state.keys - state.rerunnable,
                failed=state.failed - state.rerunnable,
                rerunnable=frozenset(),
            )
    except OSError as exc:
        raise ConfigError(f"{path}: cannot repair ({exc.strerror})") from None
    return replace(state, torn=False)


def _drop_lines(path: Path, key: tuple[str, ...], drop: frozenset[tuple[str, ...]]) -> None:
    kept = []
    for _, line in read_lines(path):
        record = json.loads(line)
        if tuple(str(record[f]) for f in key) not in drop:
            kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes("".join(kept).encode("utf-8"))
    shutil.copymode(path, tmp)
    os.replace(tmp, path)


def completed_ids(path: str | Path, *, retry_failed: bool = False) -> set[str]:
    """Ids already in a results file, made ready to append to (see `prepare_output`)."""
    state = prepare_output(path, retry_failed=retry_failed)
    return {k[0] for k in state.keys}


def completed_keys(
    path: str | Path, fields: tuple[str, ...], *, retry_failed: bool = False
) -> set[tuple[str, ...]]:
    """The `fields` of every record of a results file, made ready to append to (a torn
    line cut; with `retry_failed`, rerunnable failures dropped). Every line must have
    the `fields` and a `status`."""
    state = prepare_output(
        path, key=fields, required=(*fields, "status"), retry_failed=retry_failed
    )
    return set(state.keys)


def json_line(record: Any) -> bytes:
    """One JSON line, UTF-8; text that is not valid Unicode (a lone surrogate a server
    sent) is written escaped rather than failing the write."""
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")


class ResultWriter:
    """Appends one JSON line per result, flushed at once; a failed write is undone.

    A write that fails part way (a full disk) is cut back to the last whole line, so
    the file stays a valid, resumable results file, and raises `StorageError`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        include_text: bool = True,
        opener: Callable[[Path], IO[bytes]] | None = None,
    ) -> None:
        """Open `path` for appending (folders created); `include_text` keeps full texts.

        `opener` opens the file (tests pass one that fails like a full disk).
        """
        self.path = Path(path)
        self.include_text = include_text
        self.written = 0
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[bytes] = (opener or _append)(self.path)
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot write ({exc.strerror})") from None

    def write(self, result: Result) -> None:
        """Append one result's line and flush it."""
        self.write_record(result.to_dict(include_text=self.include_text))

    def write_record(self, record: Any) -> None:
        """Append one JSON record as a line and flush it; undo a part-written line."""
        data = json_line(record)
        start = self._fh.tell()
        try:
            self._fh.write(data)
            self._fh.flush()
        except OSError as exc:
            self._undo(start)
            raise StorageError(
                f"{self.path}: cannot write ({exc.strerror or exc}); the {self.written} "
                "results written before are safe: free the space (or fix the file) and rerun "
                "the same command to resume"
            ) from None
        self.written += 1

    def _undo(self, start: int) -> None:
        with contextlib.suppress(OSError):
            self._fh.truncate(start)
        with contextlib.suppress(OSError):
            os.truncate(self.path, start)

    def close(self) -> None:
        """Close the file (a close that cannot flush is already reported by `write`)."""
        with contextlib.suppress(OSError):
            self._fh.close()

    def __enter__(self) -> ResultWriter:
        """The writer itself, closed on leaving the block."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the file."""
        self.close()


def _append(path: Path) -> IO[bytes]:
    return path.open("ab")
