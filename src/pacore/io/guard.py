"""The output guard: every command checks its output here before it writes anything.

`check_output(path, inputs=..., owned=...)` refuses, with one line and the file
untouched:

- a folder, a FIFO, a socket or a device (`/dev/full` would become a regular file
  when replaced; a FIFO would block);
- any of the command's inputs, under any name (the same device and inode: the path
  itself, a symlink or a hard link);
- a file pacore may not write (permission), or under a parent that is not a folder
  (a missing folder is fine: every command creates its output's folders);
- an existing file that the command did not write: `owned(path)` decides, by the
  file's format marker (`pacore.io.formats`). An empty file is anyone's. A command
  may replace or extend its own earlier output.

Readers of the markers for files written whole (JSONL, JSON, Parquet) are here too:
`first_record_owned`.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pacore.errors import ConfigError
from pacore.io.formats import FORMAT_KEY, Format
from pacore.io.source import Source

Owned = Callable[[Path], bool]
"""Whether an existing, non-empty file is one the command wrote (and may replace)."""


def kind_of(mode: int) -> str:
    """What a file that is not a regular one or a folder is, for an error line."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def _identity(item: Source | str | os.PathLike[str]) -> tuple[int, int] | None:
    if isinstance(item, Source):
        return item.identity
    try:
        info = os.stat(item)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def check_output(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[Source | str | os.PathLike[str]] = (),
    owned: Owned | None = None,
    what: str = "output",
) -> None:
    """Refuse `path` as an output unless it is new, or a regular writable file that is
    none of `inputs` and (with `owned`) was written by the command; see the module.
    A new file's missing folders are the writer's to create (`atomic_output` does):
    the nearest existing one must be a folder pacore may write in."""
    path = Path(path)
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # new, or under a file: say which
        _check_parent(path)
        return
    except OSError as exc:
        raise ConfigError(f"{path}: cannot use as {what} ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path}: is a directory; the {what} must be a file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            f"{path}: is {kind_of(info.st_mode)}, not a regular file; choose a file for the {what}"
        )
    mine = (info.st_dev, info.st_ino)
    for item in inputs:
        if _identity(item) == mine:
            raise ConfigError(
                f"{path}: is the input {item} (the same file under this name); "
                f"choose another {what}"
            )
    if not os.access(path, os.W_OK):
        raise ConfigError(f"{path}: not writable (permission denied)")
    if owned is not None and info.st_size and not owned(path):
        raise ConfigError(
            f"{path}: exists and was not written by this pacore command; refusing to "
            "replace it (move it away or choose another output)"
        )


def check_output_folder(
    path: str | os.PathLike[str],
    *,
    marker: str,
    inputs: Iterable[str | os.PathLike[str]] = (),
    what: str = "output folder",
) -> None:
    """Refuse `path` as a folder a command fills unless it is new, empty, or holds the
    command's `marker` file (it wrote it before), and is neither one of `inputs` nor
    inside one, nor holds one (a trained model written over its base model)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        _check_parent(path)
        info = None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot use as {what} ({exc.strerror})") from None
    here = path.resolve()
    for item in inputs:
        other = Path(item).resolve()
        if other == here or here in other.parents or other in here.parents:
            raise ConfigError(f"{path}: holds or is the input {item}; choose another {what}")
    if info is None:
        return
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path}: is {kind_of(info.st_mode)}; the {what} must be a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{path}: not writable (permission denied)")
    if any(path.iterdir()) and not (path / marker).is_file():
        raise ConfigError(
            f"{path}: a folder with other files, not written by this pacore command; "
            f"refusing to write into it (choose a new or empty {what})"
        )


def _check_parent(path: Path) -> None:
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{path}: cannot create a file in {parent} (permission denied)")


def first_record_owned(fmt: Format) -> Owned:
    """An `owned` test for a file written whole: its first record (JSONL line, JSON list
    item) or its Parquet metadata carries `fmt`'s marker."""

    def owned(path: Path) -> bool:
        if path.suffix.lower() in (".parquet", ".pq"):
            return _parquet_marker(path) == fmt.name
        record = _first_record(path)
        return isinstance(record, dict) and fmt.marks(record.get(FORMAT_KEY))

    return owned


def _parquet_marker(path: Path) -> str:
    """The format name in a Parquet file's metadata (`""` when none or unreadable)."""
    try:
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
    except Exception:  # not Parquet, or no pyarrow: not ours
        return ""
    tag = meta.get(b"pacore." + FORMAT_KEY.encode(), b"").decode("utf-8", "replace")
    return str(tag.rpartition("/")[0])


FIRST_RECORD_LIMIT = 64 << 20
"""The most bytes read to find a file's first record (a pool record holds long texts)."""


def _first_record(path: Path) -> Any:
    """The first JSONL line's value, or the first item of a JSON list; None when unreadable."""
    try:
        with path.open("rb") as fh:
            head = fh.read(FIRST_RECORD_LIMIT)
    except OSError:
        return None
    text = head.decode("utf-8", "replace").lstrip()
    decoder = json.JSONDecoder()
    try:
        if text.startswith("["):
            value, _ = decoder.raw_decode(text, 1 + len(text[1:]) - len(text[1:].lstrip()))
            return value
        if text.startswith("{") and path.suffix.lower() == ".json":
            data = json.loads(text)
            items = data.get("data") if isinstance(data, dict) else None
            marker = data.get(FORMAT_KEY) if isinstance(data, dict) else None
            first = items[0] if isinstance(items, list) and items else {}
            return {**first, FORMAT_KEY: marker} if marker and isinstance(first, dict) else first
        value, _ = decoder.raw_decode(text)
        return value
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        return None
