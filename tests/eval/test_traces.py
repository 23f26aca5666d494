"""Traces: every card of every round names its own text in the store, with its grade.

A backend numbers each completion it returns, so a card whose store key pointed at
another trajectory's text would show it at once; some calls fail (retryably), so the
engine resamples slots and the replaced attempts must keep their own keys too.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pacore.backends.base import ProgressCallback, RequestCounter, TextCallback
from pacore.config import PacoreConfig
from pacore.core.compaction import conclusion
from pacore.errors import ConfigError, ServerError, StorageError
from pacore.eval.datasets import Sample
from pacore.eval.methods import parse_method
from pacore.eval.records import RunRecord
from pacore.eval.runner import Evaluation, SilentProgress
from pacore.eval.traces import TRACES, CardTrace, RoundTrace, Trace, TraceFile, TraceReader
from pacore.graders import get_grader
from pacore.store import Key
from pacore.types import Completion, Message, SamplingParams, Usage

GOLD = "7"


class NumberedBackend:
    """Every completion is unique (`#k`); the calls numbered in `fail` fail retryably."""

    name = "numbered"

    def __init__(self, fail: set[int], streamed_before_failing: int = 0) -> None:
        self.fail = fail
        self.calls = 0
        self.serial = itertools.count()
        self.streamed = streamed_before_failing
        """Tokens each failed sample had generated (a stream cut after that many)."""
        self.generated = 0
        """Every token this backend generated, failed samples' included."""

    async def start(self) -> None:
        return None

    async def complete(
        self,
        messages: Sequence[Message],
        n: int,
        params: SamplingParams,
        *,
        affinity: str | None = None,
        on_tokens: ProgressCallback | None = None,
        counter: RequestCounter | None = None,
        on_text: TextCallback | None = None,
    ) -> list[Completion]:
        self.calls += 1
        if self.calls in self.fail:
            self.generated += self.streamed * n
            error = ServerError("HTTP 500: boom", retryable=True)
            return [Completion.failed(error, discarded_tokens=self.streamed) for _ in range(n)]
        out = []
        for _ in range(n):
            k = next(self.serial)
            answer = GOLD if k % 3 == 0 else str(100 + k)
            text = f"#{k} so the answer is \\boxed{{{answer}}}."
            usage = Usage(5, 3 + k % 4)
            self.generated += usage.generated
            out.append(Completion(text, reasoning=f"think {k}", finish_reason="stop", usage=usage))
        return out

    async def aclose(self) -> None:
        return None


def evaluate(
    tmp_path: Path,
    methods: list[str],
    fail: set[int],
    runs: int = 1,
    backend: NumberedBackend | None = None,
) -> Path:
    out = tmp_path / "out"
    samples = [Sample(id="p", messages=({"role": "user", "content": "Q?"},), answer=GOLD)]
    evaluation = Evaluation(
        samples=samples,
        methods=[parse_method(m) for m in methods],
        backend=backend or NumberedBackend(fail),
        model="m",
        config=PacoreConfig(on_failure="resample", seed=1),
        grader=get_grader("math"),
        out_dir=out,
        dataset_name="d",
        runs=runs,
        pool_size=6,
        plots=False,
    )
    import asyncio

    asyncio.run(evaluation.run())
    return out


def results(out: Path) -> dict[tuple[str, int], dict[str, Any]]:
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return {(r["method"], r["run"]): r for r in lines}


