"""Benchmark datasets: JSONL, JSON and Parquet files, or Hugging Face datasets by name.

Every record becomes a `Sample`: an id, the conversation to send, the gold answer
(math) or the tests (code). Field names are found automatically for the shared
benchmark files and the published PaCoRe formats, and can be mapped explicitly:

- question: `question`, `problem`, `prompt`, or `messages` / `conversation` (chat)
- answer:   `answer`, `ground_truth.answer`, `ground_truth` (a string), `final_answer`
- id:       `id`, `task_id`, `problem_id`, else the record's position
- code:     `tests` (a `check(candidate)` string or a list of stdin/stdout cases),
            `entry_point`, `time_limit_s`

A malformed record names the file and line. A dataset without answers loads; its
samples are graded as ungradable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pacore.errors import ConfigError
from pacore.graders.base import GradeInput
from pacore.io.formats import FORMAT_KEY
from pacore.io.jsonl import check_unicode
from pacore.io.problems import (
    CONVERSATION_FIELDS,
    conversation,
    expect_object,
    get_path,
    record_id,
)
from pacore.io.records import read_records
from pacore.io.source import Source, open_input
from pacore.types import Message

ANSWER_FIELDS = ("answer", "ground_truth.answer", "ground_truth", "final_answer")


@dataclass(frozen=True)
class Sample:
    """One benchmark item."""

    id: str
    messages: tuple[Message, ...]
    answer: str | None = None
    """The gold answer, or None when the dataset has none (ungraded)."""
    tests: Any = None
    """Code tests: a `check(candidate)` source string or a list of {input, output} cases."""
    entry_point: str | None = None
    prompt: str | None = None
    """The raw question text (for code: the function stub the completion builds on)."""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def is_code(self) -> bool:
        """Whether the sample is graded by running tests."""
        return self.tests is not None

    @property
    def question(self) -> str:
        """The text of the last message (empty when it is not text)."""
        last = self.messages[-1].get("content")
        return last if isinstance(last, str) else ""

    def grade_input(self) -> GradeInput:
        """What a grader needs besides the prediction: the gold answer, or the tests."""
        limit = self.metadata.get("time_limit_s")
        return GradeInput(
            answer=self.answer,
            tests=self.tests,
            entry_point=self.entry_point,
            prompt=self.prompt,
            time_limit_s=float(limit) if isinstance(limit, int | float) else None,
        )


@dataclass(frozen=True)
class FieldMap:
    """Which record fields hold the question, the answer and the id (dots reach into dicts)."""

    question: str | None = None
    answer: str | None = None
    id: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> FieldMap:
        """From `question=problem,answer=solution.final,id=uid`."""
        if not text:
            return cls()
        values: dict[str, str] = {}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or key not in ("question", "answer", "id") or not value:
                raise ConfigError(
                    f"bad field mapping {part!r}; use e.g. question=problem,answer=solution,id=uid"
                )
            if key in values:
                raise ConfigError(f"bad field mapping {text!r}: {key} is mapped twice")
            values[key] = value
        return cls(**values)


def _answer_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    if isinstance(value, list) and value and all(isinstance(v, int | float | str) for v in value):
        return ", ".join(str(v) for v in value)
    return None


def _not_an_answer(value: Any) -> bool:
    """Whether a gold field holds something no grader can read as an answer (an object,
    a list of objects) rather than nothing (absent, null, blank)."""
    if value is None or (isinstance(value, str | list) and not value):
        return False
    return not isinstance(value, str)  # a blank string is no answer; anything else is


def _kind(value: Any) -> str:
    """A JSON value's kind, as an error line names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _check_cases(tests: list[Any], where: str) -> None:
    """A stdin/stdout case is an object with an `output`, a text or a number (graded as
    its text), and an `input` likewise or none (a program that reads nothing). A case
    that is not an object was skipped, and a null or a list for an output was compared
    as its text: every program failed it."""
    for i, case in enumerate(tests):
        if not isinstance(case, dict):
            raise ConfigError(f"{where}: tests[{i}] is {_kind(case)}, not an input/output case")
        for key in ("input", "output"):
            value = case.get(key)
            if type(value) in (str, int, float) or (key == "input" and value is None):
                continue
            raise ConfigError(
                f"{where}: tests[{i}].{key} must be a text or a number, not "
                f"{_kind(value) if key in case else 'missing'}"
            )


