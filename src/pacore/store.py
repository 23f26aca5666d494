"""The trajectory store: every sampled trajectory, on disk the moment it completes.

SQLite from the standard library, one table. A trajectory is keyed by the model,
a hash of the exact prompt, a hash of the sampling parameters that shape the
output (temperature, top-p, max tokens, extra body; not the seed or streaming),
and a sample key naming its place: `pool/17` for the 18th trajectory of a
problem's round-1 pool, `run3/r2/a0/1` for run 3, round 2, first attempt,
sample 1. Rerunning the same evaluation finds every finished trajectory here and
regenerates none of them.

Only successful samples are stored: a failed request is retried on the next run.
A write that fails (a full disk) is a `StorageError`; what was stored stays.

The first completion stored under a key stays: `put` never replaces one, and returns
what the key holds. Two evaluations sharing a store may sample the same key at once;
the one whose write comes second takes the stored completion instead of its own, so
whatever a run grades is exactly the text kept under its key.

The file says it is a store: its SQLite header carries `APPLICATION_ID` and the store
format (`user_version`, `STORE_FORMAT`). Before it opens a file to write, the store
reads that header and the list of tables without changing a byte (`check_store`): an
empty or new file becomes a store; a file that is not SQLite, a SQLite database of
another application or with other tables, a store of a newer format, a folder, a FIFO
or a device is refused with one line, untouched. A store written by an earlier pacore
(one `trajectories` table, no mark) is adopted: it gets the mark on its first open.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import stat
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacore.core.hashing import canonical_json, stable_hash
from pacore.errors import ConfigError, StorageError
from pacore.io.snapshot import copy_with_log
from pacore.types import Completion, Message, SamplingParams, Usage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trajectories (
    model TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    params_hash TEXT NOT NULL,
    sample TEXT NOT NULL,
    text TEXT NOT NULL,
    reasoning TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER,
    estimated INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    endpoint TEXT,
    created REAL NOT NULL,
    discarded_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (model, prompt_hash, params_hash, sample)
);
"""
"""A rowid table, its key an index beside it: a row holds a whole text (kilobytes), and
SQLite keeps rows that large in a key-ordered (`WITHOUT ROWID`) table poorly (2-20 KB
texts: writes a third slower, reads twice as slow). A store made by an earlier pacore
has the key-ordered table and is read and written the same way."""


APPLICATION_ID = 0x5061436F
"""`PRAGMA application_id` of a pacore store: "PaCo" in ASCII."""
STORE_FORMAT = 1
"""`PRAGMA user_version` of the store this pacore writes; a newer one is refused."""

_COLUMNS = (
    "text, reasoning, finish_reason, prompt_tokens, completion_tokens, reasoning_tokens,"
    " estimated, latency_s, endpoint, discarded_tokens"
)
"""The columns a `Completion` is read from, in `_completion`'s order."""
_TABLE = "trajectories"
_KEY_COLUMNS = frozenset({"model", "prompt_hash", "params_hash", "sample", "text"})
"""Columns every store has had, from the first: an older store must hold them."""
_SQLITE_MAGIC = b"SQLite format 3\x00"


def prompt_hash(messages: Sequence[Message]) -> str:
    """The store's key for an exact prompt (32 hex characters)."""
    return stable_hash(canonical_json(list(messages)), chars=32)


def params_shape(params: SamplingParams) -> dict[str, Any]:
    """The sampling parameters that shape the output (not the seed): what `params_hash`
    hashes, so equal shapes have equal hashes."""
    return {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "extra_body": params.extra_body,
    }


def params_hash(params: SamplingParams) -> str:
    """The store's key for the sampling parameters that shape the output (not the seed)."""
    # ASCII-escaped, as written since the first store: the keys must not move.
    return stable_hash(canonical_json(params_shape(params), ensure_ascii=True), chars=16)