def test_every_card_names_its_own_text_and_grade(tmp_path: Path) -> None:
    # Call 1 fills the pool; call 2 is round 2's first attempt: it fails, both slots
    # are resampled (call 3), then the final synthesis (call 4).
    out = evaluate(tmp_path, ["pacore:4,2"], fail={2})
    record = results(out)[("pacore:4,2", 0)]
    reader = TraceReader(out / TRACES)
    trace = reader.trace("p", "pacore:4,2", 0)
    assert trace is not None
    assert [(r.round, r.width, r.references) for r in trace.rounds] == [
        (1, 4, 0),
        (2, 2, 4),
        (3, 1, 2),
    ]
    second = trace.rounds[1]
    assert [(c.index, c.attempt, c.status) for c in second.cards] == [
        (0, 1, "ok"), (1, 1, "ok"), (0, 0, "error"), (1, 0, "error"),
    ]  # fmt: skip
    assert all(c.sample is None and "boom" in (c.error or "") for c in second.cards[2:])
    assert [c.sample for c in second.cards[:2]] == [
        "pacore:4,2/run0/r2/a1/0", "pacore:4,2/run0/r2/a1/1",
    ]  # fmt: skip
    numbers = set()
    for r, rnd in enumerate(trace.rounds, 1):
        for i, card in enumerate(rnd.cards):
            key = trace.key(r, i)
            if card.sample is None:
                assert key is None
                continue
            text = reader.text(key) if key else None
            assert text is not None
            assert conclusion(text) == card.message
            assert len(text) == card.chars
            numbers.add(card.message.split()[0])
            assert card.answer == card.message.split("{")[1].split("}")[0]
            assert card.correct is (card.answer == GOLD)
    assert len(numbers) == 4 + 2 + 1  # every card a different trajectory
    assert trace.rounds[-1].cards[0].correct is record["correct"]
    assert [c.correct for c in trace.rounds[0].cards] == record["round_correct"][0]
    # Each synthesis prompt holds the messages passed on, in the order they were shown.
    for before, rnd in zip(trace.rounds, trace.rounds[1:], strict=False):
        prompt = reader.prompt(rnd.prompt)
        assert prompt is not None
        shown = prompt[-1]["content"]
        passed = [c.message for c in before.cards[: before.width] if c.status == "ok"]
        assert all(m in shown for m in passed)
    assert reader.prompt(trace.rounds[0].prompt) == [{"role": "user", "content": "Q?"}]
    reader.close()


def test_a_failed_pool_sample_counts_what_it_generated(tmp_path: Path) -> None:
    """A pool request cut mid-stream generated tokens before it failed: the run that draws
    its slots counts them, as `pacore run` counts a failed attempt (they were dropped:
    the slot became a new failed completion of 0 tokens). One method, one run drawing
    the whole pool: every sample the backend returned is used once, so the run spent
    all it generated."""
    backend = NumberedBackend({1}, streamed_before_failing=40)
    out = evaluate(tmp_path, ["pacore:6"], fail={1}, backend=backend)
    record = results(out)[("pacore:6", 0)]
    assert record["status"] == "ok"
    assert record["ttc_tokens"] == backend.generated
    assert backend.generated > 6 * 40  # the failed samples' part is in it


def test_a_pool_failure_is_resampled_under_the_runs_own_key(tmp_path: Path) -> None:
    # sc:3 asks for the pool first and its call fails: its slots are resampled under
    # its own keys. pacore:3 comes next and fills the pool again (call 2).
    out = evaluate(tmp_path, ["sc:3", "pacore:3"], fail={1})
    reader = TraceReader(out / TRACES)
    sc, pacore = reader.trace("p", "sc:3", 0), reader.trace("p", "pacore:3", 0)
    assert sc is not None
    assert pacore is not None
    first = sc.rounds[0]
    assert [c.attempt for c in first.cards] == [1, 1, 1, 0, 0, 0]
    assert [c.sample for c in first.cards] == [f"sc:3/run0/r1/a1/{i}" for i in range(3)] + [
        None
    ] * 3
    assert all("HTTP 500: boom" in (c.error or "") for c in first.cards[3:])  # the real reason
    assert all((c.sample or "").startswith("pool/") for c in pacore.rounds[0].cards)
    for trace in (sc, pacore):
        for i, card in enumerate(trace.rounds[0].cards[:3]):
            key = trace.key(1, i)
            assert key is not None
            assert conclusion(reader.text(key) or "") == card.message
    assert sc.final is not None
    winner = first.cards[sc.final[1]]
    assert winner.correct is results(out)[("sc:3", 0)]["correct"] is True
    reader.close()


