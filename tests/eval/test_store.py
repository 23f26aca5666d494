"""The trajectory store and pooled round-1 sampling."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from pacore.backends.openai_compat import OpenAIBackend
from pacore.config import PacoreConfig
from pacore.engine import Engine
from pacore.errors import ConfigError, ServerError, StorageError
from pacore.pool import PooledSampling, draw
from pacore.store import Key, TrajectoryStore, params_hash, prompt_hash
from pacore.types import Completion, Problem, SamplingParams, Usage
from tests.fake_server import FakeConfig, FakeServer

PROBLEM = Problem(id="p1", messages=({"role": "user", "content": "What is 6*7?"},))


def test_roundtrip_and_persistence(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    key = Key("m", "ph", "sh", "pool/0")
    done = Completion("t", "r", "stop", Usage(5, 7, 2, True), 0.25, "http://x")
    with TrajectoryStore(path) as store:
        store.put(key, done)
        store.put(Key("m", "ph", "sh", "pool/1"), Completion.failed(ServerError("boom")))
        assert store.count() == 1  # failures are not stored: they are retried next time
    with TrajectoryStore(path) as store:
        got = store.get_many([key, Key("m", "ph", "sh", "pool/1")])
    assert got == {key: done}


def test_a_pool_larger_than_one_query_may_name_is_read_whole(tmp_path: Path) -> None:
    """A pool of 3,000 samples: one query naming them all is past what older SQLite
    builds bind (999 variables; this one's limit was hit at 250,000: a traceback)."""
    done = Completion("t", None, "stop", Usage(1, 1), 0.0, "x")
    keys = [Key("m", "ph", "sh", f"pool/{i}") for i in range(3000)]
    with TrajectoryStore(tmp_path / "s.sqlite") as store:
        store.put_many([(k, done) for k in keys[::2]])  # every other one stored
        store._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        got = store.get_many(keys)
    assert set(got) == set(keys[::2])


def test_a_write_that_fails_is_a_storage_error(tmp_path: Path) -> None:
    """A full disk (played by a read-only connection) is one `StorageError` naming the
    store; what was stored before stays."""
    key = Key("m", "ph", "sh", "pool/0")
    done = Completion("t", "r", "stop", Usage(5, 7, 2, True), 0.25, "http://x")
    with TrajectoryStore(tmp_path / "s.sqlite") as store:
        store.put(key, done)
        store._db.execute("PRAGMA query_only = ON")
        with pytest.raises(StorageError, match=r"s\.sqlite: cannot write the trajectory store"):
            store.put(Key("m", "ph", "sh", "pool/1"), done)
        assert store.get_many([key]) == {key: done}


def test_hashes_ignore_seed_and_streaming() -> None:
    base = SamplingParams(temperature=1.0, max_tokens=100)
    assert params_hash(base) == params_hash(
        SamplingParams(temperature=1.0, max_tokens=100, seed=4, stream=True)
    )
    assert params_hash(base) != params_hash(SamplingParams(temperature=0.5, max_tokens=100))
    assert prompt_hash([{"role": "user", "content": "a"}]) != prompt_hash(
        [{"role": "user", "content": "b"}]
    )


def test_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a trajectory store"):
        TrajectoryStore(bad)


def test_draws_are_seeded_per_problem_and_run() -> None:
    a = draw(64, 16, seed=0, problem="p", run=0)
    assert a == draw(64, 16, seed=0, problem="p", run=0)
    assert len(set(a)) == 16
    assert all(0 <= i < 64 for i in a)
    assert a != draw(64, 16, seed=0, problem="p", run=1)
    assert a != draw(64, 16, seed=0, problem="q", run=0)


async def test_pool_is_generated_once_and_shared(tmp_path: Path) -> None:
    async with FakeServer(FakeConfig(ttft_s=0.01)) as srv:
        backend = OpenAIBackend(srv.url, model="fake-model")
        with TrajectoryStore(tmp_path / "s.sqlite") as store:
            shared = PooledSampling(backend, store, "fake-model", pool_size=20)
            engines = [
                Engine(backend, PacoreConfig(widths=(4,)), sampler=shared.for_run(run))
                for run in range(3)
            ]
            results = await asyncio.gather(*(e.solve(PROBLEM) for e in engines))
            # A 20-trajectory pool is two calls (16 + 4); each run adds one synthesis.
            assert srv.stats.requests == 2 + 3
            assert shared.stats.generated == 20
            assert store.count() == 20 + 3
            first_round = [[t.text for t in r.rounds[0].trajectories] for r in results]
            assert len({tuple(x) for x in first_round}) == 3  # different draws per run
        await backend.aclose()


async def test_rerun_regenerates_nothing_and_gives_the_same_result(tmp_path: Path) -> None:
    async def evaluate(srv: FakeServer) -> list[tuple[str, int]]:
        backend = OpenAIBackend(srv.url, model="fake-model")
        with TrajectoryStore(tmp_path / "s.sqlite") as store:
            shared = PooledSampling(backend, store, "fake-model", pool_size=8, seed=5)
            out = []
            for run in range(2):
                engine = Engine(backend, PacoreConfig(widths=(4, 2)), sampler=shared.for_run(run))
                result = await engine.solve(PROBLEM)
                out.append((result.final_text, result.ttc_tokens))
        await backend.aclose()
        return out

    async with FakeServer(FakeConfig()) as srv:
        first = await evaluate(srv)
        requests = srv.stats.requests
        assert requests == 1 + 2 * 2  # pool, then rounds 2 and 3 of each run
        second = await evaluate(srv)
        assert srv.stats.requests == requests
    assert first == second


async def test_width_above_the_pool_fails_clearly(tmp_path: Path) -> None:
    async with FakeServer(FakeConfig()) as srv:
        backend = OpenAIBackend(srv.url, model="fake-model")
        with TrajectoryStore(tmp_path / "s.sqlite") as store:
            shared = PooledSampling(backend, store, "fake-model", pool_size=4)
            config = PacoreConfig(widths=(8,), on_failure="fail")
            engine = Engine(backend, config, sampler=shared.for_run(0))
            result = await engine.solve(PROBLEM)
        await backend.aclose()
    assert result.status == "failed"
    assert "pool holds 4" in (result.error or "")


def test_golden_store_keys_and_draws() -> None:
    # Keys of stores already on disk: a change here orphans every stored trajectory.
    messages = [{"role": "user", "content": "What is 6*7? é"}]
    params = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=100, extra_body={"k": "é"})
    assert prompt_hash(messages) == "eddc9455144d9fd6b5e988a2afcbb859"
    assert params_hash(params) == "ca99de90a867626d"
    assert draw(64, 8, seed=7, problem="p3", run=2) == [23, 62, 52, 20, 28, 29, 19, 47]
