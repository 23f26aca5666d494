"""Two writers of one trajectory store: what a run grades is the text kept under its key.

Two evaluations sharing a store sample the same pool keys at the same time. The fake
backends below hold every pool request until both evaluations have asked for it, so
both miss the store and both write: the race the store must settle the same way for
both (the first completion stored stays, the second writer takes it).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from pacore.backends.base import ProgressCallback, RequestCounter, TextCallback
from pacore.config import PacoreConfig
from pacore.core.compaction import conclusion
from pacore.eval.datasets import Sample
from pacore.eval.methods import parse_method
from pacore.eval.runner import Evaluation
from pacore.eval.traces import TRACES, TraceReader
from pacore.graders import get_grader
from pacore.store import APPLICATION_ID, STORE_FORMAT, Key, TrajectoryStore
from pacore.types import Completion, Message, SamplingParams, Usage
from tests.store_schemas import earlier_store_table

GOLD = "7"


class Rendezvous:
    """Where two backends meet: a pool request returns only once both have made it."""

    def __init__(self) -> None:
        self.arrived: dict[str, int] = {}
        self.changed = asyncio.Condition()

    async def meet(self, request: str) -> None:
        async with self.changed:
            self.arrived[request] = self.arrived.get(request, 0) + 1
            self.changed.notify_all()
            await self.changed.wait_for(lambda: self.arrived[request] >= 2)


class LabelledBackend:
    """Every completion names its backend and serial number, and has its own answer."""

    def __init__(self, label: str, rendezvous: Rendezvous) -> None:
        self.name = "m"
        self.label = label
        self.rendezvous = rendezvous
        self.serial = 0

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
        if affinity is not None and affinity.endswith(":pool"):
            await self.rendezvous.meet(f"{affinity}/{n}")
        out = []
        for _ in range(n):
            self.serial += 1
            k = self.serial
            answer = GOLD if k % 3 == 0 else f"{self.label}{k}"
            text = f"<think>{self.label} {k}</think>so the answer is \\boxed{{{answer}}}."
            out.append(Completion(text, finish_reason="stop", usage=Usage(5, 4)))
        return out

    async def aclose(self) -> None:
        return None


def evaluation(out: Path, store: Path, label: str, rendezvous: Rendezvous) -> Evaluation:
    samples = [
        Sample(id=f"p{i}", messages=({"role": "user", "content": f"Q{i}?"},), answer=GOLD)
        for i in range(3)
    ]
    return Evaluation(
        samples=samples,
        methods=[parse_method(m) for m in ("pacore:4", "sc:4", "single")],
        backend=LabelledBackend(label, rendezvous),
        model="m",
        config=PacoreConfig(seed=1),
        grader=get_grader("math"),
        out_dir=out,
        dataset_name="d",
        runs=2,
        pool_size=8,
        store_path=store,
        plots=False,
    )


async def both(tmp_path: Path) -> tuple[Path, Path, Path]:
    store = tmp_path / "shared.sqlite"
    rendezvous = Rendezvous()
    a, b = tmp_path / "a", tmp_path / "b"
    await asyncio.gather(
        evaluation(a, store, "A", rendezvous).run(), evaluation(b, store, "B", rendezvous).run()
    )
    assert set(rendezvous.arrived.values()) == {2}  # every pool was sampled by both
    return a, b, store


def test_two_evaluations_sharing_a_store_grade_the_texts_it_keeps(tmp_path: Path) -> None:
    a, b, store_path = asyncio.run(both(tmp_path))
    extract = get_grader("math").extract
    checked = 0
    with TrajectoryStore(store_path, read_only=True) as store:
        for out in (a, b):
            reader = TraceReader(out / TRACES)
            records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
            assert len(records) == 3 * 3 * 2
            for record in records:
                trace = reader.trace(record["id"], record["method"], record["run"])
                assert trace is not None
                for r, rnd in enumerate(trace.rounds, 1):
                    for i, card in enumerate(rnd.cards):
                        key = trace.key(r, i)
                        if key is None:
                            continue
                        text = store.get_many([key])[key].text
                        assert card.answer == extract(conclusion(text)), (out.name, key)
                        checked += 1
                if trace.final is not None:
                    key = trace.key(*trace.final)
                    assert key is not None
                    final = store.get_many([key])[key].text
                    assert record["answer"] == conclusion(final)
            reader.close()
    assert checked == 2 * 3 * 2 * (5 + 4 + 1)  # two evaluations, 3 problems, 2 runs


EARLIER_LAYOUT = earlier_store_table(discarded_tokens=True)
"""The key-ordered table pacore made (marked, format 1) until it became a rowid table."""

LAYOUTS = ["new", "earlier"]


def new_store(path: Path, layout: str) -> Path:
    """Where a store of `layout` is: nothing yet (`new`), or an empty store with the
    key-ordered table of an earlier pacore (`earlier`)."""
    if layout == "earlier":
        db = sqlite3.connect(path)
        db.execute(EARLIER_LAYOUT)
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute(f"PRAGMA user_version={STORE_FORMAT}")
        db.close()
    return path


def layout_of(path: Path) -> str:
    with sqlite3.connect(path) as db:
        ddl = db.execute("SELECT sql FROM sqlite_master WHERE name='trajectories'").fetchone()
    return "earlier" if "WITHOUT ROWID" in ddl[0] else "new"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_first_completion_stored_under_a_key_stays(tmp_path: Path, layout: str) -> None:
    key = Key("m", "ph", "sh", "pool/0")
    first = Completion("first", finish_reason="stop", usage=Usage(1, 2))
    second = Completion("second", finish_reason="stop", usage=Usage(3, 4))
    path = new_store(tmp_path / "s.sqlite", layout)
    with TrajectoryStore(path) as one, TrajectoryStore(path) as two:
        assert one.put(key, first) == first
        assert two.put(key, second) == first  # the second writer takes the stored one
        assert (one.writes, two.writes, two.adopted) == (1, 0, 1)
        assert one.get_many([key])[key] == two.get_many([key])[key] == first
    assert layout_of(path) == layout  # a store keeps the layout it was made with


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_batch_keeps_what_another_writer_stored_first(tmp_path: Path, layout: str) -> None:
    """`put_many` of one request's samples (one query, one insert): the keys another
    writer holds come back as stored, the others as given; any mix, the same as `put`
    one by one."""
    import random

    rng = random.Random(11)
    for trial in range(30):
        path = new_store(tmp_path / f"s{trial}.sqlite", layout)
        size = rng.randint(2, 9)
        keys = [Key("m", "ph", "sh", f"pool/{i}") for i in range(size)]
        theirs = {k: Completion(f"theirs {k.sample}", usage=Usage(1, 2)) for k in keys}
        ours = [Completion(f"ours {k.sample}", usage=Usage(3, 4)) for k in keys]
        held = [k for k in keys if rng.random() < 0.4]
        with TrajectoryStore(path) as one, TrajectoryStore(path) as two:
            one.put_many([(k, theirs[k]) for k in held])
            kept = two.put_many(list(zip(keys, ours, strict=True)))
            expected = [theirs[k] if k in held else c for k, c in zip(keys, ours, strict=True)]
            assert kept == expected
            assert (two.writes, two.adopted) == (size - len(held), len(held))
            assert two.get_many(keys) == dict(zip(keys, expected, strict=True))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_batch_with_a_failure_or_a_repeated_key_is_put_one_by_one(
    tmp_path: Path, layout: str
) -> None:
    key, other = Key("m", "ph", "sh", "a"), Key("m", "ph", "sh", "b")
    first, second = Completion("first", usage=Usage(1, 1)), Completion("second", usage=Usage(1, 1))
    failed = Completion.failed(RuntimeError("down"))
    with TrajectoryStore(new_store(tmp_path / "s.sqlite", layout)) as store:
        assert store.put_many([(key, first), (key, second)]) == [first, first]
        assert store.put_many([(other, failed), (other, second)]) == [failed, second]
        assert store.get_many([key, other]) == {key: first, other: second}


def test_writers_in_two_processes(tmp_path: Path) -> None:
    """Two processes write the same 200 keys at once; each gets back what the store
    keeps, and that is one process's completion for every key."""
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "s.sqlite"
    TrajectoryStore(path).close()
    script = textwrap.dedent(
        """
        import json, sys
        from pacore.store import APPLICATION_ID, STORE_FORMAT, Key, TrajectoryStore
        from pacore.types import Completion, Usage
        label, path = sys.argv[1], sys.argv[2]
        got = {}
        with TrajectoryStore(path) as store:
            sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
            for i in range(200):
                done = Completion(f"{label}{i}", finish_reason="stop", usage=Usage(1, 1))
                got[i] = store.put(Key("m", "p", "s", f"pool/{i}"), done).text
        print(json.dumps(got))
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, label, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for label in ("A", "B")
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    answers = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    db = sqlite3.connect(path)
    rows = db.execute("SELECT sample, text FROM trajectories").fetchall()
    db.close()
    kept = {int(sample.split("/")[1]): text for sample, text in rows}
    assert len(kept) == 200
    for got in answers:
        assert {int(i): t for i, t in got.items()} == kept


def _statements(store: TrajectoryStore) -> list[str]:
    """Every SQL statement `store` sends from now on (SQLite's trace callback)."""
    sent: list[str] = []
    store._db.set_trace_callback(sent.append)
    return sent


def test_keys_nobody_wrote_are_not_looked_up_on_a_new_store(tmp_path: Path) -> None:
    """A run's later-round keys on a store that was empty when opened: no query until
    another connection writes the store; then, and on a store reopened, every lookup
    reads it again."""
    path = tmp_path / "s.sqlite"
    mine, theirs = Key("m", "ph", "sh", "run0/r2/a0/0"), Key("m", "ph", "sh", "run1/r2/a0/0")
    done = Completion("theirs", finish_reason="stop", usage=Usage(1, 2))
    with TrajectoryStore(path) as one, TrajectoryStore(path) as two:
        sent = _statements(one)
        assert one.get_unwritten([mine]) == {}
        assert not [s for s in sent if s.startswith("SELECT")]  # nothing was read
        two.put(theirs, done)  # another writer: from now on the store is read
        assert one.get_unwritten([theirs, mine]) == {theirs: done}
        assert any(s.startswith("SELECT") for s in sent)
        assert one.put(theirs, Completion("late", usage=Usage(1, 1))) == done  # first stays
    with TrajectoryStore(path) as again:  # not empty when opened: looked up at once
        assert again.get_unwritten([theirs]) == {theirs: done}


def test_a_batch_none_of_whose_keys_is_held_is_written_without_a_read(tmp_path: Path) -> None:
    keys = [Key("m", "ph", "sh", f"pool/{i}") for i in range(4)]
    ours = [Completion(f"ours {i}", usage=Usage(1, 2)) for i in range(4)]
    with TrajectoryStore(tmp_path / "s.sqlite") as store:
        sent = _statements(store)
        assert store.put_many(list(zip(keys, ours, strict=True))) == ours
        assert not [s for s in sent if s.startswith("SELECT")]
        assert (store.writes, store.adopted) == (4, 0)
        assert store.get_many(keys) == dict(zip(keys, ours, strict=True))
        # One of them held: the batch reads what is held and keeps it.
        more = [*keys[2:], Key("m", "ph", "sh", "pool/9")]
        again = [Completion(f"again {i}", usage=Usage(1, 2)) for i in range(3)]
        assert store.put_many(list(zip(more, again, strict=True))) == [*ours[2:], again[2]]
        assert (store.writes, store.adopted) == (5, 2)