@dataclass(frozen=True)
class Key:
    """Where one trajectory lives in the store."""

    model: str
    prompt: str
    params: str
    sample: str


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the SQLite file at `path`, usable from any thread, that
    writes nothing beside the file.

    A file closed cleanly has no write-ahead log: it is read in place as immutable, which
    takes no lock and makes no `-shm`. A file with a log (a writer at work, or one that
    was killed) is copied with its log into a private temporary folder and the copy is
    opened (`_snapshot`): reading a log in place would create or change the `-shm` file
    beside it. The copy is what the file held when it was opened, and it is removed when
    the connection closes.
    """
    log = path.with_name(path.name + "-wal")
    try:
        logged = log.stat().st_size > 0
    except OSError:
        logged = False
    if logged:
        return _snapshot(path, log)
    uri = f"{path.resolve().as_uri()}?immutable=1"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


class _SnapshotConnection(sqlite3.Connection):
    """A connection to a private copy of a database; closing it removes the copy."""

    cleanup: weakref.finalize[..., Any] | None = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.cleanup is not None:
                self.cleanup()


def _snapshot(path: Path, log: Path) -> sqlite3.Connection:
    """Open a private copy of `path` and its log (`pacore.io.snapshot`), read only."""
    copy = copy_with_log(path, log)
    try:
        db = sqlite3.connect(copy, check_same_thread=False, factory=_SnapshotConnection)
    except BaseException:
        shutil.rmtree(copy.parent, ignore_errors=True)
        raise
    db.cleanup = weakref.finalize(db, shutil.rmtree, copy.parent, True)
    db.execute("PRAGMA query_only=1")
    return db


def check_store_path(path: Path, *, inputs: Sequence[Path] = ()) -> None:
    """Refuse a `--store` the output guard refuses (a folder, a device, a FIFO, an input,
    an unwritable file) or that is not a trajectory store (`check_store`); read only."""
    from pacore.io.guard import check_output

    check_output(path, inputs=inputs, what="store")
    check_store(path)


def check_store(path: Path) -> bool:
    """Check, reading only, that `path` is a trajectory store or may become one; True when
    it is one already (marked, or an earlier pacore's), False when it is missing or empty.

    Nothing is written, no journal mode changes and no `-wal`/`-shm` file appears: the
    header is read as bytes and the table list through an immutable connection. Anything
    else (see the module docstring) is a one-line `ConfigError`.
    """
    header = _header(path)
    if header is None:
        return False
    application = int.from_bytes(header[68:72], "big")
    version = int.from_bytes(header[60:64], "big")
    if application not in (0, APPLICATION_ID):
        raise ConfigError(
            f"{path}: a SQLite database of another application (application_id "
            f"{application:#x}), not a trajectory store; name a new file"
        )
    if application == APPLICATION_ID:
        if version > STORE_FORMAT:
            raise ConfigError(
                f"{path}: a trajectory store of format {version}, written by a newer pacore "
                f"(this one reads format {STORE_FORMAT}); upgrade pacore"
            )
        return True
    tables = table_columns(path)
    if not tables:
        return False
    if set(tables) == {_TABLE} and tables[_TABLE] >= _KEY_COLUMNS:
        return True  # written by a pacore from before the mark: adopted on opening
    names = ", ".join(sorted(tables)[:5])
    raise ConfigError(
        f"{path}: a SQLite database that is not a trajectory store (it holds tables "
        f"{names}); name a new file"
    )


def _header(path: Path) -> bytes | None:
    """The 100-byte SQLite header of the file at `path`; None when there is no file or an
    empty one; a `ConfigError` for a folder, a FIFO, a device or a file that is not SQLite."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open the store ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path}: is a folder, not a trajectory store (name a file)")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: not a regular file, so not a trajectory store")
    if info.st_size == 0:
        return None
    try:
        with path.open("rb") as fh:
            header = fh.read(100)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the store ({exc.strerror})") from None
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise ConfigError(f"{path}: not a trajectory store (not a SQLite database)")
    return header


def table_columns(path: Path) -> dict[str, frozenset[str]]:
    """The tables of the SQLite file at `path` with their columns, read only."""
    try:
        db = connect_read_only(path)
        try:
            names = [
                str(row[0])
                for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            return {
                name: frozenset(
                    str(row[0])
                    for row in db.execute("SELECT name FROM pragma_table_info(?)", (name,))
                )
                for name in names
            }
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"{path}: not a readable SQLite database ({exc})") from None


IN_LIST = 900
"""The most samples one `get_many` query names (SQLite's oldest limit on the variables
of a statement is 999)."""


