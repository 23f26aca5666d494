"""pacore against llama.cpp's own HTTP server (the xllamacpp wheel) serving SmolLM2-135M.

Every count is checked against the server's own tokenizer (`/tokenize`): a trajectory
cut at `max_tokens` reports exactly `max_tokens`; any other reports its text's tokens
plus at most the end-of-turn token; `ttc_tokens` is the sum over all trajectories, in
every request mode. Tiny `max_tokens` keep the module within a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pacore.backends.openai_compat import OpenAIBackend
from pacore.cli import main
from pacore.types import Completion, SamplingParams

pytestmark = pytest.mark.embedded

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
CTX_PER_SLOT = 512
MAX_TOKENS = 12
QUESTION = "Name three colours."
MSGS = [{"role": "user", "content": QUESTION}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int, *, delay: float = 0.0) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "tests.llama_server", "--port", str(port)]
    cmd += ["--ctx-per-slot", str(CTX_PER_SLOT), "--slots", "4", "--delay", str(delay)]
    return subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def llama() -> Iterator[str]:
    """The base URL of a running llama.cpp server."""
    pytest.importorskip("xllamacpp")
    port = free_port()
    proc = start_server(port)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening"), line
    yield f"http://127.0.0.1:{port}/v1"
    stop(proc)


def tokens_of(base_url: str, text: str) -> int:
    """The server's own token count of `text`."""
    root = base_url.removesuffix("/v1")
    body = json.dumps({"content": text}).encode()
    request = urllib.request.Request(
        f"{root}/tokenize", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return len(json.loads(response.read())["tokens"])


def assert_exact(base_url: str, finish: str | None, text: str, usage: dict[str, Any]) -> None:
    """One trajectory's count against the server's tokenizer."""
    generated = usage["completion_tokens"]
    if finish == "length":
        assert generated == MAX_TOKENS
    else:
        true = tokens_of(base_url, text)
        assert true <= generated <= true + 1, (text, generated, true)
    assert not usage["estimated"]


def as_usage(c: Completion) -> dict[str, Any]:
    return c.usage.to_dict()


@pytest.mark.parametrize("stream", [False, True])
async def test_every_choice_is_counted_exactly(llama: str, stream: bool) -> None:
    params = SamplingParams(max_tokens=MAX_TOKENS, seed=5, stream=stream)
    async with OpenAIBackend(llama) as backend:
        await backend.start()
        several = await backend.complete(MSGS, 3, params)
        one = await backend.complete(MSGS, 1, params)
    for c in [*several, *one]:
        assert c.error is None, c.error
        assert_exact(llama, c.finish_reason, c.text, as_usage(c))


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code = main(["run", *argv, "--json", "--quiet"])
    out = capsys.readouterr().out
    assert code in (0, 1), out
    data: dict[str, Any] = json.loads(out)
    return data


def test_ttc_is_the_same_with_n_without_n_and_streamed(
    llama: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [QUESTION, "--backend", llama, "--widths", "3", "--max-tokens", str(MAX_TOKENS)]
    base += ["--temperature", "0", "--seed", "1"]  # greedy: the same texts in every mode
    runs = {mode: run_json(capsys, *base, *extra) for mode, extra in
            {"n": [], "no-n": ["--no-n"], "stream": ["--stream"]}.items()}  # fmt: skip
    texts = {}
    for mode, result in runs.items():
        trajectories = [t for rnd in result["rounds"] for t in rnd]
        for t in trajectories:
            assert_exact(llama, t["finish_reason"], t["text"], t["usage"])
        total = sum(t["usage"]["completion_tokens"] + t["usage"]["discarded_tokens"]
                    for t in trajectories)  # fmt: skip
        assert result["ttc_tokens"] == total
        texts[mode] = [t["text"] for t in trajectories]
    for mode in ("no-n", "stream"):
        assert texts[mode] == texts["n"]
        assert runs[mode]["ttc_tokens"] == runs["n"]["ttc_tokens"]


def test_an_input_longer_than_the_window_fails_as_input(
    llama: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_json(capsys, "word " * 700, "--backend", llama, "--widths", "2")
    assert result["status"] == "failed"
    assert result["failure"] == "input"
    assert f"a context window of {CTX_PER_SLOT}" in result["error"]


def test_a_prompt_that_leaves_too_little_room_names_the_window(
    llama: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # 421 prompt tokens: greedy decoding runs into the 512-token window before 100 tokens.
    numbers = " ".join(str(i) for i in range(120))
    question = f"Here are some numbers: {numbers}. Count from 1 to 300, one number per line."
    result = run_json(
        capsys, question, "--backend", llama, "--widths", "1", "--max-tokens", "100",
        "--temperature", "0", "--timeout", "600", "--retries", "0",
    )  # fmt: skip
    # The final slot comes first; on a loaded machine a timed-out attempt may follow it.
    first = result["rounds"][0][0]
    assert first["finish_reason"] == "length"
    assert first["usage"]["completion_tokens"] < 100
    assert first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"] == CTX_PER_SLOT
    assert first["cut_by"] == "context"
    assert result["failure"] == "model"
    assert "context window was full" in result["error"]


def test_pacore_started_before_the_server_waits_for_it(tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "pacore.cli", "run", QUESTION, "--widths", "2"]
    cmd += ["--backend", f"http://127.0.0.1:{port}/v1", "--max-tokens", str(MAX_TOKENS)]
    cmd += ["--wait-ready", "120", "--keep-truncated", "--quiet"]
    client = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    server = start_server(port, delay=1.0)
    try:
        out, err = client.communicate(timeout=120)
    finally:
        stop(server)
    assert client.returncode == 0, err
    assert out.strip()
    assert "waiting for" in err
