"""Writing records as data files: JSONL, a JSON list, or Parquet a row group at a time.

The readers are `pacore.io.records`; these are their writers, for files written whole
(call them on the temporary path `pacore.io.atomic.atomic_output` hands out, so the
target is replaced only once every record is written). Memory stays flat: JSON is
written a record at a time and Parquet a row group at a time.

`spool` holds records on disk beside the target for a writer that must see every
record before it writes the first (a Parquet schema that depends on all of them).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacore.errors import ConfigError
from pacore.io.formats import FORMAT_KEY, Format


def write_json_rows(
    path: Path, rows: Iterable[Mapping[str, Any]], *, as_list: bool, fmt: Format
) -> int:
    """Write `rows` to `path` as JSONL (or a JSON list), each marked with `fmt`; the
    number written."""
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        if as_list:
            fh.write("[")
        for row in rows:
            line = json.dumps({FORMAT_KEY: fmt.tag, **row}, ensure_ascii=False)
            if as_list:
                fh.write(("," if count else "") + "\n" + line)
            else:
                fh.write(line + "\n")
            count += 1
        if as_list:
            fh.write("\n]\n")
    return count


def parquet_metadata(fmt: Format, **extra: bytes) -> dict[bytes, bytes]:
    """Parquet schema metadata carrying `fmt`'s marker (and `extra` keys)."""
    return {b"pacore." + FORMAT_KEY.encode(): fmt.tag.encode()} | {
        k.encode(): v for k, v in extra.items()
    }


def write_parquet(path: Path, schema: Any, batches: Iterable[list[dict[str, Any]]]) -> None:
    """Write `batches` of rows to `path` with `schema`, one row group per batch."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Parquet files need pyarrow: pip install 'pacore[eval]'") from None
    with pq.ParquetWriter(path, schema) as writer:
        for batch in batches:
            if batch:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            del batch  # before the next batch is built: one row group in memory at a time


def batched(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """`rows` in lists of `size` (the last may be shorter); a list is let go before the
    next is built, so one batch is in memory at a time."""
    it = iter(rows)
    while True:
        batch = list(itertools.islice(it, size))
        if not batch:
            return
        yield batch
        del batch


@dataclass
class Spool:
    """Records held in a file beside a target: `count` of them, read back in chunks."""

    path: Path
    count: int = 0

    def chunks(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """The records in order, `size` at a time."""
        # `surrogatepass`: a lone surrogate in model output survives the spool as it is.
        with self.path.open(encoding="utf-8", errors="surrogatepass") as fh:
            yield from batched((json.loads(line) for line in fh), size)


@contextlib.contextmanager
def spool(rows: Iterable[Mapping[str, Any]], beside: Path) -> Iterator[Spool]:
    """Every row of `rows` written to a private file beside `beside`, removed after."""
    fd, name = tempfile.mkstemp(prefix=f".{beside.name}.", suffix=".spool", dir=beside.parent)
    held = Spool(Path(name))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogatepass") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                held.count += 1
        yield held
    finally:
        held.path.unlink(missing_ok=True)
