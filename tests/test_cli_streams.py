"""stdout and stderr that cannot be written: the work is kept, the exit code tells.

Progress on stderr is best effort: a log reader that went away (`2>&1 | head -1`) or a
full disk once stopped a batch (rich answers a broken pipe with `SystemExit`) and lost
the results it had computed. An answer that cannot reach stdout is one line and exit
code 1, never a traceback.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacore.progress import StatusLine
from tests.fake_server import FakeConfig, FakeServer, run_in_thread

PACORE = [sys.executable, "-m", "pacore"]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeServer]:
    with run_in_thread(FakeConfig(ttft_s=0.02)) as server:
        yield server


def problems(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "problems.jsonl"
    lines = [json.dumps({"id": f"q{i}", "question": f"What is {i} + 1?"}) for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


class Broken(io.StringIO):
    """A stream whose every write fails as `error` does."""

    def __init__(self, error: OSError) -> None:
        super().__init__()
        self.error = error

    def write(self, text: str) -> int:
        raise self.error

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"), OSError(28, "No space")])
@pytest.mark.parametrize("terminal", [True, False])
def test_a_status_line_that_cannot_be_written_goes_quiet(error: OSError, terminal: bool) -> None:
    status = StatusLine(Broken(error), terminal=terminal, interval=0)
    status.show("round 1")  # neither raises nor exits (rich's own answer is SystemExit)
    status.line("problems 1/8 done")
    status.line("problems 2/8 done")
    status.close("done")
    assert status.silenced


def test_a_batch_whose_stderr_reader_left_writes_every_result(
    tmp_path: Path, upstream: FakeServer
) -> None:
    out = tmp_path / "out.jsonl"
    args = ["run", "--input", str(problems(tmp_path, 8)), "--output", str(out),
            "--backend", upstream.url, "--widths", "2", "--concurrency", "1"]  # fmt: skip
    proc = subprocess.Popen([*PACORE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the reader takes one line, then leaves
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0
    assert first
    assert len(out.read_text().splitlines()) == 8
    with open("/dev/full", "w") as full:  # and a stderr on a full disk
        again = tmp_path / "again.jsonl"
        args[args.index(str(out))] = str(again)
        assert subprocess.run([*PACORE, *args], stderr=full, timeout=120).returncode == 0
    assert len(again.read_text().splitlines()) == 8


def test_an_answer_that_cannot_reach_stdout_is_one_line_and_exit_1(
    tmp_path: Path, upstream: FakeServer
) -> None:
    args = ["run", "What is 1 + 1?", "--backend", upstream.url, "--widths", "2", "--json"]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([*PACORE, *args], stdout=full, stderr=subprocess.PIPE, timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert "cannot write (No space left on device)" in err
