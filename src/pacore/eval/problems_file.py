"""`problems.jsonl` of an evaluation folder: what was evaluated, so the folder explains itself.

One line per problem (`"format": "pacore.eval-problems/1"`): its id, the dataset it came
from, its `problem_hash` (the one `fingerprint.json` holds), the messages sent
(`--system` included), the gold answer, and for code a summary of the tests with the
entry point (the tests themselves can be megabytes; they stay the dataset's).
`pacore view OUT` shows the questions and golds from it, with no `--dataset`.

`store_problems` writes it once per `pacore eval` start (and `--report-only`), once the
fingerprint has been checked and before anything else is written, as a whole file
(`pacore.io.atomic`): the problems stored before whose hash the fingerprint still
holds, and every problem evaluated now. So a rerun with a larger
`--limit` extends it, a resume keeps it, and a folder started over (its results moved
away) starts it over with its fingerprint. Nothing is written when nothing changed.

A file pacore cannot read as stored problems (a foreign line, another format, a newer
version) is refused at the start with one line and left as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pacore.errors import ConfigError
from pacore.eval.datasets import Sample
from pacore.eval.fingerprint import Fingerprint, problem_hash
from pacore.io.appender import json_line
from pacore.io.atomic import atomic_write
from pacore.io.formats import EVAL_PROBLEMS, FORMAT_KEY
from pacore.io.jsonl import read_jsonl
from pacore.types import Message

PROBLEMS = "problems.jsonl"
TESTS_CHARS = 4000
"""A code problem's tests are kept up to this many characters (a summary, not the tests)."""
CASE_CHARS = 200
"""The first stdin/stdout case's input and output are kept up to this many characters."""


@dataclass(frozen=True)
class StoredProblem:
    """One problem as an eval folder keeps it."""

    id: str
    dataset: str
    """The dataset's name (its file's stem), as the report gives it."""
    hash: str
    """`fingerprint.problem_hash`: the messages sent and what they are graded against."""
    messages: tuple[Message, ...]
    answer: str | None = None
    tests: str | None = None
    """Code: the tests as the view shows them (`tests_summary`); None for math."""
    entry_point: str | None = None

    @classmethod
    def of(cls, sample: Sample, dataset: str, digest: str | None = None) -> StoredProblem:
        """The stored form of `sample`; `digest` is its `problem_hash` when already known."""
        return cls(
            id=sample.id,
            dataset=dataset,
            hash=digest or problem_hash(sample),
            messages=tuple(sample.messages),
            answer=sample.answer,
            tests=tests_summary(sample.tests),
            entry_point=sample.entry_point,
        )

    @property
    def question(self) -> str:
        """The text of the last message (a content-parts message: its text parts)."""
        return message_text(self.messages[-1]) if self.messages else ""

    @property
    def gold(self) -> str | None:
        """What an answer is graded against, in one short line: the answer, else the tests."""
        if self.answer is not None:
            return self.answer
        if self.tests is None:
            return None
        return f"tests of {self.entry_point}" if self.entry_point else self.tests.split("\n")[0]

    def matches(self, sample: Sample) -> bool:
        """Whether `sample` is this problem: the same hash, as sent (the system message
        `--system` added to the stored messages is added to the sample's too)."""
        if problem_hash(sample) == self.hash:
            return True
        system = self.messages[0] if self.messages else None
        if system is None or system.get("role") != "system":
            return False
        if any(m.get("role") == "system" for m in sample.messages):
            return False
        return problem_hash(replace(sample, messages=(system, *sample.messages))) == self.hash

    def to_dict(self) -> dict[str, Any]:
        """The line `problems.jsonl` holds (the format tag first)."""
        line: dict[str, Any] = {
            FORMAT_KEY: EVAL_PROBLEMS.tag,
            "id": self.id,
            "dataset": self.dataset,
            "hash": self.hash,
            "messages": [dict(m) for m in self.messages],
            "answer": self.answer,
        }
        if self.tests is not None:
            line["tests"] = self.tests
            line["entry_point"] = self.entry_point
        return line

    @classmethod
    def from_dict(cls, data: Any, where: str) -> StoredProblem:
        """A line read back; `ValueError` saying why when it is not one (another
        format's included), `ConfigError` when a newer pacore wrote it (`where` names it)."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        tag = data.get(FORMAT_KEY)
        if not EVAL_PROBLEMS.marks(tag):
            raise ValueError(f"format {tag!r} is not {EVAL_PROBLEMS.tag}" if tag else "no tag")
        EVAL_PROBLEMS.version_of(tag, where)  # a newer one: upgrade
        pid, dataset, digest = (_text(data, k) for k in ("id", "dataset", "hash"))
        if pid is None or dataset is None or digest is None:
            raise ValueError("no id, dataset or hash")
        messages = data.get("messages")
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages
        ):
            raise ValueError("no list of messages")
        for name in ("answer", "tests", "entry_point"):
            if data.get(name) is not None and _text(data, name) is None:
                raise ValueError(f"{name} is not text")
        return cls(
            pid,
            dataset,
            digest,
            tuple(messages),
            answer=_text(data, "answer"),
            tests=_text(data, "tests"),
            entry_point=_text(data, "entry_point"),
        )


def _text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    return value if isinstance(value, str) else None


def message_text(message: Mapping[str, Any]) -> str:
    """A chat message's text: its content, or the text of its content parts."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def tests_summary(tests: Any) -> str | None:
    """Code tests as the view shows them: a `check(candidate)` source cut at
    `TESTS_CHARS`, or the number of stdin/stdout cases with the first one; None for none."""
    if tests is None:
        return None
    if isinstance(tests, str):
        return _cut(tests, TESTS_CHARS)
    cases = list(tests) if isinstance(tests, list | tuple) else []
    text = f"{len(cases)} input/output case(s)"
    first = cases[0] if cases else None
    if isinstance(first, dict):
        given = _cut(str(first.get("input", "")), CASE_CHARS)
        wanted = _cut(str(first.get("output", "")), CASE_CHARS)
        text += f"\nthe first:\ninput:\n{given}\noutput:\n{wanted}"
    return text


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:chars] + " …"


