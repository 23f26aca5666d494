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

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from pacore.errors import ConfigError
from pacore.graders.base import GradeInput
from pacore.io.jsonl import check_unicode, read_jsonl
from pacore.types import Message

QUESTION_FIELDS = ("question", "problem", "prompt")
CHAT_FIELDS = ("messages", "conversation")
ANSWER_FIELDS = ("answer", "ground_truth.answer", "ground_truth", "final_answer")
ID_FIELDS = ("id", "task_id", "problem_id")


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
            values[key] = value
        return cls(**values)


def _get(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


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


def _conversation(
    record: Mapping[str, Any], where: str, fields: FieldMap
) -> tuple[tuple[Message, ...], str | None]:
    """The messages to send, and the raw question text when the record has one."""
    messages: tuple[Message, ...]
    prompt: str | None = None
    chat = None if fields.question else next((f for f in CHAT_FIELDS if f in record), None)
    if chat is not None:
        raw = record[chat]
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{where}: '{chat}' must be a non-empty list of messages")
        for m in raw:
            if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
                raise ConfigError(f"{where}: every message in '{chat}' needs a role and content")
        messages = tuple(dict(m) for m in raw)
        if not any(m["role"] in ("user", "tool") for m in messages):
            raise ConfigError(f"{where}: '{chat}' has no user message")
    else:
        names = (fields.question,) if fields.question else QUESTION_FIELDS
        name = next((n for n in names if _get(record, n) is not None), None)
        if name is None:
            wanted = fields.question or "question, problem, prompt or messages"
            raise ConfigError(f"{where}: no question field (looked for {wanted})")
        text = _get(record, name)
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{where}: '{name}' must be a non-empty string")
        prompt = text
        messages = ({"role": "user", "content": text},)
    return messages, prompt


def sample_from_record(
    record: Any, index: int, where: str, fields: FieldMap = FieldMap()
) -> Sample:
    """A `Sample` from one record; `where` names the file and line for errors."""
    if not isinstance(record, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(record).__name__}")
    check_unicode(where, record)
    messages, prompt = _conversation(record, where, fields)

    answer_names = (fields.answer,) if fields.answer else ANSWER_FIELDS
    answer = None
    for name in answer_names:
        answer = _answer_text(_get(record, name))
        if answer is not None:
            break

    id_names = (fields.id,) if fields.id else ID_FIELDS
    raw_id = next((_get(record, n) for n in id_names if _get(record, n) is not None), None)
    if raw_id is None:
        sample_id = str(index)
    elif isinstance(raw_id, str | int) and not isinstance(raw_id, bool) and str(raw_id):
        sample_id = str(raw_id)
    else:
        raise ConfigError(f"{where}: the id must be a non-empty string or an integer")

    tests = record.get("tests")
    if tests is not None and not isinstance(tests, str | list):
        raise ConfigError(f"{where}: 'tests' must be a string or a list of cases")
    used = {"id", "tests", "entry_point", *QUESTION_FIELDS, *CHAT_FIELDS, "answer"}
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


def _jsonl_records(path: Path) -> Iterator[tuple[str, Any]]:
    for number, record in read_jsonl(path):
        yield f"{path}:{number}", record


JSON_CHUNK = 1 << 20
"""Characters read at a time from a JSON list (more while one record is longer)."""


def _json_records(path: Path, chunk: int = JSON_CHUNK) -> Iterator[tuple[str, Any]]:
    """The records of a JSON file: a list is read a record at a time (a released pool of
    thousands of long trajectories never sits in memory whole); `{"data": [...]}` whole."""
    try:
        with path.open(encoding="utf-8") as fh:
            head = fh.read(64).lstrip()
        if head.startswith("["):
            yield from _json_list(path, chunk)
            return
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if isinstance(data, Mapping):
        data = next((data[k] for k in ("data", "records", "examples") if k in data), None)
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of records (or {{'data': [...]}})")
    for i, record in enumerate(data):
        yield f"{path}: record {i}", record


class _ListReader:
    """A JSON list read from a file a piece at a time: its items, one by one."""

    def __init__(self, path: Path, chunk: int) -> None:
        self.path, self.chunk = path, chunk
        self.buf, self.pos, self.lines_before = "", 0, 0
        self.eof = False
        self._decoder = json.JSONDecoder()

    def fill(self, fh: Any) -> bool:
        """Read more, dropping what was consumed; False at the end of the file."""
        if self.eof:
            return False
        more = fh.read(max(self.chunk, len(self.buf) - self.pos))
        self.lines_before += self.buf.count("\n", 0, self.pos)
        self.buf, self.pos = self.buf[self.pos :] + more, 0
        self.eof = not more
        return bool(more)

    def skip_space(self, fh: Any) -> str:
        """The next character that is not white space ("" at the end of the file)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill(fh):
                return ""

    def item(self, fh: Any) -> Any:
        """The value starting here, reading on while it is incomplete."""
        self.skip_space(fh)
        while True:
            try:
                value, end = self._decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # Cut by the end of what was read (an open string, or an error within
                # an escape's length of the end) rather than invalid: read on.
                cut = exc.msg.startswith("Unterminated") or exc.pos >= len(self.buf) - 8
                if cut and self.fill(fh):
                    continue
                self.fail(exc.msg, exc.pos)
            if end < len(self.buf) or self.eof:
                self.pos = end
                return value
            self.fill(fh)  # a number may go on past the end of what was read

    def fail(self, message: str, at: int | None = None) -> NoReturn:
        at = self.pos if at is None else at
        line = self.lines_before + self.buf.count("\n", 0, at) + 1
        raise ConfigError(f"{self.path}:{line}: invalid JSON ({message})")


def _json_list(path: Path, chunk: int) -> Iterator[tuple[str, Any]]:
    reader = _ListReader(path, chunk)
    with path.open(encoding="utf-8") as fh:
        reader.skip_space(fh)
        reader.pos += 1  # the "["
        index = 0
        if reader.skip_space(fh) == "]":
            reader.pos += 1
        else:
            while True:
                yield f"{path}: record {index}", reader.item(fh)
                index += 1
                following = reader.skip_space(fh)
                reader.pos += 1
                if following == "]":
                    break
                if following != ",":
                    reader.fail("expected ',' or ']'" if following else "unexpected end of file")
        if reader.skip_space(fh):
            reader.fail("extra data after the list")


def open_parquet(path: Path) -> Any:
    """`pyarrow.parquet.ParquetFile(path)`; `ConfigError` without pyarrow or for a file
    that is not Parquet."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Parquet files need pyarrow: pip install 'pacore[eval]'") from None
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise ConfigError(f"{path}: not a readable Parquet file ({exc})") from None


def _parquet_records(path: Path) -> Iterator[tuple[str, Any]]:
    handle = open_parquet(path)
    row = 0
    for batch in handle.iter_batches(batch_size=256):  # memory stays flat
        for record in batch.to_pylist():
            yield f"{path}: row {row}", record
            row += 1


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


def _records(source: str | Path, split: str | None) -> Iterator[tuple[str, Any]]:
    """(where, record) pairs from a file by its suffix, or from the hub."""
    path = Path(source)
    if path.exists():
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, not a dataset file")
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            return _jsonl_records(path)
        if suffix == ".json":
            return _json_records(path)
        if suffix in (".parquet", ".pq"):
            return _parquet_records(path)
        raise ConfigError(f"{path}: unknown dataset format (use .jsonl, .json or .parquet)")
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
