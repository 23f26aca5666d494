"""Batch files: JSONL problems in, JSONL results out, resumable.

Input records are `{"id", "question"}` or `{"id", "messages"}` (the published
sample format); any other field, such as `ground_truth`, is kept as metadata
and written back with the result. Output is one JSON object per line, appended
and flushed the moment a problem finishes, so a crash loses nothing and a rerun
skips every id already written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pacore.core.planning import problem_key
from pacore.core.prompts import problem_slot
from pacore.errors import ConfigError
from pacore.jsonl import cut_torn_line, read_jsonl, read_lines
from pacore.types import Problem, Result


def _problem_from_record(record: Any, where: str) -> Problem:
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise ConfigError(f"{where}: 'messages' must be a non-empty list of chat messages")
        for m in messages:
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ConfigError(f"{where}: every message needs a 'role' and a 'content'")
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
    raw_id = record.get("id")
    if raw_id is None:
        pid = problem_key(msgs)
    elif isinstance(raw_id, str | int) and not isinstance(raw_id, bool) and str(raw_id) != "":
        pid = str(raw_id)
    else:
        raise ConfigError(f"{where}: 'id' must be a non-empty string or an integer")
    return Problem(id=pid, messages=msgs, metadata=meta)


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


def completed_ids(path: str | Path, *, retry_failed: bool = False) -> set[str]:
    """Ids already in an output file, repairing a torn last line from a crash.

    A last line without its newline is an interrupted write: it is cut off so
    that problem runs again. With `retry_failed`, records whose status is
    `failed` are removed from the file (rewritten atomically) so they run again,
    except those whose input can never fit the model's context (`failure: input`).
    """
    return {key[0] for key in completed_keys(path, ("id",), retry_failed=retry_failed)}


def completed_keys(
    path: str | Path, fields: tuple[str, ...], *, retry_failed: bool = False
) -> set[tuple[str, ...]]:
    """The `fields` of every record in a JSONL output file, as string tuples (see
    `completed_ids`). A line that is not such a record is an error: we never
    append to a file we do not understand."""
    path = Path(path)
    if not path.exists():
        return set()
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not an output file")
    cut_torn_line(path)
    done: set[tuple[str, ...]] = set()
    kept: list[str] = []
    dropped = 0
    for number, line in read_lines(path):
        try:
            record = json.loads(line)
            key = tuple(str(record[f]) for f in fields)
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{path}:{number}: not a pacore result line; refusing to append to this file"
            ) from None
        if retry_failed and record.get("status") == "failed" and record.get("failure") != "input":
            dropped += 1
            continue
        done.add(key)
        kept.append(line)
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes("".join(kept).encode("utf-8"))
        os.replace(tmp, path)
    return done


class ResultWriter:
    """Appends one JSON line per result and flushes it at once."""

    def __init__(self, path: str | Path, *, include_text: bool = True) -> None:
        """Open `path` for appending (folders created); `include_text` keeps full texts."""
        self.path = Path(path)
        self.include_text = include_text
        self.written = 0
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[str] = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot write ({exc.strerror})") from None

    def write(self, result: Result) -> None:
        """Append one result's line and flush it."""
        line = json.dumps(result.to_dict(include_text=self.include_text), ensure_ascii=False)
        self._fh.write(line + "\n")
        self._fh.flush()
        self.written += 1

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def __enter__(self) -> ResultWriter:
        """The writer itself, closed on leaving the block."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the file."""
        self.close()