class TrajectoryStore:
    """A SQLite file of trajectories; safe to reopen after a crash (WAL journal)."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        """Open (or create) the store at `path`; a file that is not one is a `ConfigError`.

        `read_only` opens an existing store to read it only (`connect_read_only`): nothing
        is created, migrated or written, and `put` is not to be called.
        """
        self.path = Path(path)
        self.writes = 0
        self.hits = 0
        self.adopted = 0
        """Completions `put` found already stored under their key (another writer's)."""
        self._columns = _COLUMNS
        self._empty = False
        """The store held nothing when opened (to write), and no other connection has
        written it since, as far as `get_unwritten` last looked."""
        self._version = 0
        exists = check_store(self.path)
        if read_only:
            if not exists:
                raise ConfigError(f"{self.path}: no trajectory store there")
            try:
                self._db = connect_read_only(self.path)
                self._db.execute("SELECT 1 FROM trajectories LIMIT 1")
                if "discarded_tokens" not in _column_names(self._db):  # an earlier pacore's
                    self._columns = _COLUMNS.replace("discarded_tokens", "0")
            except sqlite3.Error as exc:
                raise ConfigError(f"{self.path}: not a readable trajectory store ({exc})") from None
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Another writer of the store holds its lock for one request's samples: wait.
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=60
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            _add_missing_columns(self._db)
            _mark(self._db)
            self._empty = self._db.execute("SELECT 1 FROM trajectories LIMIT 1").fetchone() is None
            self._version = self._data_version()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: not a usable trajectory store ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot open the store ({exc.strerror})") from None

    def get_many(self, keys: Sequence[Key]) -> dict[Key, Completion]:
        """The stored completions among `keys` (missing keys are absent)."""
        if not keys:
            return {}
        first = keys[0]
        same = all(
            (k.model, k.prompt, k.params) == (first.model, first.prompt, first.params) for k in keys
        )
        found: dict[Key, Completion] = {}
        if same:
            by_sample = {k.sample: k for k in keys}
            # At most `IN_LIST` a query: SQLite builds bound the variables of one statement
            # (999 on old ones), and a pool may be larger.
            for start in range(0, len(keys), IN_LIST):
                part = keys[start : start + IN_LIST]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT sample, {self._columns} FROM trajectories"
                    f" WHERE model=? AND prompt_hash=? AND params_hash=? AND sample IN ({marks})",
                    (first.model, first.prompt, first.params, *[k.sample for k in part]),
                ).fetchall()
                for row in rows:
                    found[by_sample[row[0]]] = _completion(row[1:])
        else:
            for k in keys:
                got = self.get_many([k])
                found.update(got)
        self.hits += len(found)
        return found

    def get_unwritten(self, keys: Sequence[Key]) -> dict[Key, Completion]:
        """`get_many` for keys this store object has not written itself (a run's later
        rounds, whose keys name the run): on a store that was empty when opened, and that
        no other connection has written since (SQLite's `data_version`), they cannot be
        there, and no query is made.

        Had the caller written one after all (two problems with the same prompt), it is
        sampled again and `put` keeps the first: what the key holds is the same either way.
        """
        if self._empty:
            if self._data_version() == self._version:
                return {}
            self._empty = False
        return self.get_many(keys)

    def _data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def put(self, key: Key, completion: Completion) -> Completion:
        """Store one successful completion now, unless the key holds one already; return
        what the key holds after the write (failed completions are not stored and come
        back as they are).

        The first completion stored under a key wins: another writer of the same store
        (a second evaluation) that sampled the key too gets the stored one back, and
        uses it instead of its own.
        """
        if completion.error is not None:
            return completion
        inserted = self._write(_INSERT, _row(key, completion))
        if inserted:
            self.writes += 1
            return completion
        stored = self._get(key)
        if stored is None:  # pragma: no cover - rows are never deleted
            raise StorageError(f"{self.path}: the trajectory store lost a row while writing it")
        self.adopted += 1
        return stored

    def _get(self, key: Key) -> Completion | None:
        """The completion stored under `key`, if any (not counted as a hit)."""
        row = self._db.execute(
            f"SELECT {self._columns} FROM trajectories"
            " WHERE model=? AND prompt_hash=? AND params_hash=? AND sample=?",
            (key.model, key.prompt, key.params, key.sample),
        ).fetchone()
        return None if row is None else _completion(row)

    def _write(self, sql: str, values: tuple[object, ...]) -> bool:
        """One write; True when it changed a row. A failure (a full disk, a file made
        read-only) is a `StorageError`, and the rows written before it stay in the store."""
        try:
            return self._db.execute(sql, values).rowcount > 0
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot write the trajectory store ({exc})") from None

    def put_many(self, items: Iterable[tuple[Key, Completion]]) -> list[Completion]:
        """`put` each (key, completion) in one transaction (the samples of one request
        are committed together: one commit instead of n); what each key holds
        afterwards, in order. No await happens inside, so the write lock is never held
        across the event loop."""
        items = list(items)
        if len(items) < 2:
            return [self.put(key, completion) for key, completion in items]
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot write the trajectory store ({exc})") from None
        try:
            kept = self._put_locked(items)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot write the trajectory store ({exc})") from None
        return kept

    def _put_locked(self, items: list[tuple[Key, Completion]]) -> list[Completion]:
        """`put` each item, inside the caller's write transaction: all inserted in one
        statement when none of the keys is held (a request's samples share their model,
        prompt and parameters), else the keys already held are read in one query and the
        rest inserted (other batches go one by one)."""
        first = items[0][0]
        if any((k.model, k.prompt, k.params) != (first.model, first.prompt, first.params)
               or c.error is not None for k, c in items):  # fmt: skip
            return [self.put(key, completion) for key, completion in items]
        self._db.execute("SAVEPOINT put_many")
        try:
            inserted = self._db.executemany(_INSERT, [_row(key, c) for key, c in items]).rowcount
            if inserted == len(items):  # none was held: no read needed
                self._db.execute("RELEASE put_many")
                self.writes += inserted
                return [c for _, c in items]
            self._db.execute("ROLLBACK TO put_many")
            self._db.execute("RELEASE put_many")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot write the trajectory store ({exc})") from None
        held = self.get_many([key for key, _ in items])
        self.hits -= len(held)  # read to write, not a hit
        new = [(key, c) for key, c in items if key not in held]
        if len(new) != len(set(key for key, _ in new)):  # one key twice: the first wins
            return [self.put(key, completion) for key, completion in items]
        try:
            self._db.executemany(_INSERT, [_row(key, c) for key, c in new])
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot write the trajectory store ({exc})") from None
        self.writes += len(new)
        self.adopted += len(items) - len(new)
        return [held.get(key, c) for key, c in items]

    def count(self, model: str | None = None) -> int:
        """Stored trajectories, of one model or of all."""
        if model is None:
            row = self._db.execute("SELECT COUNT(*) FROM trajectories").fetchone()
        else:
            row = self._db.execute(
                "SELECT COUNT(*) FROM trajectories WHERE model=?", (model,)
            ).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the database; the store may not be used afterwards."""
        self._db.close()

    def __enter__(self) -> TrajectoryStore:
        """The store itself, closed on leaving the block."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the store."""
        self.close()