EARLIER_LAYOUT = """
CREATE TABLE traces (
    id TEXT NOT NULL, method TEXT NOT NULL, run INTEGER NOT NULL, trace TEXT NOT NULL,
    PRIMARY KEY (id, method, run)
) WITHOUT ROWID;
CREATE TABLE prompts (hash TEXT PRIMARY KEY, messages TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
"""The key-ordered tables pacore made until traces became rowid tables."""


@pytest.mark.parametrize("layout", ["new", "earlier"])
def test_a_rerun_replaces_a_trace_and_keeps_prompts_once(tmp_path: Path, layout: str) -> None:
    """In a new file and in one of the layout an earlier pacore made (key-ordered
    tables): a key's trace is replaced, not written twice, and a prompt is kept once."""
    if layout == "earlier":
        (tmp_path / "out").mkdir()
        with sqlite3.connect(tmp_path / "out" / TRACES) as db:
            db.executescript(EARLIER_LAYOUT)
    out = evaluate(tmp_path, ["pacore:2"], fail=set(), runs=2)
    with sqlite3.connect(out / TRACES) as db:
        ddl = db.execute("SELECT sql FROM sqlite_master WHERE name='traces'").fetchone()[0]
        first = dict(db.execute("SELECT run, trace FROM traces").fetchall())
    assert ("WITHOUT ROWID" in ddl) == (layout == "earlier")  # the file keeps its layout
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text(lines[0] + "\n")  # run 1 is done again
    with sqlite3.connect(out / TRACES) as db:  # what the rerun must replace
        db.execute("UPDATE traces SET trace='{}' WHERE run=1")
    evaluate(tmp_path, ["pacore:2"], fail=set(), runs=2)
    with sqlite3.connect(out / TRACES) as db:
        assert db.execute("SELECT COUNT(*) FROM traces").fetchone() == (2,)
        again = dict(db.execute("SELECT run, trace FROM traces").fetchall())
    assert again == first  # run 1's trace written again over the row that stood there
    reader = TraceReader(out / TRACES)
    trace = reader.trace("p", "pacore:2", 1)
    assert trace is not None
    assert trace.to_json() == json.loads(again[1])
    reader.close()
    with sqlite3.connect(out / TRACES) as db:
        # Round 1's prompt is the question for both runs: stored once.
        assert db.execute("SELECT COUNT(*) FROM prompts").fetchone() == (3,)


def test_graded_maps_grades_by_place_and_the_final_by_position() -> None:
    def card(i: int, message: str, grade: int | None) -> CardTrace:
        return CardTrace(i, 0, "ok", 1, message, 10, f"s{i}", grade=grade)

    rnd = RoundTrace(
        1, 3, 0, "h", "q", (card(0, "\\boxed{1}", 1), card(1, "", None), card(2, "\\boxed{2}", 0))
    )
    final = RoundTrace(2, 1, 2, "h2", "q", (card(0, "\\boxed{2}", None),))
    trace = Trace("m", (rnd, final), final=(2, 0)).graded([(True, False)], True, lambda m: m[7:8])
    assert [(c.answer, c.correct) for c in trace.rounds[0].cards] == [
        ("1", False),
        (None, None),
        ("2", True),
    ]
    assert trace.rounds[1].cards[0].correct is True
    again = Trace.from_json(json.loads(json.dumps(trace.to_json())))
    assert again.rounds[0].cards == tuple(
        c.__class__(**{**c.__dict__, "grade": None}) for c in trace.rounds[0].cards
    )
    assert again.key(1, 2) == Key("m", "h", "q", "s2")
    assert again.key(1, 3) is None
    assert again.key(3, 0) is None
    assert Trace.from_json({"rounds": "x", "final": [1]}) == Trace("", (), None)


def test_the_reader_opens_read_only_and_says_what_it_lacks(tmp_path: Path) -> None:
    out = evaluate(tmp_path, ["pacore:2"], fail=set())
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    reader = TraceReader(out / TRACES)
    assert reader.trace("p", "pacore:2", 9) is None
    assert reader.prompt("nope") is None
    assert reader.text(Key("m", "x", "y", "z")) is None
    reader.close()
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # A folder moved elsewhere finds its own store.
    moved = tmp_path / "moved"
    out.rename(moved)
    (tmp_path / "out").mkdir()
    reader = TraceReader(moved / TRACES)
    trace = reader.trace("p", "pacore:2", 0)
    key = trace.key(1, 0) if trace else None
    assert key is not None
    assert reader.text(key)
    reader.close()
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not a database, just text" * 100)
    with pytest.raises(ConfigError, match=r"bad\.sqlite: not a readable traces file"):
        TraceReader(bad)


