"""Careless and hostile inputs to `pacore run`: each gives one line and an exit code,
leaves every file's bytes as they were, and spends no request it should not."""

from __future__ import annotations

import errno
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from pacore.cli import main
from pacore.io import appender
from tests.conftest import dead_url
from tests.fake_server import FakeConfig, FakeServer, run_in_thread
from tests.helpers import wait_for_lines

ROOT = Path(__file__).resolve().parents[1]
GOOD = [{"id": f"q{i}", "question": f"What is {i}+{i}?"} for i in range(3)]


def jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def srv() -> Iterator[FakeServer]:
    with run_in_thread(FakeConfig()) as server:
        yield server


def result_line(pid: str, status: str = "ok") -> str:
    record = {"id": pid, "status": status, "error": None, "failure": None, "answer": "a",
              "final_text": "a", "widths": [1, 1], "ttc_tokens": 3, "rounds": []}  # fmt: skip
    return json.dumps(record)


Setup = Callable[[Path], tuple[list[str], Path | None]]
"""Builds a case in a folder: the arguments after `run`, and the file whose bytes must
not change (None: no output file may appear)."""


def foreign(content: bytes) -> Setup:
    def setup(d: Path) -> tuple[list[str], Path | None]:
        out = d / "x.json"
        out.write_bytes(content)
        return ["--input", str(jsonl(d / "in.jsonl", GOOD)), "--output", str(out)], out

    return setup


def problems_as_output(d: Path) -> tuple[list[str], Path | None]:
    out = jsonl(d / "other.jsonl", GOOD)
    return ["--input", str(jsonl(d / "in.jsonl", GOOD)), "--output", str(out)], out


def hard_link(d: Path) -> tuple[list[str], Path | None]:
    src = jsonl(d / "in.jsonl", GOOD)
    os.link(src, d / "out.jsonl")
    return ["--input", str(src), "--output", str(d / "out.jsonl")], src


def device(d: Path) -> tuple[list[str], Path | None]:
    return ["--input", str(jsonl(d / "in.jsonl", GOOD)), "--output", "/dev/full"], None


def read_only(torn: bool, retry: bool) -> Setup:
    def setup(d: Path) -> tuple[list[str], Path | None]:
        out = d / "out.jsonl"
        out.write_text(result_line("q0", "failed") + "\n" + ('{"id": "q1", "sta' if torn else ""))
        out.chmod(0o444)
        args = ["--input", str(jsonl(d / "in.jsonl", GOOD)), "--output", str(out)]
        return [*args, *(["--retry-failed"] if retry else [])], out

    return setup


def bad_record(record: str) -> Setup:
    def setup(d: Path) -> tuple[list[str], Path | None]:
        src = d / "in.jsonl"
        src.write_text(json.dumps(GOOD[0]) + "\n" + record + "\n" + json.dumps(GOOD[1]) + "\n")
        return ["--input", str(src), "--output", str(d / "out.jsonl")], None

    return setup


def template(content: bytes) -> Setup:
    def setup(d: Path) -> tuple[list[str], Path | None]:
        (d / "t.j2").write_bytes(content)
        return ["Q?", "--template", str(d / "t.j2"), "--widths", "2"], None

    return setup


def option(*args: str) -> Setup:
    return lambda d: (["Q?", *args], None)


