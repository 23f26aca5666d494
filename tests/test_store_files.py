"""Which files the trajectory store opens: its own, an empty one, an earlier pacore's.

Anything else is refused with one line before a byte changes: the file's bytes and
modification time stay, its journal mode stays, and no `-wal`/`-shm` file appears.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from pacore.cli import main
from pacore.errors import ConfigError
from pacore.store import APPLICATION_ID, STORE_FORMAT, Key, TrajectoryStore, check_store
from pacore.types import Completion, Usage
from tests.store_schemas import earlier_store_table

UNUSED_URL = "http://127.0.0.1:9/v1"
"""A backend that must never be contacted (the discard port: nothing answers there)."""


def _sqlite(path: Path, *statements: str) -> Path:
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()
    return path


def foreign_database(path: Path) -> Path:
    return _sqlite(
        path, "CREATE TABLE users (id INTEGER, name TEXT)", "INSERT INTO users VALUES (1, 'a')"
    )


def foreign_with_trajectories(path: Path) -> Path:
    """A database of another program that happens to have a `trajectories` table too."""
    return _sqlite(
        path,
        "CREATE TABLE trajectories (x INTEGER)",
        "CREATE TABLE other (y INTEGER)",
    )


def other_application(path: Path) -> Path:
    return _sqlite(path, "PRAGMA application_id=1234", "CREATE TABLE t (x)")


def newer_store(path: Path) -> Path:
    TrajectoryStore(path).close()
    _sqlite(path, f"PRAGMA user_version={STORE_FORMAT + 1}")
    return path


def not_sqlite(path: Path) -> Path:
    path.write_bytes(b"this is not sqlite\n" * 100)
    return path


def short_file(path: Path) -> Path:
    path.write_bytes(b"SQLite format 3\x00")
    return path


def folder(path: Path) -> Path:
    path.mkdir()
    return path


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


REFUSED: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a database with other tables": (foreign_database, "not a trajectory store .*users"),
    "a trajectories table of another kind": (foreign_with_trajectories, "not a trajectory store"),
    "another application's database": (other_application, "another application"),
    "a store of a newer format": (newer_store, "newer pacore"),
    "a file that is not SQLite": (not_sqlite, "not a SQLite database"),
    "a file cut short": (short_file, "not a SQLite database"),
    "a folder": (folder, "is a folder"),
    "a FIFO": (fifo, "not a regular file"),
}


def snapshot(folder: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every entry of `folder`: its bytes (None for a folder or FIFO) and mtime."""
    out = {}
    for entry in sorted(folder.iterdir()):
        info = entry.lstat()
        data = entry.read_bytes() if entry.is_file() else None
        out[entry.name] = (data, info.st_mtime_ns)
    return out


@pytest.mark.parametrize("read_only", [False, True], ids=["write", "read"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_untouched(tmp_path: Path, case: str, read_only: bool) -> None:
    make, message = REFUSED[case]
    path = make(tmp_path / "store.sqlite")
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError, match=message) as caught:
        TrajectoryStore(path, read_only=read_only)
    assert "\n" not in str(caught.value)
    assert snapshot(tmp_path) == before  # no byte, no mtime, no -wal/-shm


def test_a_foreign_database_keeps_its_journal_mode(tmp_path: Path) -> None:
    path = foreign_database(tmp_path / "other.sqlite")
    with pytest.raises(ConfigError):
        TrajectoryStore(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    db.close()


def test_a_device_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        check_store(Path("/dev/null"))


def _marks(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:100]
    return int.from_bytes(header[68:72], "big"), int.from_bytes(header[60:64], "big")


@pytest.mark.parametrize("kind", ["missing", "empty file", "empty database"])
def test_new_and_empty_files_become_marked_stores(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "sub" / "s.sqlite" if kind == "missing" else tmp_path / "s.sqlite"
    if kind == "empty file":
        path.write_bytes(b"")
    elif kind == "empty database":
        _sqlite(path, "PRAGMA user_version=0", "VACUUM")
    with TrajectoryStore(path) as store:
        store.put(Key("m", "p", "s", "pool/0"), Completion("t", usage=Usage(1, 1)))
    assert _marks(path) == (APPLICATION_ID, STORE_FORMAT)
    assert check_store(path) is True


OLD_SCHEMA = earlier_store_table(discarded_tokens=False)


def test_a_store_of_an_earlier_pacore_is_adopted(tmp_path: Path) -> None:
    """Written before the mark and before `discarded_tokens`: it opens, keeps its rows,
    and is marked from then on."""
    path = _sqlite(
        tmp_path / "old.sqlite",
        OLD_SCHEMA,
        "INSERT INTO trajectories VALUES ('m','p','s','pool/0','old text',NULL,'stop',"
        "3,4,NULL,0,0.5,NULL,0)",
    )
    assert _marks(path) == (0, 0)
    with TrajectoryStore(path, read_only=True) as store:  # reading changes nothing
        assert store.get_many([Key("m", "p", "s", "pool/0")])
    assert _marks(path) == (0, 0)
    with TrajectoryStore(path) as store:
        got = store.get_many([Key("m", "p", "s", "pool/0")])
    assert [c.text for c in got.values()] == ["old text"]
    assert _marks(path) == (APPLICATION_ID, STORE_FORMAT)


def test_eval_refuses_a_foreign_store_before_anything_is_spent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "p", "question": "Q?", "answer": "1"}) + "\n")
    store = foreign_database(tmp_path / "other.sqlite")
    before = snapshot(tmp_path)
    argv = ["eval", "--dataset", str(data), "--method", "single", "--out", str(tmp_path / "out")]
    argv += ["--store", str(store), "--backend", UNUSED_URL, "--no-plots", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "not a trajectory store" in err
    assert snapshot(tmp_path) == before  # no out folder either