def sample_from_record(
    record: Any, index: int, where: str, fields: FieldMap = FieldMap()
) -> Sample:
    """A `Sample` from one record; `where` names the file and line for errors."""
    record = expect_object(record, where)
    check_unicode(where, record)
    messages, prompt = conversation(record, where, question_field=fields.question)

    answer_names = (fields.answer,) if fields.answer else ANSWER_FIELDS
    answer = None
    for name in answer_names:
        value = get_path(record, name)
        answer = _answer_text(value)
        if answer is not None:
            break
        if name == answer_names[0] and _not_an_answer(value):  # ungraded in silence before
            raise ConfigError(
                f"{where}: {name!r} holds {_kind(value)}, not an answer (a string, a number "
                "or a list of them)"
            )

    sample_id = record_id(record, where, str(index), id_field=fields.id)

    tests = record.get("tests")
    if tests is not None and not isinstance(tests, str | list):
        raise ConfigError(f"{where}: 'tests' must be a string or a list of cases")
    if isinstance(tests, list):
        _check_cases(tests, where)
    used = ("id", "tests", "entry_point", *CONVERSATION_FIELDS, "answer", FORMAT_KEY)
    metadata = {k: v for k, v in record.items() if k not in used}
    entry = record.get("entry_point")
    return Sample(
        id=sample_id,
        messages=messages,
        answer=answer,
        tests=tests,
        entry_point=entry if isinstance(entry, str) else None,
        prompt=prompt,
        metadata=metadata,
    )


def _hub_records(name: str, split: str | None) -> Iterator[tuple[str, Any]]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"{name!r} is not a file; loading Hugging Face datasets needs the datasets "
            "package: pip install 'pacore[hub]'"
        ) from None
    repo, _, config = name.partition(":")
    try:
        ds = datasets.load_dataset(repo, config or None, split=split or "test")
    except Exception as exc:  # offline, unknown name, bad split
        raise ConfigError(f"cannot load dataset {name!r} from the hub: {exc}") from None
    for i, record in enumerate(ds):
        yield f"{name}[{i}]", record


def _records(source: str | Path | Source, split: str | None) -> Iterator[tuple[str, Any]]:
    """(where, record) pairs from a file by its suffix, or from the hub."""
    if isinstance(source, Source) or os.path.exists(source):
        if split is not None:  # a file has no splits: the option would be ignored
            raise ConfigError(f"--split {split} is for a hub dataset (hf:org/name), not {source}")
        return read_records(open_input(source, what="dataset"), what="dataset")
    if str(source).startswith(("hf:", "hf://")):
        return _hub_records(str(source).split(":", 1)[1].lstrip("/"), split)
    raise ConfigError(f"{source}: no such dataset file (a hub dataset is written hf:org/name)")


def load_dataset(
    source: str | Path,
    *,
    fields: FieldMap = FieldMap(),
    split: str | None = None,
    limit: int | None = None,
) -> list[Sample]:
    """Every sample of a file (`.jsonl`, `.json`, `.parquet`) or a hub dataset name.

    Duplicate ids are errors: results are keyed by id.
    """
    path = Path(source)
    records = _records(source, split)
    samples: list[Sample] = []
    seen: dict[str, str] = {}
    try:
        for index, (where, record) in enumerate(records):
            sample = sample_from_record(record, index, where, fields)
            if sample.id in seen:
                raise ConfigError(
                    f"{where}: duplicate id {sample.id!r} (first at {seen[sample.id]})"
                )
            seen[sample.id] = where
            samples.append(sample)
            if limit is not None and len(samples) >= limit:
                break
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    if not samples:
        raise ConfigError(f"{source}: the dataset is empty")
    return samples


def has_answers(samples: Sequence[Sample]) -> bool:
    """Whether any sample can be graded (an answer or tests)."""
    return any(s.answer is not None or s.tests is not None for s in samples)