CASES: list[tuple[str, Setup, str]] = [
    ("foreign json, no newline", foreign(b'{"cfg":1}'), "x.json:1: not a pacore result line"),
    ("text file", foreign(b"hello\nworld"), "x.json:1: not a pacore result line"),
    ("problems file as output", problems_as_output, "other.jsonl:1: not a pacore result line"),
    ("output hard-linked to input", hard_link, "(the same file under this name)"),
    ("a device as output", device, "/dev/full: is a device, not a regular file"),
    ("content not text", bad_record('{"id":"bad","messages":[{"role":"user","content":5}]}'),
     "in.jsonl:2: messages[0].content must be a string or a list of content parts, got int"),
    ("lone surrogate", bad_record('{"id":"s","question":"Q","x":"\\udfff"}'),
     "in.jsonl:2: field 'x': a lone surrogate"),
    ("--timeout nan", option("--timeout", "nan"), "--timeout must be a finite number, got nan"),
    ("--timeout inf", option("--timeout", "inf"), "--timeout must be a finite number, got inf"),
    ("--backoff nan", option("--backoff", "nan"), "--backoff must be a finite number"),
    ("--temperature inf", option("--temperature", "inf"), "--temperature must be a finite"),
    ("template not UTF-8", template(b"\xff\xfe{{ x }}"), "the template is not UTF-8 text"),
    ("template raises", template(b"{{ original_prompt }}{{ ref_responses }}{{ 1/0 }}"),
     "template failed to render: ZeroDivisionError"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "setup", "message"), CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_exit_2_and_changes_nothing(
    name: str,
    setup: Setup,
    message: str,
    srv: FakeServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args, guarded = setup(tmp_path)
    before = guarded.read_bytes() if guarded else None
    files = sorted(p.name for p in tmp_path.iterdir())
    requests = srv.stats.requests
    code = main(["run", *args, "--backend", srv.url, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert srv.stats.requests == requests
    if guarded is not None:
        assert guarded.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # nothing created


@pytest.mark.parametrize(("torn", "retry"), [(True, False), (False, True)])
def test_a_read_only_output_is_refused_before_anything_is_sent(
    torn: bool,
    retry: bool,
    srv: FakeServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args, out = read_only(torn=torn, retry=retry)(tmp_path)
    assert out is not None
    if os.geteuid() == 0:  # root may write anything: answer as the file's mode says
        real = os.access
        monkeypatch.setattr(
            os, "access", lambda p, mode: False if Path(p) == out else real(p, mode)
        )
    before, requests = out.read_bytes(), srv.stats.requests
    assert main(["run", *args, "--backend", srv.url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"pacore: error: {out}: not writable (permission denied)\n"
    assert out.read_bytes() == before
    assert srv.stats.requests == requests


def test_a_repair_that_the_filesystem_refuses_is_one_line(
    srv: FakeServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read-only filesystem answers the repair with EROFS: one line, nothing lost."""
    args, out = read_only(torn=True, retry=False)(tmp_path)
    assert out is not None
    out.chmod(0o644)

    def refuse(src: object, dst: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    before = out.read_bytes()
    monkeypatch.setattr(os, "replace", refuse)
    assert main(["run", *args, "--backend", srv.url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"pacore: error: {out}: cannot repair (Read-only file system); the file is unchanged\n"
    )
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert not (tmp_path / "out.jsonl.lock").exists()


def test_a_torn_line_is_not_repaired_before_the_backend_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(result_line("q0") + "\n" + '{"id": "q1", "sta')
    before = out.read_bytes()
    args = ["--input", str(jsonl(tmp_path / "in.jsonl", GOOD)), "--output", str(out)]
    assert main(["run", *args, "--backend", dead_url(), "--wait-ready", "0"]) == 2
    assert "cannot reach backend" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_a_torn_line_is_repaired_once_every_check_passed(
    srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(result_line("q0") + "\n" + '{"id": "q1", "sta')
    args = ["--input", str(jsonl(tmp_path / "in.jsonl", GOOD)), "--output", str(out)]
    assert main(["run", *args, "--backend", srv.url, "--quiet"]) == 0
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == ["q0", "q1", "q2"]
    assert not (tmp_path / "out.jsonl.lock").exists()
    capsys.readouterr()


def test_an_html_server_is_named_as_not_an_openai_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Welcome</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert main(["run", "Q?", "--backend", url]) == 2
    finally:
        server.shutdown()
    err = capsys.readouterr().err
    assert "answered with text/html, not an OpenAI model list" in err
    assert len(err.splitlines()) == 1


async def test_a_multi_line_server_error_stays_one_line() -> None:
    from aiohttp import web

    from pacore.backends.openai_compat import OpenAIBackend
    from pacore.config import PacoreConfig
    from pacore.engine import Engine
    from tests.conftest import serve_chat

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=400, text="Bad request:\n  line two\n\n  line three")

    async with serve_chat(broken) as url, OpenAIBackend(url, model="m") as be:
        result = await Engine(be, PacoreConfig(widths=(2,))).solve("Q?")
    assert result.status == "failed"
    assert result.error is not None
    assert "\n" not in result.error
    errors = [t.error or "" for r in result.rounds for t in r.trajectories]
    assert errors
    assert all("Bad request: line two line three" in e for e in errors)
    assert all("\n" not in e for e in errors)


class FullDisk:
    """A file that takes `lines` writes, then fails as a full disk does (half a line lands)."""

    def __init__(self, path: Path, lines: int) -> None:
        self.fh = path.open("ab", buffering=0)
        self.lines = lines

    def tell(self) -> int:
        return self.fh.tell()

    def fileno(self) -> int:
        return self.fh.fileno()

    def write(self, data: bytes) -> int:
        if self.lines <= 0:
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.lines -= 1
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()

    def truncate(self, size: int) -> int:
        return self.fh.truncate(size)

    def close(self) -> None:
        self.fh.close()


def test_a_full_disk_is_one_line_and_leaves_a_resumable_output(
    srv: FakeServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = jsonl(tmp_path / "in.jsonl", [{"id": f"p{i}", "question": f"Q{i}?"} for i in range(6)])
    out = tmp_path / "out.jsonl"

    def small_disk(path: Path) -> IO[bytes]:
        return FullDisk(path, lines=2)  # type: ignore[return-value]

    monkeypatch.setattr(appender, "open_append", small_disk)
    args = ["run", "--input", str(src), "--output", str(out), "--backend", srv.url, "--quiet"]
    assert main([*args, "--no-text"]) == 1  # what was written is safe
    err = capsys.readouterr().err
    assert "No space left on device" in err
    assert "rerun the same command to resume" in err
    assert len(err.splitlines()) == 1
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b""  # no torn line left behind
    saved = [json.loads(line)["id"] for line in lines[:-1]]
    assert len(saved) == 2
    monkeypatch.undo()
    assert main([*args, "--no-text"]) == 0  # the disk has room again: it resumes
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == [f"p{i}" for i in range(6)]
    assert ids[: len(saved)] == saved


def _slow_batch(tmp_path: Path, out: Path, url: str) -> list[str]:
    """`pacore run` of six problems into `out`, one at a time (the server answers each in
    0.2 s): a batch to stop or race while it runs."""
    src = jsonl(tmp_path / "in.jsonl", [{"id": f"p{i}", "question": f"Q{i}?"} for i in range(6)])
    return [sys.executable, "-m", "pacore.cli", "run", "--input", str(src), "--output",
            str(out), "--backend", url, "--concurrency", "1", "--quiet"]  # fmt: skip


def test_two_writers_on_one_output_one_is_refused_naming_the_pid(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with run_in_thread(FakeConfig(ttft_s=0.2)) as server:
        cmd = _slow_batch(tmp_path, out, server.url)
        first = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_for_lines(out, 1)
            second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        finally:
            first.send_signal(signal.SIGINT)
            first.communicate(timeout=60)
        assert second.returncode == 2
        assert f"being written by another pacore (PID {first.pid})" in second.stderr
        assert len(second.stderr.splitlines()) == 1
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == [f"p{i}" for i in range(6)]  # every id once


def test_sigterm_stops_a_batch_as_ctrl_c_does(tmp_path: Path) -> None:
    """`kill` (a scheduler, `timeout`) ended pacore at once: no line saying where the
    finished results are, and the lock file left behind. SIGTERM now stops the batch the
    way Ctrl-C does, with the exit code of a SIGTERM (143), and a rerun resumes."""
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with run_in_thread(FakeConfig(ttft_s=0.2)) as server:
        cmd = _slow_batch(tmp_path, out, server.url)
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            wait_for_lines(out, 1)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143
        assert f"pacore: terminated; finished results are in {out}, rerun to resume" in err
        assert "Traceback" not in err
        assert not list(tmp_path.glob("*.lock"))  # released, as on a clean exit
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == [f"p{i}" for i in range(6)]


def test_sigterm_stops_a_background_job_whose_sigint_is_ignored(tmp_path: Path) -> None:
    """A script's background job (`pacore ... &`) starts with SIGINT ignored: SIGTERM was
    turned into a SIGINT that nothing heard, and `kill` did nothing at all."""
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with run_in_thread(FakeConfig(ttft_s=0.2)) as server:
        cmd = _slow_batch(tmp_path, out, server.url)
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        try:
            wait_for_lines(out, 1)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert "pacore: terminated" in err
    assert "Traceback" not in err


BLOCKED = """
import os, signal, sys, threading, time
from pacore import aio
from pacore.cli import TERM_GRACE_S, _stop_on_signals

async def busy():
    time.sleep(60)  # a training step: code that never yields to the loop

got, restore = _stop_on_signals(client=True)
threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
started = time.monotonic()
try:
    aio.run(busy())
except KeyboardInterrupt:
    print(f"stopped after {time.monotonic() - started:.1f}s (grace {TERM_GRACE_S}s)")
finally:
    restore()
"""


def test_sigterm_stops_a_command_busy_in_code_that_never_yields() -> None:
    """`train grpo` trains inside the event loop without yielding: the runner's
    cancellation waited for the whole training, which then exited 143 as if it had
    failed. A second SIGINT follows after `TERM_GRACE_S`, which stops it there."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED], env=env, capture_output=True, text=True, timeout=40
    )
    assert "stopped after" in done.stdout, done.stderr
    seconds = float(re.findall(r"[\d.]+", done.stdout)[0])
    assert seconds < 30  # stopped in the step, not after the 60 s it would take