def read_problems(out_dir: Path) -> dict[str, StoredProblem]:
    """The problems an eval folder stores, by id (empty when it stores none); a file
    that is not stored problems is a one-line `ConfigError`."""
    path = out_dir / PROBLEMS
    if not path.exists():
        return {}
    again = f"move {path} away and rerun to store the problems again"
    try:
        lines = list(read_jsonl(path))
    except ConfigError as exc:
        raise ConfigError(f"{exc}; {again}") from None
    found: dict[str, StoredProblem] = {}
    for number, data in lines:
        where = f"{path}:{number}"
        try:
            problem = StoredProblem.from_dict(data, where)
        except ValueError as exc:
            raise ConfigError(f"{where}: not a stored problem ({exc}); {again}") from None
        found[problem.id] = problem
    return found


def store_problems(
    out_dir: Path,
    samples: Sequence[Sample],
    fingerprint: Fingerprint,
    dataset: str,
    stored: Mapping[str, StoredProblem] | None = None,
) -> None:
    """Write `problems.jsonl`: the problems stored before that `fingerprint` still holds
    (by hash), then `samples` (see the module docstring); nothing when nothing changed.
    `stored` is what the file holds, when the caller has read it already."""
    if stored is None:
        stored = read_problems(out_dir)
    kept = {pid: p for pid, p in stored.items() if fingerprint.problems.get(pid) == p.hash}
    now = {s.id: StoredProblem.of(s, dataset, fingerprint.problems.get(s.id)) for s in samples}
    merged = {**kept, **now}
    if merged == stored:
        return
    atomic_write(out_dir / PROBLEMS, _lines(merged.values()))


def _lines(problems: Iterable[StoredProblem]) -> bytes:
    return b"".join(json_line(p.to_dict()) for p in problems)