def test_a_trace_that_cannot_be_written_is_a_storage_error(tmp_path: Path) -> None:
    traces = TraceFile(tmp_path / TRACES, tmp_path / "s.sqlite")
    traces.close()
    traces = TraceFile(tmp_path / TRACES, tmp_path / "s.sqlite")
    traces._db.execute("PRAGMA query_only=ON")  # every write now fails, as on a full disk
    with pytest.raises(StorageError, match="cannot write a trace"):
        traces.put(("p", "m", 0), Trace("m", ()))
    traces.close()
    (tmp_path / "folder.sqlite").mkdir()
    with pytest.raises(ConfigError):
        TraceFile(tmp_path / "folder.sqlite", tmp_path / "s.sqlite")


def test_a_trace_is_readable_while_its_evaluation_still_writes(tmp_path: Path) -> None:
    writer = TraceFile(tmp_path / TRACES, tmp_path / "s.sqlite")
    writer.put(("p", "m", 0), Trace("m", (RoundTrace(1, 1, 0, "h", "q", ()),)))
    assert (tmp_path / (TRACES + "-wal")).exists()  # not checkpointed yet
    reader = TraceReader(tmp_path / TRACES)
    found = reader.trace("p", "m", 0)
    assert found is not None
    assert found.rounds[0].prompt == "h"
    reader.close()
    writer.close()


def test_a_malformed_trace_row_reads_as_no_trace(tmp_path: Path) -> None:
    writer = TraceFile(tmp_path / TRACES, tmp_path / "s.sqlite")
    writer.put(("p", "m", 0), Trace("m", ()))
    writer.close()
    with sqlite3.connect(tmp_path / TRACES) as db:
        db.execute("UPDATE traces SET trace = ?", ('{"rounds": [{"cards": [{"index": "x"}]}]}',))
    db.close()
    reader = TraceReader(tmp_path / TRACES)
    assert reader.trace("p", "m", 0) is None
    reader.close()


def test_unreadable_rows_are_named_in_key_order_whatever_the_write_order(tmp_path: Path) -> None:
    keys = [("q2", "sc:4", 1), ("q10", "single", 0), ("q2", "sc:4", 0), ("a", "z", 3)]
    writer = TraceFile(tmp_path / TRACES, tmp_path / "s.sqlite")
    for key in keys:  # written in this order, as jobs finish
        writer.put(key, Trace("m", ()))
    writer.close()
    with sqlite3.connect(tmp_path / TRACES) as db:
        db.execute("UPDATE traces SET trace = 'not json'")
    db.close()
    reader = TraceReader(tmp_path / TRACES)
    assert reader.unreadable() == sorted(keys)
    reader.close()


def test_rows_nested_too_deeply_read_as_nothing(tmp_path: Path) -> None:
    """A trace or prompt row nested past Python's parser (a tampered file) is no trace
    and no prompt, and is listed as unreadable: never a `RecursionError` in the view."""
    writer = TraceFile(tmp_path / TRACES, tmp_path / "s.sqlite")
    writer.put(("p", "m", 0), Trace("m", ()))
    writer.close()
    deep = "[" * 100_000 + "]" * 100_000
    with sqlite3.connect(tmp_path / TRACES) as db:
        db.execute("UPDATE traces SET trace = ?", (deep,))
        db.execute("INSERT INTO prompts (hash, messages) VALUES ('h', ?)", (deep,))
    db.close()
    reader = TraceReader(tmp_path / TRACES)
    assert reader.trace("p", "m", 0) is None
    assert reader.prompt("h") is None
    assert reader.unreadable() == [("p", "m", 0)]
    reader.close()


def test_a_whole_text_message_is_kept_once_in_the_store(tmp_path: Path) -> None:
    """nomp passes whole texts: its trace names them instead of holding a second copy,
    and the view reads them back from the store."""
    from pacore.view import data

    out = evaluate(tmp_path, ["nomp:2", "pacore:2"], fail=set())
    with sqlite3.connect(out / TRACES) as db:
        rows = dict(db.execute("SELECT method, trace FROM traces").fetchall())
    db.close()
    nomp, pacore = json.loads(rows["nomp:2"]), json.loads(rows["pacore:2"])
    first = nomp["rounds"][0]["cards"]
    assert [(c["whole"], c["message"]) for c in first] == [(True, "")] * 2
    assert all(c["answer"] for c in first)  # extracted before the message was left out
    assert not any(c["whole"] for c in pacore["rounds"][0]["cards"])
    loaded = data.load(out)
    view = next(v for v in data.problem_runs(loaded, "p") if v.row.method == "nomp:2")
    cards = view.rounds[0].cards
    assert all(c.preview.startswith("<think>think ") for c in cards)
    assert [c.answer for c in cards] == [c["answer"] for c in first]


