"""Records of a data file, whatever its format: JSONL, a JSON list (or `{"data": [...]}`)
or Parquet, chosen by the file's suffix (none, as `/dev/stdin` or `<(cat f)`: JSONL).

`read_records(source)` yields `(where, record)` pairs, `where` naming the file and the
line (`data.jsonl:9`), the list item (`data.json: record 3`) or the row
(`data.parquet: row 7`) for the errors of whoever parses the record. Every reader
streams: a JSON list is read a record at a time and Parquet a batch at a time, so a
released pool of thousands of long trajectories never sits in memory whole. Problems,
datasets and pools are all read here (`pacore.io.problems` turns a record into a
problem).

JSON's `NaN` and `Infinity`, which Python reads but JSON does not have, are refused
with the file and line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from pacore.errors import ConfigError
from pacore.io.jsonl import finite_float, read_jsonl
from pacore.io.source import Source

JSONL_SUFFIXES = (".jsonl", ".ndjson", "")
JSON_SUFFIXES = (".json",)
PARQUET_SUFFIXES = (".parquet", ".pq")
SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".pq")


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number", name, 0)


def _finite(text: str) -> float:
    try:
        return finite_float(text)
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc), text, 0) from None


def read_records(source: Path | Source, *, what: str = "data") -> Iterator[tuple[str, Any]]:
    """`(where, record)` for every record of `source`, by its suffix; `ConfigError` for
    an unknown suffix."""
    suffix = source.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return jsonl_records(source)
    if suffix in JSON_SUFFIXES:
        return json_records(source)
    if suffix in PARQUET_SUFFIXES:
        return parquet_records(source)
    raise ConfigError(f"{source}: unknown {what} format (use .jsonl, .json or .parquet)")


def jsonl_records(path: Path | Source) -> Iterator[tuple[str, Any]]:
    """The records of a JSONL file, one a line (blank lines skipped)."""
    for number, record in read_jsonl(path):
        yield f"{path}:{number}", record


JSON_CHUNK = 1 << 20
"""Characters read at a time from a JSON list (more while one record is longer)."""


def json_records(path: Path | Source, chunk: int = JSON_CHUNK) -> Iterator[tuple[str, Any]]:
    """The records of a JSON file: a list is read a record at a time (a released pool of
    thousands of long trajectories never sits in memory whole); `{"data": [...]}` whole."""
    try:
        with path.open(encoding="utf-8-sig") as fh:
            head = fh.read(64).lstrip()
        if head.startswith("["):
            yield from _json_list(path, chunk)
            return
        data = json.loads(
            path.read_text(encoding="utf-8-sig"), parse_constant=_no_constant, parse_float=_finite
        )
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid JSON (nested too deeply)") from None
    if isinstance(data, Mapping):
        data = next((data[k] for k in ("data", "records", "examples") if k in data), None)
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of records (or {{'data': [...]}})")
    for i, record in enumerate(data):
        yield f"{path}: record {i}", record


class _ListReader:
    """A JSON list read from a file a piece at a time: its items, one by one."""

    def __init__(self, path: Path | Source, chunk: int) -> None:
        self.path, self.chunk = path, chunk
        self.buf, self.pos, self.lines_before = "", 0, 0
        self.eof = False
        self._decoder = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)

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
            except RecursionError:
                self.fail("nested too deeply")
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


def _json_list(path: Path | Source, chunk: int) -> Iterator[tuple[str, Any]]:
    reader = _ListReader(path, chunk)
    with path.open(encoding="utf-8-sig") as fh:
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


def open_parquet(path: Path | Source) -> Any:
    """`pyarrow.parquet.ParquetFile(path)`; `ConfigError` without pyarrow or for a file
    that is not Parquet."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Parquet files need pyarrow: pip install 'pacore[eval]'") from None
    try:
        return pq.ParquetFile(os.fspath(path))
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise ConfigError(f"{path}: not a readable Parquet file ({exc})") from None


def parquet_records(path: Path | Source) -> Iterator[tuple[str, Any]]:
    """The rows of a Parquet file as records, a batch at a time (memory stays flat)."""
    handle = open_parquet(path)
    row = 0
    for batch in handle.iter_batches(batch_size=256):  # memory stays flat
        for record in batch.to_pylist():
            yield f"{path}: row {row}", record
            row += 1
