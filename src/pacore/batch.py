"""Batch files: problems in, resumable results out (`pacore run --input/--output`).

Input records are `{"id", "question"}` or `{"id", "messages"}` (the published
sample format), parsed by `pacore.io.problems` as every command parses them; any
other field, such as `ground_truth`, is kept as metadata and written back with the
result. The input is read through `pacore.io.source`, so a pipe works too.

Output is one JSON object per line (`pacore.io.appender`), written the moment a
problem finishes, so a crash loses nothing and a rerun skips every id already
written. Every line says its format (`"format": "pacore.run/1"`) and carries a
fingerprint: a hash of the problem it answers and one of the model and the settings
that decide a result. Resuming against another input under the same ids, or with
other settings, is refused with one line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pacore.core.fingerprint import digest
from pacore.core.planning import problem_key
from pacore.core.prompts import problem_slot
from pacore.errors import ConfigError
from pacore.io.appender import Appender, LinesState, inspect_lines, json_line, rewrite_kept
from pacore.io.formats import FORMAT_KEY, RUN_RESULTS
from pacore.io.guard import check_output
from pacore.io.problems import CONVERSATION_FIELDS, conversation, expect_object, metadata, record_id
from pacore.io.records import read_records
from pacore.io.source import Source, open_input
from pacore.types import Problem, Result


def problem_from_record(record: Any, where: str) -> Problem:
    """A `Problem` from one input record (the rules of `pacore.io.problems`); its id
    defaults to a hash of its conversation."""
    record = expect_object(record, where)
    messages, _ = conversation(record, where)
    try:
        problem_slot(messages)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    pid = record_id(record, where, lambda: problem_key(messages))
    used = ("id", *CONVERSATION_FIELDS)
    return Problem(id=pid, messages=messages, metadata=metadata(record, used, where))


def _problems(source: Path | Source) -> Iterator[tuple[str, Problem]]:
    for where, record in read_records(source, what="problems"):
        yield where, problem_from_record(record, where)


def problem_hash(problem: Problem) -> str:
    """What decides a problem's result: its messages as sent."""
    return digest(list(problem.messages))


def check_problems(source: Path | Source) -> dict[str, str]:
    """Read the whole input once, checking every record; each id's `problem_hash`, in
    file order.

    Catching a bad line 9,000 before any model call is made beats failing
    halfway. Duplicate ids are errors: results are keyed by id.
    """
    seen: dict[str, str] = {}
    hashes: dict[str, str] = {}
    for where, problem in _problems(source):
        if problem.id in seen:
            raise ConfigError(f"{where}: duplicate id {problem.id!r} (first at {seen[problem.id]})")
        seen[problem.id] = where
        hashes[problem.id] = problem_hash(problem)
    if not hashes:
        raise ConfigError(f"{source}: no problems in the file")
    return hashes


def validate_problems(path: str | Path | Source) -> int:
    """`check_problems` of a file; the number of problems."""
    return len(check_problems(open_input(path, what="problems")))


def read_problems(
    path: str | Path | Source, *, skip: set[str] | frozenset[str] = frozenset()
) -> Iterator[Problem]:
    """Stream the problems of an input, leaving out ids in `skip`."""
    source = path if isinstance(path, Source) else open_input(path, what="problems")
    for _, problem in _problems(source):
        if problem.id not in skip:
            yield problem


RESULT_FIELDS = ("id", "status", "ttc_tokens", "rounds")
"""The fields every line of a `pacore run` results file has: how one is recognised."""


@dataclass(frozen=True)
class Line:
    """What resuming needs of one result line."""

    key: tuple[str, ...]
    status: Any
    failure: Any
    fingerprint: Mapping[str, Any] | None
    """`{"problem", "settings"}` hashes; None on a line written before pacore had them."""
    spent: Spent
    """What the line's attempts spent (its `ttc_tokens` and `requests`, with those of the
    attempts it replaced): kept when `--retry-failed` replaces a failed line."""


@dataclass(frozen=True)
class Spent:
    """What failed attempts at a problem spent before a rerun replaced them."""

    attempts: int = 0
    ttc_tokens: int = 0
    requests: int = 0

    def __add__(self, other: Spent) -> Spent:
        """Both together."""
        return Spent(
            self.attempts + other.attempts,
            self.ttc_tokens + other.ttc_tokens,
            self.requests + other.requests,
        )

    def to_dict(self) -> dict[str, int]:
        """As a result line's `earlier_attempts` says it."""
        return {"attempts": self.attempts, "ttc_tokens": self.ttc_tokens, "requests": self.requests}


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
    lines: LinesState[Line] = field(default_factory=LinesState)
    earlier: Mapping[tuple[str, ...], Spent] = field(default_factory=dict)
    """What the failed lines `prepare_output` dropped for a rerun had spent, by key."""

    def done(self, *, retry_failed: bool) -> frozenset[tuple[str, ...]]:
        """The keys a run skips: all, or all but the rerunnable failures."""
        return self.keys - self.rerunnable if retry_failed else self.keys

    def check_fingerprints(self, path: Path, problems: Mapping[str, str], settings: str) -> None:
        """Refuse to resume when a line was computed on another problem under its id, or
        with another model or other result-changing settings."""
        for line in self.lines.records:
            fp = line.fingerprint
            if fp is None:
                continue
            pid = line.key[0]
            if pid in problems and fp.get("problem") != problems[pid]:
                raise ConfigError(
                    f"{path} holds a result for id {pid!r} computed on another problem "
                    "(a different input under the same ids); use another --output, or move "
                    f"{path} away to start over"
                )
            if fp.get("settings") != settings:
                raise ConfigError(
                    f"{path} holds results computed with another model or other "
                    "result-changing settings (sampling, widths, template, system, "
                    f"compaction, failure policy); use another --output, or move {path} "
                    "away to start over"
                )