_INSERT = (
    "INSERT OR IGNORE INTO trajectories (model, prompt_hash, params_hash, sample, text,"
    " reasoning, finish_reason, prompt_tokens, completion_tokens, reasoning_tokens,"
    " estimated, latency_s, endpoint, created, discarded_tokens)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _row(key: Key, completion: Completion) -> tuple[object, ...]:
    """The values `_INSERT` writes for one completion."""
    u = completion.usage
    return (
        key.model,
        key.prompt,
        key.params,
        key.sample,
        completion.text,
        completion.reasoning,
        completion.finish_reason,
        u.prompt_tokens,
        u.completion_tokens,
        u.reasoning_tokens,
        int(u.estimated),
        completion.latency_s,
        completion.endpoint,
        time.time(),
        u.discarded_tokens,
    )


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a store written by an earlier pacore up to the current schema."""
    if "discarded_tokens" not in _column_names(db):
        db.execute(
            "ALTER TABLE trajectories ADD COLUMN discarded_tokens INTEGER NOT NULL DEFAULT 0"
        )


def _column_names(db: sqlite3.Connection) -> set[str]:
    return {str(row[1]) for row in db.execute("PRAGMA table_info(trajectories)")}


def _mark(db: sqlite3.Connection) -> None:
    """Mark the file as a store of this format (a new one, or one of an earlier pacore)."""
    marked = db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    if not marked or db.execute("PRAGMA user_version").fetchone()[0] != STORE_FORMAT:
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute(f"PRAGMA user_version={STORE_FORMAT}")


def _completion(row: Sequence[object]) -> Completion:
    text, reasoning, finish, prompt, completion, rtok, estimated, latency, endpoint, lost = row
    return Completion(
        text=str(text),
        reasoning=None if reasoning is None else str(reasoning),
        finish_reason=None if finish is None else str(finish),
        usage=Usage(
            prompt_tokens=int(prompt),  # type: ignore[call-overload]
            completion_tokens=int(completion),  # type: ignore[call-overload]
            reasoning_tokens=None if rtok is None else int(rtok),  # type: ignore[call-overload]
            estimated=bool(estimated),
            discarded_tokens=int(lost),  # type: ignore[call-overload]
        ),
        latency_s=float(latency),  # type: ignore[arg-type]
        endpoint=None if endpoint is None else str(endpoint),
    )
