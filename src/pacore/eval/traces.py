"""Traces: what each (problem, method, run) of an evaluation did, round by round.

`results.jsonl` holds a run's grades; `traces.sqlite`, next to it, holds what `pacore
view` shows of the run itself: for every round, each trajectory's status, tokens,
compacted message, answer and grade, and where its full text lives in the trajectory
store; and the prompt each round was sent (kept once per distinct prompt). Full texts
are not copied: the view reads them from the store, and only when a card is opened.

    traces(id, method, run, trace)   the run's `Trace` as JSON; rewritten on a rerun
    prompts(hash, messages)          a prompt's chat messages, by the store's prompt hash
    meta(key, value)                 `store`: the trajectory store the keys point into

The runner writes a run's trace just before its results line, so a line never lacks
its trace; an older folder, written before traces, simply has none (the view then shows
the grades alone).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pacore.core.compaction import full_text
from pacore.errors import ConfigError, StorageError
from pacore.io import formats
from pacore.io.formats import FORMAT_KEY
from pacore.pool import Issued
from pacore.store import Key, TrajectoryStore, connect_read_only, prompt_hash, table_columns
from pacore.types import Message, RoundResult, Trajectory

TRACES = "traces.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    id TEXT NOT NULL, method TEXT NOT NULL, run INTEGER NOT NULL, trace TEXT NOT NULL,
    PRIMARY KEY (id, method, run)
);
CREATE TABLE IF NOT EXISTS prompts (hash TEXT PRIMARY KEY, messages TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
"""`traces` and `prompts` are rowid tables, their keys indexes beside them: a trace or a
prompt is kilobytes, which SQLite keeps poorly in a key-ordered (`WITHOUT ROWID`) table
(a batch of 3 KB traces writes in half the time). A file made by an earlier pacore has
key-ordered tables and is read and written the same way."""


@dataclass(frozen=True)
class CardTrace:
    """One trajectory of a round."""

    index: int
    attempt: int
    status: str
    tokens: int
    """Tokens it generated (those of a cut attempt included)."""
    message: str
    """The compacted message: what the next round was given."""
    chars: int
    """The length of its full text, in characters."""
    sample: str | None
    """Its sample key in the store (with the round's prompt and parameters); None when
    the store holds no text for it (a failed request)."""
    error: str | None = None
    grade: int | None = None
    """Its place among the round's graded messages (None: not graded)."""
    answer: str | None = None
    correct: bool | None = None
    whole: bool = False
    """The message is the whole text (`full` compaction, `nomp`): the JSON form leaves it
    out, and readers take the text from the store."""

    def with_grade(self, answer: str | None, correct: bool | None) -> CardTrace:
        """The card with its answer and grade.

        A copy of its fields (`copy.copy`'s way): the constructor of a frozen dataclass
        costs four times as much, and an evaluation grades tens of cards per run.
        """
        card = object.__new__(CardTrace)
        fields = card.__dict__
        fields.update(self.__dict__)
        fields["answer"], fields["correct"] = answer, correct
        return card

    def to_json(self) -> dict[str, Any]:
        """The JSON form (`grade` is only needed before grading and is left out)."""
        return {
            "index": self.index,
            "attempt": self.attempt,
            "status": self.status,
            "tokens": self.tokens,
            "message": "" if self.whole else self.message,
            "whole": self.whole,
            "chars": self.chars,
            "sample": self.sample,
            "error": self.error,
            "answer": self.answer,
            "correct": self.correct,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CardTrace:
        """A card from its JSON form."""
        correct = data.get("correct")
        return cls(
            index=int(data.get("index") or 0),
            attempt=int(data.get("attempt") or 0),
            status=str(data.get("status") or ""),
            tokens=int(data.get("tokens") or 0),
            message=str(data.get("message") or ""),
            chars=int(data.get("chars") or 0),
            sample=_str(data.get("sample")),
            error=_str(data.get("error")),
            answer=_str(data.get("answer")),
            correct=None if correct is None else bool(correct),
            whole=bool(data.get("whole")),
        )


@dataclass(frozen=True)
class RoundTrace:
    """One round: where its texts are stored, and its trajectories (final slots first,
    in index order, then the attempts they replaced)."""

    round: int
    width: int
    references: int
    """How many messages of the previous round its prompt carried."""
    prompt: str
    """The store's hash of the prompt it was sent (the key of the `prompts` table)."""
    params: str
    cards: tuple[CardTrace, ...]
    messages: tuple[Message, ...] = ()
    """The prompt itself: written to the `prompts` table, not into the trace."""

    def to_json(self) -> dict[str, Any]:
        """The JSON form, without the prompt's messages."""
        return {
            "round": self.round,
            "width": self.width,
            "references": self.references,
            "prompt": self.prompt,
            "params": self.params,
            "cards": [c.to_json() for c in self.cards],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoundTrace:
        """A round from its JSON form."""
        return cls(
            round=int(data.get("round") or 0),
            width=int(data.get("width") or 0),
            references=int(data.get("references") or 0),
            prompt=str(data.get("prompt") or ""),
            params=str(data.get("params") or ""),
            cards=tuple(CardTrace.from_json(c) for c in _dicts(data.get("cards"))),
        )


@dataclass(frozen=True)
class Trace:
    """Every round of one run."""

    model: str
    rounds: tuple[RoundTrace, ...]
    final: tuple[int, int] | None = None
    """(round, card) of the trajectory whose conclusion is the graded answer, when it
    is one of the cards (the final synthesis; self-consistency's winner)."""

    def key(self, round_number: int, card: int) -> Key | None:
        """The store key of a card's full text (None when there is none)."""
        if not 1 <= round_number <= len(self.rounds):
            return None
        rnd = self.rounds[round_number - 1]
        if not 0 <= card < len(rnd.cards) or rnd.cards[card].sample is None:
            return None
        return Key(self.model, rnd.prompt, rnd.params, str(rnd.cards[card].sample))

    def graded(
        self,
        round_grades: Sequence[Sequence[bool | None]],
        final: bool | None,
        extract: Callable[[str], str | None],
    ) -> Trace:
        """The trace with each card's answer (`extract`) and grade: the k-th graded
        message of round r takes `round_grades[r - 1][k]`, the final answer `final`."""
        # Built field by field: `dataclasses.replace` costs several times a constructor
        # (and cards are copied, `CardTrace.with_grade`): an evaluation grades a trace
        # per run, tens of cards each.
        rounds = []
        for number, rnd in enumerate(self.rounds, 1):
            grades = round_grades[number - 1] if number <= len(round_grades) else ()
            cards = []
            for i, c in enumerate(rnd.cards):
                correct = None
                if c.grade is not None and c.grade < len(grades):
                    correct = grades[c.grade]
                if self.final == (number, i):
                    correct = final
                answer = extract(c.message) if c.message.strip() else None
                cards.append(c.with_grade(answer, correct))
            rounds.append(
                RoundTrace(
                    round=rnd.round, width=rnd.width, references=rnd.references,
                    prompt=rnd.prompt, params=rnd.params, cards=tuple(cards),
                    messages=rnd.messages,
                )
            )  # fmt: skip
        return Trace(model=self.model, rounds=tuple(rounds), final=self.final)

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "model": self.model,
            "final": list(self.final) if self.final else None,
            "rounds": [r.to_json() for r in self.rounds],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Trace:
        """A trace from its JSON form (what a malformed one lacks is left empty)."""
        final = data.get("final")
        pair = None
        if isinstance(final, list) and len(final) == 2 and all(isinstance(x, int) for x in final):
            pair = (final[0], final[1])
        return cls(
            model=str(data.get("model") or ""),
            rounds=tuple(RoundTrace.from_json(r) for r in _dicts(data.get("rounds"))),
            final=pair,
        )


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# --------------------------------------------------------------------------- building


def _card(fields: dict[str, Any]) -> CardTrace:
    """A card from all of its fields by name, without the constructor: a frozen
    dataclass sets each field through `object.__setattr__`, four times the cost of
    this (`copy.copy`'s way), and an evaluation builds tens of cards per run."""
    card = object.__new__(CardTrace)
    card.__dict__.update(fields)
    return card


def _ranks(trajectories: Sequence[Trajectory]) -> dict[int, int]:
    """Each trajectory's place among its attempt's, by index (keyed by `id`)."""
    if all(t.attempt == 0 and t.index == i for i, t in enumerate(trajectories)):
        return {id(t): i for i, t in enumerate(trajectories)}  # nothing was resampled
    rank: dict[int, int] = {}
    by_attempt: dict[int, list[Trajectory]] = {}
    for t in sorted(trajectories, key=lambda t: (t.attempt, t.index)):
        by_attempt.setdefault(t.attempt, []).append(t)
    for group in by_attempt.values():
        rank.update({id(t): j for j, t in enumerate(group)})
    return rank


def build_trace(
    rounds: Sequence[RoundResult],
    issued: Mapping[tuple[int, int], Issued],
    graded: Callable[[RoundResult], Sequence[Trajectory]],
    *,
    final: tuple[int, int] | None = None,
) -> Trace:
    """The trace of an engine run, from its rounds and the sampler's store keys.

    `graded(rnd)` lists the trajectories of `rnd` whose messages were graded, in the
    order their grades come; `final` is the (round, card) of the graded answer.
    """
    model = next((i.model for i in issued.values()), "")
    out = []
    for rnd in rounds:
        order = {id(t): k for k, t in enumerate(graded(rnd))}
        # The j-th trajectory of attempt a, by index, is the j-th completion that
        # attempt's request returned (the engine resamples slots in index order).
        rank = _ranks(rnd.trajectories)
        first = issued.get((rnd.round, 0))
        requests = {0: first}
        cards = []
        for t in rnd.trajectories:
            attempt = t.attempt
            if attempt in requests:
                request = requests[attempt]
            else:
                request = requests[attempt] = issued.get((rnd.round, attempt))
            j = rank[id(t)]
            sample = request.samples[j] if request and j < len(request.samples) else None
            stored = sample is not None and t.error is None
            # Every field, as the constructor would set them (`_card`: a fraction of its cost).
            card = {
                "index": t.index,
                "attempt": attempt,
                "status": t.status,
                "tokens": t.usage.generated,
                "message": t.message,
                "chars": len(t.text),
                "sample": sample if stored else None,
                "error": t.error,
                "grade": order.get(id(t)),
                "answer": None,
                "correct": None,
                "whole": stored and bool(t.message) and t.message == t.text,
            }
            cards.append(_card(card))
        out.append(
            RoundTrace(
                round=rnd.round,
                width=rnd.width,
                references=rnd.references,
                prompt=first.prompt if first else prompt_hash(rnd.prompt),
                params=first.params if first else "",
                cards=tuple(cards),
                messages=rnd.prompt,
            )
        )
    return Trace(model, tuple(out), final)


# --------------------------------------------------------------------------- the file


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    if read_only:  # the view's: opened before its server's thread starts
        return connect_read_only(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    return db


def _dumps(value: object) -> str:
    """JSON text (orjson, several times faster; the stdlib for what it refuses, such as a
    lone surrogate or an integer past 64 bits)."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value)  # escaped: a lone surrogate cannot be stored as UTF-8


def _check_format(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a traces file of a newer format (its `meta` row `format`)."""
    row = db.execute("SELECT value FROM meta WHERE key=?", (FORMAT_KEY,)).fetchone()
    formats.TRACES.version_of(row[0] if row else None, str(path))


_COLUMNS = {
    "traces": frozenset({"id", "method", "run", "trace"}),
    "prompts": frozenset({"hash", "messages"}),
    "meta": frozenset({"key", "value"}),
}
"""The tables a traces file holds and the columns each must have."""


def check_traces(path: Path) -> None:
    """Refuse, reading only and before anything is written, a file at `path` that is
    not a traces file: not SQLite, or a SQLite database with other tables (a missing or
    empty file, or a traces file of any layout, passes). A `ConfigError`, the file
    untouched."""
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the traces file ({exc.strerror})") from None
    if not head:
        return
    if head != b"SQLite format 3\x00":
        raise ConfigError(f"{path}: not a traces file (not a SQLite database); move it away")
    tables = table_columns(path)
    foreign = sorted(
        name for name, cols in tables.items() if name not in _COLUMNS or not _COLUMNS[name] <= cols
    )
    if foreign:
        raise ConfigError(
            f"{path}: a SQLite database that is not a traces file (it holds tables "
            f"{', '.join(foreign[:5])}); move it away"
        )


WRITTEN_PROMPTS = 4096
"""Prompt hashes a `TraceFile` remembers having written, then it starts over."""


class TraceFile:
    """`traces.sqlite`, open to write (the eval runner's); its `meta` table says its
    format (`pacore.traces/1`)."""

    def __init__(self, path: Path, store: Path) -> None:
        """Open (or create) the file at `path`; `store` is where the texts are kept."""
        self.path = path
        self._written: set[str] = set()
        """Hashes of prompts this file wrote (committed), lately: not written again."""
        check_traces(path)
        try:
            self._db = _connect(path, read_only=False)
            _check_format(self._db, path)
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("store", str(store.resolve())), (FORMAT_KEY, formats.TRACES.tag)],
            )
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{path}: not a usable traces file ({exc})") from None

    def put(self, record_key: tuple[str, str, int], trace: Trace) -> None:
        """Write one run's trace (replacing an earlier one) and the prompts it names."""
        self.put_many([(record_key, trace)])

    def put_many(self, items: Sequence[tuple[tuple[str, str, int], Trace]]) -> None:
        """Write several runs' traces and their prompts in one transaction.

        A prompt is written once: every run of a problem names its round-1 prompt, and
        the hashes of the prompts this file wrote lately are remembered (bounded) so
        they are neither encoded nor sent again.
        """
        prompts: dict[str, tuple[Message, ...]] = {}
        for _, trace in items:
            for rnd in trace.rounds:
                if rnd.messages and rnd.prompt not in self._written:
                    prompts.setdefault(rnd.prompt, rnd.messages)
        rows = [
            (problem, method, run, _dumps(trace.to_json()))
            for (problem, method, run), trace in items
        ]
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO prompts (hash, messages) VALUES (?, ?)",
                [(h, _dumps(list(messages))) for h, messages in prompts.items()],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO traces (id, method, run, trace) VALUES (?, ?, ?, ?)", rows
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StorageError(f"{self.path}: cannot write a trace ({exc})") from None
        if len(self._written) + len(prompts) > WRITTEN_PROMPTS:
            self._written.clear()
        self._written.update(prompts)

    def close(self) -> None:
        """Close the file."""
        self._db.close()


class TraceReader:
    """`traces.sqlite` and the trajectory store it names, open read-only (the view's).

    Every lookup answers None when what it asks for is not there, and a file that
    cannot be read is a `ConfigError` when opened.
    """

    def __init__(self, path: Path) -> None:
        """Open `path` read-only, as a private snapshot while a log is beside it
        (`pacore.store.connect_read_only`): nothing is written beside it."""
        self.path = path
        try:
            self._db = _connect(path, read_only=True)
        except sqlite3.Error as exc:
            raise ConfigError(f"{path}: not a readable traces file ({exc})") from None
        try:
            _check_format(self._db, path)
            row = self._db.execute("SELECT value FROM meta WHERE key='store'").fetchone()
        except sqlite3.Error as exc:
            self._db.close()
            raise ConfigError(f"{path}: not a readable traces file ({exc})") from None
        except ConfigError:
            self._db.close()
            raise
        # The store named at write time, or the folder's own one when the folder moved.
        named = Path(row[0]) if row else None
        local = path.parent / "trajectories.sqlite"
        self.store_path = named if named is not None and named.exists() else local
        self._store: TrajectoryStore | None = None

    def trace(self, problem: str, method: str, run: int) -> Trace | None:
        """One run's trace, or None."""
        try:
            row = self._db.execute(
                "SELECT trace FROM traces WHERE id=? AND method=? AND run=?",
                (problem, method, run),
            ).fetchone()
            data = json.loads(row[0]) if row else None
        # RecursionError: nested too deeply; OverflowError: a run number past SQLite's
        except (sqlite3.Error, ValueError, RecursionError, OverflowError):
            return None
        try:
            return Trace.from_json(data) if isinstance(data, dict) else None
        except (ValueError, TypeError, OverflowError):  # a hand-edited or foreign row
            return None

    def unreadable(self) -> list[tuple[str, str, object]]:
        """The (id, method, run) of every trace row `trace` answers None for: not JSON,
        not an object, or not a trace; a `ConfigError` when the table cannot be read.

        SQLite picks out the rows that are not JSON objects in one pass over the file
        (no row is decoded in Python); only those are read here."""
        try:
            suspects = self._db.execute(
                "SELECT id, method, run FROM traces WHERE CASE WHEN json_valid(trace) "
                "THEN json_type(trace) != 'object' ELSE 1 END ORDER BY id, method, run"
            ).fetchall()
        except sqlite3.Error as exc:
            raise ConfigError(f"{self.path}: not a readable traces file ({exc})") from None
        return [  # a run that is not a number (a foreign row) is unreadable as it is
            (str(i), str(m), r)
            for i, m, r in suspects
            if type(r) is not int or self.trace(i, m, r) is None
        ]

    def prompt(self, digest: str) -> list[Message] | None:
        """The chat messages of a prompt, by hash, or None."""
        try:
            row = self._db.execute(
                "SELECT messages FROM prompts WHERE hash=?", (digest,)
            ).fetchone()
            data = json.loads(row[0]) if row else None
        except (sqlite3.Error, ValueError, RecursionError):  # RecursionError: nested too deeply
            return None
        return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else None

    def text(self, key: Key) -> str | None:
        """A trajectory's full text from the store (reasoning first, in `<think>`), or None."""
        try:
            if self._store is None:
                self._store = TrajectoryStore(self.store_path, read_only=True)
            found = self._store.get_many([key]).get(key)
        except (ConfigError, sqlite3.Error):
            return None
        return full_text(found) if found is not None else None

    def close(self) -> None:
        """Close both files."""
        self._db.close()
        if self._store is not None:
            self._store.close()