def _line(path: Path, key: tuple[str, ...], required: tuple[str, ...]) -> Any:
    def parse(record: Any) -> Line | None:
        if not isinstance(record, dict) or not all(f in record for f in required):
            return None
        RUN_RESULTS.version_of(record.get(FORMAT_KEY), str(path))
        fp = record.get("fingerprint")
        return Line(
            tuple(str(record[f]) for f in key),
            record.get("status"),
            record.get("failure"),
            fp if isinstance(fp, dict) else None,
            _spent(record),
        )

    return parse


def _spent(record: dict[str, Any]) -> Spent:
    """What a line's attempt spent, and the earlier attempts it carries."""
    own = Spent(1, _count(record.get("ttc_tokens")), _count(record.get("requests")))
    earlier = record.get("earlier_attempts")
    if not isinstance(earlier, dict):
        return own
    carried = Spent(*(_count(earlier.get(f)) for f in ("attempts", "ttc_tokens", "requests")))
    return own + carried


def _count(value: Any) -> int:
    """A count a line holds; 0 for anything else."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def inspect_output(
    path: str | Path,
    *,
    key: tuple[str, ...] = ("id",),
    required: tuple[str, ...] = RESULT_FIELDS,
    input_path: str | Path | Source | None = None,
) -> OutputState:
    """Check that `path` is a results file pacore may append to, without changing it.

    It must pass the output guard (`pacore.io.guard`: a regular, writable file, never
    a device such as /dev/full, a FIFO, or the input under another name) and every
    complete line must be a result (a JSON object with the `required` fields). A last
    line without its newline is a torn write, allowed only where it could be one of
    ours. Anything else is a `ConfigError` of one line.
    """
    path = Path(path)
    check_output(path, inputs=[] if input_path is None else [input_path], what="output")
    refuse = "not a pacore result line; refusing to append to this file"
    lines = inspect_lines(path, _line(path, key, required), refuse=refuse)
    keys = {line.key for line in lines.records}
    failed = {line.key for line in lines.records if line.status == "failed"}
    rerunnable = {
        line.key for line in lines.records if line.status == "failed" and line.failure != "input"
    }
    return OutputState(frozenset(keys), frozenset(rerunnable), frozenset(failed), lines.torn, lines)


def prepare_output(
    path: str | Path,
    *,
    key: tuple[str, ...] = ("id",),
    required: tuple[str, ...] = RESULT_FIELDS,
    retry_failed: bool = False,
    state: OutputState | None = None,
) -> OutputState:
    """Make `path` ready to append to: cut a torn last line and, with `retry_failed`,
    drop the rerunnable failures (rewritten atomically, mode kept). Call it only once
    every check has passed and the output's lock is held; the state it returns is what
    was kept."""
    path = Path(path)
    if state is None:
        state = inspect_output(path, key=key, required=required)
    drop = state.rerunnable if retry_failed else frozenset()
    if not state.torn and not drop:
        return state
    rewrite_kept(path, state.lines, lambda line: line.key not in drop)
    earlier: dict[tuple[str, ...], Spent] = {}
    for line in state.lines.records:
        if line.key in drop:
            earlier[line.key] = earlier.get(line.key, Spent()) + line.spent
    return replace(
        state,
        keys=state.keys - drop,
        failed=state.failed - drop,
        rerunnable=state.rerunnable - drop,
        torn=False,
        earlier=earlier,
    )


def completed_ids(path: str | Path, *, retry_failed: bool = False) -> set[str]:
    """Ids already in a results file, made ready to append to (see `prepare_output`)."""
    state = prepare_output(path, retry_failed=retry_failed)
    return {k[0] for k in state.keys}


class ResultWriter(Appender):
    """Appends one line per result (`pacore.io.appender.Appender`), each with its format
    and fingerprint; a failed write is undone and a `StorageError`."""

    def __init__(
        self,
        path: str | Path,
        *,
        include_text: bool = True,
        problems: Mapping[str, str] | None = None,
        settings: str | None = None,
        earlier: Mapping[str, Spent] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open `path` for appending; `include_text` keeps full texts; `problems` (id:
        problem hash) and `settings` (a hash) make each line's fingerprint; `earlier`
        (id: spend) is what failed attempts the rerun replaces had spent."""
        super().__init__(path, **kwargs)
        self.include_text = include_text
        self.problems = problems or {}
        self.settings = settings
        self.earlier = earlier or {}

    def write(self, result: Result) -> None:
        """Append one result's line."""
        record: dict[str, Any] = {FORMAT_KEY: RUN_RESULTS.tag}
        record.update(result.to_dict(include_text=self.include_text))
        record["fingerprint"] = {
            "problem": self.problems.get(result.id),
            "settings": self.settings,
        }
        earlier = self.earlier.get(result.id)
        if earlier is not None:  # a rerun of failed attempts: what they spent stays known
            record["earlier_attempts"] = earlier.to_dict()
        self.append(json_line(record))
