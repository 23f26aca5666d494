"""The event loop a command runs on: uvloop for the clients, the standard one to serve."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import uvloop

from pacore import aio
from pacore.cli import COMMANDS, main
from pacore.errors import ConfigError
from tests.fake_server import FakeConfig, run_in_thread


def test_uvloop_by_default_and_the_standard_loop_on_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(aio.LOOP_ENV, raising=False)
    assert aio.client_loop() is uvloop.new_event_loop
    for value in ("uvloop", " UVLOOP ", ""):
        monkeypatch.setenv(aio.LOOP_ENV, value)
        assert aio.client_loop() is uvloop.new_event_loop
    for value in ("asyncio", "AsyncIO "):
        monkeypatch.setenv(aio.LOOP_ENV, value)
        assert aio.client_loop() is None


@pytest.mark.parametrize("value", ["tokio", "uv loop", "0", "asyncio,uvloop"])
def test_an_unknown_loop_is_refused_naming_the_choices(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(aio.LOOP_ENV, value)
    with pytest.raises(ConfigError) as caught:
        aio.client_loop()
    assert str(caught.value) == f"{aio.LOOP_ENV}={value!r}: use uvloop or asyncio"


def test_without_uvloop_the_default_falls_back_and_insisting_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` now fails
    monkeypatch.delenv(aio.LOOP_ENV, raising=False)
    assert aio.client_loop() is None
    monkeypatch.setenv(aio.LOOP_ENV, "uvloop")
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        aio.client_loop()


def test_run_returns_the_result_and_closes_its_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def work() -> int:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return 42

    assert aio.run(work(), loop=uvloop.new_event_loop) == 42
    assert aio.run(work()) == 42
    assert isinstance(loops[0], uvloop.Loop)
    assert not isinstance(loops[1], uvloop.Loop)
    assert all(loop.is_closed() for loop in loops)


def _record_loops(monkeypatch: pytest.MonkeyPatch, command: str) -> list[type[Any]]:
    """Make `command`'s plan and execution only note the loop they ran on."""
    module = COMMANDS[command].load()
    seen: list[type[Any]] = []

    async def execute(plan: object) -> int:
        seen.append(type(asyncio.get_running_loop()))
        return 0

    monkeypatch.setattr(module, COMMANDS[command].plan, lambda args: None)
    monkeypatch.setattr(module, "execute", execute)
    return seen


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("run", ["run", "Q?"]),
        ("eval", ["eval", "--dataset", "d.jsonl", "--method", "single", "--out", "o"]),
        ("train", ["train", "arith", "--out", "a.jsonl"]),
        ("serve", ["serve"]),
        ("view", ["view", "."]),
    ],
)
def test_clients_run_on_uvloop_and_servers_on_the_standard_loop(
    monkeypatch: pytest.MonkeyPatch, command: str, argv: list[str]
) -> None:
    monkeypatch.delenv(aio.LOOP_ENV, raising=False)
    seen = _record_loops(monkeypatch, command)
    assert main(argv) == 0
    monkeypatch.setenv(aio.LOOP_ENV, "asyncio")
    assert main(argv) == 0
    client = command in ("run", "eval", "train")
    assert COMMANDS[command].client is client
    assert seen == [uvloop.Loop if client else asyncio.SelectorEventLoop, asyncio.SelectorEventLoop]
    # The servers ignore the variable, even a bad value; a client refuses it.
    monkeypatch.setenv(aio.LOOP_ENV, "tokio")
    assert main(argv) == (2 if client else 0)
    assert len(seen) == (2 if client else 3)


def test_a_bad_loop_is_one_line_and_exit_2_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv(aio.LOOP_ENV, "tokio")
    with run_in_thread(FakeConfig()) as srv:
        out = tmp_path / "out.jsonl"
        src = tmp_path / "in.jsonl"
        src.write_text('{"id": "a", "question": "Q?"}\n')
        argv = ["run", "--input", str(src), "--output", str(out), "--backend", srv.url]
        assert main(argv) == 2
        assert srv.stats.requests == 0
    err = capsys.readouterr().err
    assert err == f"pacore: error: {aio.LOOP_ENV}='tokio': use uvloop or asyncio\n"
    assert not out.exists()


def test_a_run_answers_alike_on_either_loop(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(f'{{"id": "q{i}", "question": "Q{i}?"}}\n' for i in range(6)))
    outputs = []
    with run_in_thread(FakeConfig(record_bodies=False)) as srv:
        for loop in ("uvloop", "asyncio"):
            monkeypatch.setenv(aio.LOOP_ENV, loop)
            out = tmp_path / f"{loop}.jsonl"
            argv = ["run", "--input", str(src), "--output", str(out), "--backend", srv.url]
            assert main([*argv, "--widths", "4", "--stream", "--quiet", "--no-text"]) == 0
            outputs.append(sorted(out.read_text().splitlines()))
        assert srv.stats.requests == 2 * 6 * 2
    kept = ("id", "answer", "status", "ttc_tokens", "requests", "max_context_tokens")
    first, second = ([{k: json.loads(x)[k] for k in kept} for x in out] for out in outputs)
    assert len(first) == 6
    assert first == second
