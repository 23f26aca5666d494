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
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pacore.core.hashing import canonical_json, stable_hash
from pacore.errors import ConfigError, StorageError
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
) WITHOUT ROWID;
"""


def prompt_hash(messages: Sequence[Message]) -> str:
    """The store's key for an exact prompt (32 hex characters)."""
    return stable_hash(canonical_json(list(messages)), chars=32)


def params_hash(params: SamplingParams) -> str:
    """The store's key for the sampling parameters that shape the output (not the seed)."""
    shape = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "max_tokens": params.max_tokens,
        "extra_body": params.extra_body,
    }
    # ASCII-escaped, as written since the first store: the keys must not move.
    return stable_hash(canonical_json(shape, ensure_ascii=True), chars=16)


@dataclass(frozen=True)
class Key:
    """Where one trajectory lives in the store."""

    model: str
    prompt: str
    params: str
    sample: str


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the SQLite file at `path`, usable from any thread.

    A file closed cleanly has no write-ahead log: it is read as immutable, which leaves no
    `-wal`/`-shm` files behind. With a log (a writer at work, or one that was killed),
    read-only mode reads the log too.
    """
    wal = path.with_name(path.name + "-wal").exists()
    uri = f"{path.resolve().as_uri()}?{'mode=ro' if wal else 'immutable=1'}"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


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
        if read_only:
            try:
                self._db = connect_read_only(self.path)
                self._db.execute("SELECT 1 FROM trajectories LIMIT 1")
            except sqlite3.Error as exc:
                raise ConfigError(f"{self.path}: not a readable trajectory store ({exc})") from None
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            _add_missing_columns(self._db)
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
            marks = ",".join("?" * len(keys))
            rows = self._db.execute(
                "SELECT sample, text, reasoning, finish_reason, prompt_tokens, completion_tokens,"
                " reasoning_tokens, estimated, latency_s, endpoint, discarded_tokens"
                " FROM trajectories"
                f" WHERE model=? AND prompt_hash=? AND params_hash=? AND sample IN ({marks})",
                (first.model, first.prompt, first.params, *[k.sample for k in keys]),
            ).fetchall()
            by_sample = {k.sample: k for k in keys}
            for row in rows:
                found[by_sample[row[0]]] = _completion(row[1:])
        else:
            for k in keys:
                got = self.get_many([k])
                found.update(got)
        self.hits += len(found)
        return found

    def put(self, key: Key, completion: Completion) -> None:
        """Store one successful completion now (failed ones are not stored)."""
        if completion.error is not None:
            return
        u = completion.usage
        self._write(
            "INSERT OR REPLACE INTO trajectories (model, prompt_hash, params_hash, sample, text,"
            " reasoning, finish_reason, prompt_tokens, completion_tokens, reasoning_tokens,"
            " estimated, latency_s, endpoint, created, discarded_tokens)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
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
            ),
        )
        self.writes += 1

    def _write(self, sql: str, values: tuple[object, ...]) -> None:
        """One write; a failure (a full disk, a file made read-only) is a `StorageError`,
        and the rows written before it stay in the store."""
        try:
            self._db.execute(sql, values)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot write the trajectory store ({exc})") from None

    def put_many(self, items: Iterable[tuple[Key, Completion]]) -> None:
        """`put` each (key, completion)."""
        for key, completion in items:
            self.put(key, completion)

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


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a store written by an earlier pacore up to the current schema."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(trajectories)")}
    if "discarded_tokens" not in columns:
        db.execute(
            "ALTER TABLE trajectories ADD COLUMN discarded_tokens INTEGER NOT NULL DEFAULT 0"
        )


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
