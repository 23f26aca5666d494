"""Reading JSONL files: one reader for batch input, datasets, pools and result files.

`read_jsonl(path)` yields `(line_number, record)` for every non-blank line. Every
problem is a `ConfigError` of one line naming the file, and the line when there is
one: `data.jsonl:9: invalid JSON (Expecting value at column 1)`, `data.jsonl: no such
file`, `data.jsonl: not UTF-8 text (invalid start byte)`.

`read_lines` is the same walk without parsing, for callers that keep the raw lines
(the resumable output files rewrite the lines they keep, byte for byte), and
`cut_torn_line` repairs an output file whose writer died mid-line.

A line ends at LF, CR LF or a lone CR, for every reader: the text readers above by
Python's universal newlines, the byte readers of pacore's own outputs (a resume's
`inspect_lines`, the viewer's `scan_objects` and `line_at`) by `cut_lines`, which cuts
as `bytes.splitlines` does, a block at a time.

`check_unicode(where, value)` refuses text that is not valid Unicode: JSON's `"\\udfff"`
escape parses to a lone surrogate, which no UTF-8 file, hash or database can take.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from pacore.errors import ConfigError
from pacore.io.source import Source

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(*values: Any) -> bool:
    """Whether a string anywhere in `values` (nested lists and mappings, keys included)
    holds a lone surrogate."""
    stack = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value):
                return True
        elif isinstance(value, Mapping):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return False


def check_unicode(where: str, *values: Any) -> None:
    """`ConfigError` naming `where` when `has_lone_surrogate(*values)`."""
    if has_lone_surrogate(*values):
        raise ConfigError(f"{where}: a lone surrogate, which is not valid Unicode text")


def read_lines(path: Path | Source) -> Iterator[tuple[int, str]]:
    """`(line_number, line)` for each non-blank line, line endings kept (numbers from 1);
    a byte order mark at the start of the file (Windows editors write one) is dropped."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    yield number, line
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a JSONL file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except UnicodeDecodeError as exc:
        line = _first_undecodable(path)
        where = f"{path}:{line}" if line is not None else str(path)
        raise ConfigError(f"{where}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None


def _first_undecodable(path: Path | Source) -> int | None:
    """The number of the first line that is not UTF-8 (the decoder reads in blocks, so
    its error does not say); None when it cannot be read again."""
    try:
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return number
    except OSError:
        return None
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def finite_float(text: str) -> float:
    """A JSON number with a fraction or exponent; one past a float's range is refused."""
    value = float(text)
    if math.isinf(value):  # 1e999: what `Infinity` is, spelt as a number
        raise ValueError(f"{text} is out of the range of a JSON number")
    return value


_DECODE = json.JSONDecoder(parse_constant=_no_constant, parse_float=finite_float).decode
"""One decoder for every line (`json.loads` with an option builds a new one each call)."""


_DIGITS = bytes(ord("0") if 48 <= byte <= 57 else ord(" ") for byte in range(256))
"""A `bytes.translate` table: ASCII digits to "0", every other byte to a space."""
_LONG_NUMBER = b"0" * 19


def _has_long_number(text: str | bytes) -> bool:
    """Whether `text` holds a run of 19 ASCII digits (a `translate` and a substring
    search: a sixth of what a regular expression costs on a results line)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return _LONG_NUMBER in raw.translate(_DIGITS)


def loads(text: str | bytes, *, strict: bool = True) -> Any:
    """A JSON value exactly as the standard library reads it, mostly at orjson's speed.

    orjson reads a text three times as fast and to the same value, with one exception:
    an integer past 64 bits becomes a float there. So a text holding a run of 19 digits
    (anywhere: in a string too), or one orjson refuses, is read by the standard
    library, which gives the value or the error (its message; `_too_deep` for nesting
    past what it can read). `strict` refuses `NaN` and `Infinity`, which JSON does not
    have, and a number too large for a float (`1e999`, infinity by another name);
    without it they are read as floats.
    """
    if not _has_long_number(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    try:
        if not strict:
            return json.loads(text)
        return _DECODE(text if isinstance(text, str) else text.decode("utf-8"))
    except RecursionError:
        raise _too_deep(text) from None


def _too_deep(text: str | bytes) -> json.JSONDecodeError:
    """The error for JSON nested deeper than Python's parser can go (which raises a
    `RecursionError`, not a `ValueError`): a hostile file is bad input, not a crash."""
    doc = text if isinstance(text, str) else text.decode("utf-8", "replace")
    return json.JSONDecodeError("nested too deeply", doc, 0)


def parse_line(where: str, line: str | bytes) -> Any:
    """One line's JSON value; `where` (`file:line`) names it in the error. `NaN` and
    `Infinity`, which Python's json reads but JSON does not have, are refused."""
    try:
        return loads(line)
    except json.JSONDecodeError as exc:
        message = exc.msg.removesuffix(" at")  # "Invalid control character at"
        raise ConfigError(f"{where}: invalid JSON ({message} at column {exc.colno})") from None
    except ValueError as exc:
        if "int_max_str_digits" in str(exc):  # not Python's advice: what is wrong
            limit = sys.get_int_max_str_digits()
            raise ConfigError(
                f"{where}: invalid JSON (a number of more than {limit} digits)"
            ) from None
        raise ConfigError(f"{where}: invalid JSON ({exc})") from None