def test_traces_say_their_format_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / TRACES
    TraceFile(path, tmp_path / "s.sqlite").close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='format'").fetchone() == (
        "pacore.traces/1",
    )
    db.execute("UPDATE meta SET value='pacore.traces/9' WHERE key='format'")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="written by a newer pacore"):
        TraceFile(path, tmp_path / "s.sqlite")
    with pytest.raises(ConfigError, match="written by a newer pacore"):
        TraceReader(path)


def test_graded_keeps_every_other_field_of_cards_rounds_and_trace() -> None:
    """`graded` builds its copies field by field: a field added later must be carried."""
    import dataclasses

    from pacore.eval.traces import CardTrace, RoundTrace, Trace

    def filled(cls: type, **fixed: object) -> object:
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            kind = str(f.type)
            if f.name in fixed:
                values[f.name] = fixed[f.name]
            elif kind.startswith("int"):
                values[f.name] = 3
            elif kind.startswith("bool"):
                values[f.name] = True
            else:
                values[f.name] = f"{f.name}!"
        return cls(**values)

    card = filled(CardTrace, grade=0, message="the answer is \\boxed{5}", answer=None)
    rnd = filled(RoundTrace, cards=(card,), messages=({"role": "user", "content": "q"},))
    trace = filled(Trace, rounds=(rnd,), final=None)
    assert isinstance(trace, Trace)
    out = trace.graded([[True]], None, lambda text: "5")
    assert (
        dataclasses.replace(trace.rounds[0].cards[0], answer="5", correct=True)
        == (out.rounds[0].cards[0])
    )
    assert dataclasses.replace(trace.rounds[0], cards=out.rounds[0].cards) == out.rounds[0]
    assert dataclasses.replace(trace, rounds=out.rounds) == out


@pytest.mark.parametrize("kind", ["binary", "foreign table", "foreign columns"])
def test_a_traces_file_that_is_not_ours_is_refused_untouched(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before anything is spent or written: one line, exit 2, every byte as it was."""
    from pacore.cli import main

    out = tmp_path / "out"
    out.mkdir()
    path = out / TRACES
    if kind == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    else:
        with sqlite3.connect(path) as db:
            table = "other (x)" if kind == "foreign table" else "traces (x)"
            db.execute(f"CREATE TABLE {table}")
            db.execute(f"INSERT INTO {table.split()[0]} VALUES (1)")
        db.close()
    before = path.read_bytes()
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "p", "question": "Q?", "answer": "1"}) + "\n")
    argv = ["eval", "--dataset", str(data), "--method", "single", "--out", str(out),
            "--backend", "http://127.0.0.1:9/v1", "--no-plots", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "not a traces file" in err
    assert "Traceback" not in err
    assert path.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [TRACES]  # nothing else written


class CountingProgress(SilentProgress):
    """What the runner tells a progress display at the start."""

    def __init__(self) -> None:
        self.started: list[tuple[int, int]] = []
        self.done = 0

    def start(self, total: int, already_done: int) -> None:
        self.started.append((total, already_done))

    def job_done(self, record: RunRecord) -> None:
        self.done += 1


def test_a_resume_counts_only_its_own_finished_jobs(tmp_path: Path) -> None:
    """The jobs are listed as they start (a plan of many runs never sits in memory
    whole); the count of finished ones a resume reports is that of its own plan, not of
    whatever else the folder holds (other methods, more runs)."""
    import asyncio

    evaluate(tmp_path, ["single", "sc:3"], fail=set(), runs=3)
    samples = [Sample(id="p", messages=({"role": "user", "content": "Q?"},), answer=GOLD)]
    progress = CountingProgress()
    again = Evaluation(
        samples=samples,
        methods=[parse_method("single"), parse_method("sc:2")],
        backend=NumberedBackend(set()),
        model="m",
        config=PacoreConfig(on_failure="resample", seed=1),
        grader=get_grader("math"),
        out_dir=tmp_path / "out",
        dataset_name="d",
        runs=4,
        pool_size=6,
        plots=False,
        progress=progress,
    )
    asyncio.run(again.run())
    # single ran 0..2 before (3 of its 4), sc:2 never: 8 jobs, 3 finished, 5 run now.
    assert progress.started == [(8, 3)]
    assert progress.done == 5
