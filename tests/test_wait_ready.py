"""The start-up wait: a refused connection fails at once unless `--wait-ready` was given;
a server answering 503 "Loading model" is waited for either way.

Nothing here waits on the wall clock: the backend's waits run on `FakeTime`, and the
commands' probes of a dead port are counted.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pacore.backends.openai_compat import client
from pacore.backends.openai_compat.readiness import LOADING_WAIT_S, WAIT_HINT, probe_models
from pacore.cli import main
from pacore.config import BackendConfig
from pacore.errors import ConnectionFailed
from pacore.serve.app import create_app
from tests.conftest import dead_url
from tests.fake_server import FakeConfig, FakeServer
from tests.serve_helpers import serving
from tests.test_openai_readiness import LOADING, FakeTime, backend


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The base URLs the backends probe at start, one entry per connection attempt."""
    seen: list[str] = []
    real = probe_models

    async def counted(session: Any, base_url: str, limits: Any) -> Any:
        seen.append(base_url)
        return await real(session, base_url, limits)

    monkeypatch.setattr(client, "probe_models", counted)
    return seen


async def test_a_refused_connection_fails_at_once_with_a_hint(time: FakeTime) -> None:
    url = dead_url()
    lines: list[str] = []
    async with backend(url, time, lines) as be:
        with pytest.raises(ConnectionFailed) as caught:
            await be.start()
    assert str(caught.value).startswith(f"cannot reach backend {url} (")
    assert str(caught.value).endswith(f"; {WAIT_HINT}")
    assert "\n" not in str(caught.value)
    assert time.sleeps == []
    assert lines == []


async def test_an_explicit_wait_ready_waits_for_a_refused_connection(time: FakeTime) -> None:
    url = dead_url()
    async with backend(url, time, [], wait_ready=5) as be:
        with pytest.raises(ConnectionFailed) as caught:
            await be.start()
    assert sum(time.sleeps) == pytest.approx(5.0)
    assert WAIT_HINT not in str(caught.value)


async def test_a_loading_server_is_waited_for_without_wait_ready(time: FakeTime) -> None:
    """503, 503, then 200: the default waits, as it did."""
    lines: list[str] = []
    async with FakeServer(FakeConfig(loading_requests=2)) as srv:
        async with backend(srv.url, time, lines) as be:
            await be.start()
            assert be.name == "fake-model"
        assert srv.stats.model_requests == 3
    assert time.sleeps == [0.5, 1.0]
    assert lines[0] == f"waiting for {srv.url} ({LOADING}); giving up after {LOADING_WAIT_S:g}s"


async def test_a_loading_server_is_waited_for_up_to_300_s_by_default(time: FakeTime) -> None:
    async with (
        FakeServer(FakeConfig(loading_s=1e9, clock=time)) as srv,
        backend(srv.url, time, []) as be,
    ):
        with pytest.raises(ConnectionFailed, match=r"backend not ready: .*; waited 300s"):
            await be.start()
    assert sum(time.sleeps) == pytest.approx(LOADING_WAIT_S)


async def test_a_server_seen_loading_is_waited_for_through_a_restart(time: FakeTime) -> None:
    """Once it answered "loading", a refusal is a restart, not a wrong URL: wait on."""
    srv = FakeServer(FakeConfig(loading_requests=1))
    await srv.start()
    url = srv.url
    port = srv.port

    async def restart(seconds: float) -> None:
        await time.sleep(seconds)
        if len(time.sleeps) == 1:
            await srv.stop()
        elif len(time.sleeps) == 2:
            await up.start()

    up = FakeServer(FakeConfig(), port=port)
    try:
        async with backend(url, time, [], sleep=restart) as be:
            await be.start()
    finally:
        await up.stop()
    assert be.name == "fake-model"
    assert len(time.sleeps) == 2


def test_default_is_none_and_the_option_is_passed_on() -> None:
    assert BackendConfig().wait_ready is None
    assert BackendConfig(wait_ready=0).wait_ready == 0


def _one_error_line(err: str) -> str:
    (line,) = err.strip().splitlines()
    return line


def _run_args(tmp_path: Path, url: str) -> list[str]:
    return ["run", "Q", "--backend", url]


def _eval_args(tmp_path: Path, url: str) -> list[str]:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "p0", "question": "What?", "answer": "42"}) + "\n")
    out = str(tmp_path / "out")
    return ["eval", "--dataset", str(data), "--out", out, "--backend", url, "--method",
            "single", "--runs", "1", "--pool", "1", "--quiet", "--no-plots"]  # fmt: skip


def _pool_args(tmp_path: Path, url: str) -> list[str]:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "p0", "question": "1+1?", "answer": "2"}) + "\n")
    return ["train", "pool", "--dataset", str(data), "--size", "2", "--backend", url,
            "--out", str(tmp_path / "pool.jsonl")]  # fmt: skip


@pytest.mark.parametrize("args", [_run_args, _eval_args, _pool_args], ids=["run", "eval", "pool"])
def test_a_typo_in_the_port_is_exit_2_and_one_line_after_one_probe(
    args: Any, tmp_path: Path, probes: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = dead_url()
    assert main(args(tmp_path, url)) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"pacore: error: cannot reach backend {url} (")
    assert "--wait-ready SECONDS" in line
    assert probes == [url]


def test_serve_answers_502_at_once_for_a_refused_upstream(probes: list[str]) -> None:
    url = dead_url()
    app = create_app(BackendConfig(backend=(url,)))
    with serving(app) as base:
        request = urllib.request.Request(
            f"{base}/chat/completions",
            data=json.dumps(
                {"model": "pacore-low", "messages": [{"role": "user", "content": "Q"}]}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=60)
        body = json.loads(caught.value.read())
    assert caught.value.code == 502
    assert f"cannot reach backend {url}" in body["error"]["message"]
    assert "--wait-ready" in body["error"]["message"]
    assert probes in ([url], [url, url])  # one try at start-up, one for the request