def read_jsonl(path: Path | Source) -> Iterator[tuple[int, Any]]:
    """`(line_number, record)` for each non-blank line of a JSONL file."""
    for number, line in read_lines(path):
        yield number, parse_line(f"{path}:{number}", line)


def loads_lenient(line: bytes) -> Any:
    """A line's JSON value for a viewer: NaN and infinities (strict JSON, and orjson,
    refuse them, but an older pacore wrote them) are read too. None when not JSON."""
    try:
        return loads(line, strict=False)
    except ValueError:
        return None


def scan_objects(path: Path) -> Iterator[tuple[int, int, dict[str, Any] | None]]:
    """`(line_number, byte_offset, object)` for every non-blank line of a file pacore
    wrote, read fast and leniently (`loads_lenient`); `object` is None for a line that
    is not a JSON object (a torn write, a foreign line), so the caller can name it.
    Lines are `cut_lines`'s: the ones a resume reads (`io.appender.inspect_lines`)."""
    with path.open("rb") as fh:
        for number, (start, line) in enumerate(cut_lines(fh), 1):
            if not line.strip():
                continue
            value = loads_lenient(line)
            yield number, start, value if isinstance(value, dict) else None


LINE_BLOCK = 1 << 20
"""Bytes `cut_lines` reads at a time."""


def cut_lines(fh: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for each line of `fh` from where it stands, its break kept, cut as
    `bytes.splitlines` would cut the whole file (a break is LF, CR LF or CR), read
    `LINE_BLOCK` bytes at a time: every reader of pacore's line files cuts them here."""
    offset = 0
    pending: list[bytes] = []  # blocks of a line not yet known to be whole
    while block := fh.read(LINE_BLOCK):
        if b"\n" not in block and b"\r" not in block:
            pending.append(block)
            continue
        parts = b"".join([*pending, block]).splitlines(keepends=True)
        # The last part goes on in the next block unless it ends with a newline (a
        # carriage return may be the first half of CR LF).
        pending = [] if parts[-1].endswith(b"\n") else [parts.pop()]
        for part in parts:
            yield offset, part
            offset += len(part)
    for part in b"".join(pending).splitlines(keepends=True):
        yield offset, part
        offset += len(part)


def line_at(fh: IO[bytes], offset: int) -> bytes:
    """The line of `fh` that starts at `offset`, cut as `cut_lines` cuts it (b"" past
    the end); reads only that line."""
    fh.seek(offset)
    line = fh.readline()
    cr = line.find(b"\r")  # readline stops at LF only: a CR before it ends the line
    if cr < 0:
        return line
    return line[: cr + 2 if line[cr + 1 : cr + 2] == b"\n" else cr + 1]


def cut_torn_line(path: Path) -> None:
    """Cut off a last line without its newline: a write interrupted by a crash."""
    try:
        with path.open("r+b") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot repair ({exc.strerror})") from None
