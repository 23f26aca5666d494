"""`PoolRecord`: one problem of the PaCoRe-Train format, and its files.

A record holds the problem's conversation, its cached responses (the pool M is
drawn from, stored whole: compaction happens when episodes are built) and its
ground truth, plus an `id`. The released PaCoRe-Train-8k has exactly these
fields (without `id`: records then take their position). Files are JSON (a list,
or `{"data": [...]}`), JSONL or Parquet, read by the dataset readers of
`pacore.eval.datasets`; Parquet is read in batches so memory stays flat.

Writing is atomic: the records go to a temporary file next to the target, which
replaces the target only once every record was written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacore.errors import ConfigError
from pacore.io.atomic import atomic_output
from pacore.io.formats import FORMAT_KEY, POOL
from pacore.io.guard import check_output, first_record_owned
from pacore.io.jsonl import check_unicode, loads
from pacore.io.problems import conversation, expect_object, record_id
from pacore.io.records import open_parquet, read_records
from pacore.io.source import Source, open_input
from pacore.io.tables import parquet_metadata, spool, write_json_rows, write_parquet
from pacore.types import Message

POOL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".pq")
_ALIASES = (".ndjson", ".pq")
"""Suffixes accepted but not named in errors (`.jsonl` and `.parquet` are)."""
_GT_JSON = b"pacore.ground_truth_json"


@dataclass(frozen=True)
class PoolRecord:
    """One problem with its pool of responses, in the PaCoRe-Train format."""

    id: str
    conversation: tuple[Message, ...]
    """The problem's messages; the last user turn is the question."""
    responses: tuple[str, ...]
    """The cached trajectories, whole (reasoning included): the pool M is drawn from."""
    ground_truth: Any
    """The gold answer (math), or the tests in the eval dataset format (code)."""
    sampled: int | None = None
    """Responses sampled for the pool, those dropped as truncated or empty included
    (`pacore train pool` writes it); None when unknown. Stage 1's accuracy is over this
    many, so a dropped response counts as a wrong one, as in the paper."""

    @property
    def question(self) -> str:
        """The text of the last user turn."""
        from pacore.core.prompts import message_text, problem_slot

        return message_text(self.conversation[problem_slot(self.conversation)])

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record: `id`, `conversation`, `responses`, `ground_truth`, and
        `sampled` when known."""
        out = {
            "id": self.id,
            "conversation": [dict(m) for m in self.conversation],
            "responses": list(self.responses),
            "ground_truth": self.ground_truth,
        }
        if self.sampled is not None:
            out["sampled"] = self.sampled
        return out

    @classmethod
    def from_dict(cls, record: Any, where: str, *, index: int = 0) -> PoolRecord:
        """A record from its JSON form; `where` names the file and line in errors.

        `id` defaults to the record's position `index`; `conversation` may be given as
        a plain `question` (or `problem`, `prompt`) string; `responses` may be absent
        (a problem with no pool yet).
        """
        record = expect_object(record, where)
        POOL.version_of(record.get(FORMAT_KEY), where)
        messages, _ = conversation(record, where)
        raw = record.get("responses")
        if raw is None:
            raw = []
        if not isinstance(raw, list | tuple) or not all(isinstance(r, str) for r in raw):
            raise ConfigError(f"{where}: 'responses' must be a list of strings")
        pid = record_id(record, where, str(index))
        truth = record.get("ground_truth")
        if truth is None:
            truth = record.get("answer")
        check_unicode(where, raw, truth)
        sampled = record.get("sampled")
        if sampled is not None and (
            not isinstance(sampled, int) or isinstance(sampled, bool) or sampled < len(raw)
        ):
            raise ConfigError(f"{where}: 'sampled' must be an integer, at least len(responses)")
        return cls(pid, messages, tuple(raw), truth, sampled)


def output_suffix(
    path: Path, suffixes: tuple[str, ...] = POOL_SUFFIXES, *, what: str = "pool"
) -> str:
    """`path`'s suffix, lower case, when it is one of the formats written (`suffixes`);
    else a `ConfigError` naming them, so no file gets bytes its name does not promise."""
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        *rest, last = [s for s in suffixes if s not in _ALIASES]
        choices = f"{', '.join(rest)} or {last}" if rest else last
        raise ConfigError(f"{path}: unknown {what} format (use {choices})")
    return suffix


def _parquet_rows(path: Path | Source) -> Iterator[tuple[str, Any]]:
    """Rows of a Parquet file, batch by batch (memory stays flat)."""
    handle = open_parquet(path)
    meta = handle.schema_arrow.metadata or {}
    decode = meta.get(_GT_JSON) == b"1"
    row = 0
    for batch in handle.iter_batches(batch_size=256):
        for record in batch.to_pylist():
            where = f"{path}: row {row}"
            if decode and isinstance(record.get("ground_truth"), str):
                try:
                    record["ground_truth"] = loads(record["ground_truth"], strict=False)
                except ValueError as exc:
                    raise ConfigError(f"{where}: ground_truth is not JSON ({exc})") from None
            yield where, record
            row += 1


def read_pool(path: str | Path | Source) -> Iterator[PoolRecord]:
    """Every record of a pool file (JSON, JSONL or Parquet), lazily, in file order.

    A malformed record or a duplicate id is a `ConfigError` naming the file and line.
    Pass a `Source` (`pacore.io.source.open_input`) to read a pipe more than once.
    """
    source = open_input(path, what="pool") if not isinstance(path, Source) else path
    parquet = source.suffix.lower() in (".parquet", ".pq")
    rows = _parquet_rows(source) if parquet else read_records(source, what="pool")
    seen: dict[str, str] = {}
    try:
        for index, (where, raw) in enumerate(rows):
            record = PoolRecord.from_dict(raw, where, index=index)
            if record.id in seen:
                raise ConfigError(
                    f"{where}: duplicate id {record.id!r} (first at {seen[record.id]})"
                )
            seen[record.id] = where
            yield record
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text ({exc.reason})") from None


def check_pool_path(path: Path, *, inputs: Iterable[Path | Source] = ()) -> None:
    """Refuse an output whose format is unknown, or that the output guard refuses: a
    folder, a device, a FIFO, one of `inputs`, or a file that is not a pacore pool."""
    output_suffix(path)
    check_output(path, inputs=inputs, owned=first_record_owned(POOL), what="pool")


def write_pool(path: str | Path, records: Iterable[PoolRecord]) -> int:
    """Write `records` to `path` (format by suffix), atomically; the number written.

    Every record (JSONL, JSON) or the file (Parquet metadata) carries the pool format's
    marker, so a later command knows it may replace the file. A failed write (a full
    disk) is a `StorageError`; the target is then untouched.
    """
    path = Path(path)
    suffix = output_suffix(path)
    check_pool_path(path)
    with atomic_output(path) as tmp:
        if suffix in (".parquet", ".pq"):
            return _write_parquet(tmp, records)
        rows = (r.to_dict() for r in records)
        return write_json_rows(tmp, rows, as_list=suffix == ".json", fmt=POOL)


PARQUET_ROWS = 64
"""Rows per Parquet row group: what `_write_parquet` holds in memory at a time (64
problems of 24 long responses are tens of MB)."""


def _write_parquet(path: Path, records: Iterable[PoolRecord]) -> int:
    """Parquet in row groups of PARQUET_ROWS; a ground truth that is not a plain string
    (code tests, mixed types) is stored as JSON text and decoded when read back.

    Whether any ground truth needs JSON is known only once every record has been seen,
    so the records are spooled beside `path` first (`pacore.io.tables.spool`) and read
    back a row group at a time: memory stays flat for any number of problems.
    """
    try:
        import pyarrow as pa
    except ImportError:
        raise ConfigError("Parquet files need pyarrow: pip install 'pacore[eval]'") from None
    seen = {"json": False}

    def rows() -> Iterator[dict[str, Any]]:
        for record in records:
            row = record.to_dict()
            seen["json"] = seen["json"] or not isinstance(row["ground_truth"], str | None)
            yield row

    with spool(rows(), path) as held:
        as_json = seen["json"]
        message = pa.struct([("role", pa.string()), ("content", pa.string())])
        schema = pa.schema(
            [
                ("id", pa.string()),
                ("conversation", pa.list_(message)),
                ("responses", pa.list_(pa.string())),
                ("ground_truth", pa.string()),
                ("sampled", pa.int64()),
            ],
            metadata=parquet_metadata(POOL, **{_GT_JSON.decode(): b"1" if as_json else b"0"}),
        )
        batches = (
            [_parquet_row(row, as_json=as_json) for row in chunk]
            for chunk in held.chunks(PARQUET_ROWS)
        )
        write_parquet(path, schema, batches)
        return held.count


def _parquet_row(row: dict[str, Any], *, as_json: bool) -> dict[str, Any]:
    """One record's row: chat content as text (one type per column), and the ground
    truth as JSON text when the file stores it so."""
    if as_json:
        row["ground_truth"] = json.dumps(row["ground_truth"], ensure_ascii=False)
    row.setdefault("sampled", None)
    row["conversation"] = [_text_message(m) for m in row["conversation"]]
    return row


def _text_message(message: Mapping[str, Any]) -> dict[str, str]:
    from pacore.core.prompts import message_text

    return {"role": str(message.get("role")), "content": message_text(dict(message))}
