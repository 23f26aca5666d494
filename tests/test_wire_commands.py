"""The real commands (`pacore run`, `pacore eval`, `pacore train pool`) against a fake
upstream that spoils its replies to one problem (the one whose question says POISON)
in one named way.

A malformed reply fails that problem's trajectories with a one-line `MalformedReply`
naming the field, exit 1, the other problems fine, no traceback, and a rerun once the
server behaves finishes the job. An impossible usage is never recorded: the problem is
fine and its tokens are counted from its text, estimated.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pacore.cli import main
from tests.fake_server import FakeConfig, FakeServer, fixed_length_responder, run_in_thread
from tests.test_wire_malformed import DISTRUSTED, MALFORMED

POISON = "POISON"
ESTIMATE_BOUND = 10_000
"""More tokens than any text of the fake server's answers could hold."""


@pytest.fixture
def srv() -> Iterator[FakeServer]:
    with run_in_thread(FakeConfig(malformed_when=POISON, record_bodies=False)) as server:
        yield server


def problems(path: Path, key: str = "q") -> Path:
    lines = [
        {"id": f"{key}{i}", "question": f"What is {i}+{i}? {POISON if i == 1 else ''}".strip()}
        | ({"answer": "42"} if key == "p" else {})
        for i in range(3)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def trajectories(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for rnd in record["rounds"] for t in rnd]


def no_traceback(err: str) -> None:
    assert "Traceback" not in err
    assert all(line.startswith("pacore") or not line.strip() for line in err.splitlines())


# -- pacore run ----------------------------------------------------------------------


def run_args(tmp_path: Path, srv: FakeServer) -> list[str]:
    src = problems(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    return ["run", "--input", str(src), "--output", str(out), "--backend", srv.url]


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_run_fails_only_the_problem_whose_replies_are_malformed(
    name: str, srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv.config.malformed = name
    args = [*run_args(tmp_path, srv), "--retries", "0", "--quiet"]
    assert main(args) == 1
    no_traceback(capsys.readouterr().err)
    by_id = {r["id"]: r for r in records(tmp_path / "out.jsonl")}
    assert (by_id["q0"]["status"], by_id["q1"]["status"], by_id["q2"]["status"]) == (
        "ok",
        "failed",
        "ok",
    )
    failed = [t for t in trajectories(by_id["q1"]) if t["status"] == "error"]
    assert failed
    for t in failed:
        assert t["error_type"] == "MalformedReply"
        assert t["retryable"] is True
        assert t["error"].startswith("MalformedReply: malformed reply from the server: ")
        assert "\n" not in t["error"]
        assert any(field in t["error"] for field in MALFORMED[name])
    assert by_id["q1"]["ttc_tokens"] >= 0

    srv.config.malformed = None  # the server behaves again: a rerun finishes the job
    assert main([*args, "--retry-failed"]) == 0
    by_id = {r["id"]: r for r in records(tmp_path / "out.jsonl")}
    assert sorted(by_id) == ["q0", "q1", "q2"]
    assert all(r["status"] == "ok" for r in by_id.values())


@pytest.mark.parametrize("name", sorted(DISTRUSTED))
def test_run_never_records_an_impossible_usage(
    name: str, srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv.config.malformed = name
    assert main([*run_args(tmp_path, srv), "--quiet"]) == 0
    no_traceback(capsys.readouterr().err)
    by_id = {r["id"]: r for r in records(tmp_path / "out.jsonl")}
    assert all(r["status"] == "ok" for r in by_id.values())
    poisoned = by_id["q1"]
    assert 0 < poisoned["ttc_tokens"] < ESTIMATE_BOUND
    assert 0 <= poisoned["max_prompt_tokens"] < ESTIMATE_BOUND
    for t in trajectories(poisoned):
        usage = t["usage"]
        assert usage["estimated"] is True
        assert usage["completion_tokens"] == (len(t["text"]) + 3) // 4  # counted from the text
        assert 0 <= usage["prompt_tokens"] < ESTIMATE_BOUND
        assert usage["reasoning_tokens"] is None


def test_run_joins_text_parts(srv: FakeServer, tmp_path: Path) -> None:
    srv.config.malformed = "content_parts"
    assert main([*run_args(tmp_path, srv), "--quiet"]) == 0
    answers = {r["id"]: (r["status"], r["answer"]) for r in records(tmp_path / "out.jsonl")}
    answer = "The answer is \\boxed{42}."
    assert answers == {"q0": ("ok", answer), "q1": ("ok", answer), "q2": ("ok", answer)}


# -- pacore eval ---------------------------------------------------------------------


def eval_args(tmp_path: Path, srv: FakeServer) -> list[str]:
    data = problems(tmp_path / "d.jsonl", "p")
    out = tmp_path / "o"
    argv = ["eval", "--dataset", str(data), "--out", str(out), "--backend", srv.url]
    return [*argv, "--method", "pacore:low", "--pool", "4", "--quiet", "--no-plots"]


def stored_texts(path: Path) -> Iterator[str]:
    """Every text value in an SQLite file (whatever its schema)."""
    with sqlite3.connect(path) as con:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"'):
                yield from (v for v in row if isinstance(v, str))


@pytest.mark.parametrize("name", ["content_int", "finish_list", "index_huge", "reasoning_int"])
def test_eval_fails_only_the_problem_whose_replies_are_malformed(
    name: str, srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv.config.malformed = name
    args = eval_args(tmp_path, srv)
    assert main([*args, "--retries", "0"]) == 1
    no_traceback(capsys.readouterr().err)
    results = records(tmp_path / "o" / "results.jsonl")
    assert {r["status"] for r in results if r["id"] == "p1"} == {"failed"}
    assert {r["status"] for r in results if r["id"] != "p1"} == {"ok"}
    named = [t for t in stored_texts(tmp_path / "o" / "traces.sqlite") if "MalformedReply" in t]
    assert any(field in text for text in named for field in MALFORMED[name])

    srv.config.malformed = None
    assert main(args) == 0
    results = records(tmp_path / "o" / "results.jsonl")
    latest = {r["id"]: r["status"] for r in results}
    assert latest == {"p0": "ok", "p1": "ok", "p2": "ok"}


@pytest.mark.parametrize("name", ["usage_negative", "usage_nan", "usage_str", "prompt_absurd"])
def test_eval_never_records_an_impossible_usage(
    name: str, srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv.config.malformed = name
    assert main(eval_args(tmp_path, srv)) == 0
    no_traceback(capsys.readouterr().err)
    results = records(tmp_path / "o" / "results.jsonl")
    assert {r["status"] for r in results} == {"ok"}
    for r in results:
        assert 0 < r["ttc_tokens"] < ESTIMATE_BOUND
        assert 0 <= r["max_prompt_tokens"] < ESTIMATE_BOUND


# -- pacore train pool ---------------------------------------------------------------


def pool_args(tmp_path: Path, srv: FakeServer) -> list[str]:
    data = problems(tmp_path / "d.jsonl", "p")
    out = tmp_path / "pool.jsonl"
    return ["train", "pool", "--dataset", str(data), "--size", "4", "--backend", srv.url,
            "--out", str(out)]  # fmt: skip


@pytest.mark.parametrize("name", ["content_int", "choices_dict", "message_str"])
def test_train_pool_fails_only_the_problem_whose_replies_are_malformed(
    name: str, srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv.config.malformed = name
    args = pool_args(tmp_path, srv)
    assert main([*args, "--retries", "0"]) == 1
    no_traceback(capsys.readouterr().err)
    responses = {r["id"]: len(r["responses"]) for r in records(tmp_path / "pool.jsonl")}
    assert responses == {"p0": 4, "p1": 0, "p2": 4}

    srv.config.malformed = None
    assert main(args) == 0
    responses = {r["id"]: len(r["responses"]) for r in records(tmp_path / "pool.jsonl")}
    assert responses == {"p0": 4, "p1": 4, "p2": 4}


@pytest.mark.parametrize("name", ["usage_str", "usage_nan", "usage_bool"])
def test_train_pool_goes_on_past_an_impossible_usage(
    name: str, srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv.config.malformed = name
    assert main(pool_args(tmp_path, srv)) == 0
    no_traceback(capsys.readouterr().err)
    responses = {r["id"]: len(r["responses"]) for r in records(tmp_path / "pool.jsonl")}
    assert responses == {"p0": 4, "p1": 4, "p2": 4}


def test_retry_failed_keeps_what_the_failed_attempt_spent(
    srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A problem whose stream was cut failed after the server generated tokens for it;
    `--retry-failed` replaced its line and those tokens and that request were recorded
    nowhere. The new line carries them in `earlier_attempts`: the file's spend, lines
    and earlier attempts together, is the server's."""
    srv.config.responder = fixed_length_responder(20)  # a token a delta, of 5 characters
    srv.push_script("drop_mid")  # the first request's stream is cut part way
    args = [*run_args(tmp_path, srv), "--widths", "4", "--retries", "0", "--on-failure", "fail"]
    args += ["--stream", "--concurrency", "1", "--quiet"]
    assert main(args) == 1
    first = {r["id"]: r for r in records(tmp_path / "out.jsonl")}
    failed = [r for r in first.values() if r["status"] == "failed"]
    assert len(failed) == 1
    assert failed[0]["ttc_tokens"] > 0  # it had generated tokens before the cut
    assert main([*args, "--retry-failed"]) == 0
    assert "their failed attempts spent" in capsys.readouterr().err
    lines = records(tmp_path / "out.jsonl")
    assert all(r["status"] == "ok" for r in lines)
    rerun = next(r for r in lines if r["id"] == failed[0]["id"])
    assert rerun["earlier_attempts"] == {
        "attempts": 1,
        "ttc_tokens": failed[0]["ttc_tokens"],
        "requests": failed[0]["requests"],
    }
    spent = [(r["ttc_tokens"], r["requests"]) for r in lines]
    spent += [(r["earlier_attempts"]["ttc_tokens"], r["earlier_attempts"]["requests"])
              for r in lines if "earlier_attempts" in r]  # fmt: skip
    stats = srv.stats
    assert sum(t for t, _ in spent) == stats.completion_tokens
    assert sum(n for _, n in spent) == stats.requests
