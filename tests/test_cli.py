"""The `pacore` command line: single questions, batches, resume and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacore.cli import main
from tests.conftest import dead_url
from tests.fake_server import FakeConfig, run_in_thread
from tests.helpers import wait_for_lines

ROOT = Path(__file__).resolve().parents[1]


def boxed_answer(messages: list[dict[str, object]], index: int, body: dict[str, object]) -> str:
    return f"<think>working {index}</think>The answer is \\boxed{{42}}."


@pytest.fixture
def srv() -> Iterator[object]:
    with run_in_thread(FakeConfig(responder=boxed_answer)) as server:
        yield server


def run_cli(*argv: str) -> int:
    return main(list(argv))


def test_single_question_prints_the_answer(srv: object, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli("run", "What is 6*7?", "--backend", srv.url, "--preset", "low")  # type: ignore[attr-defined]
    out, err = capsys.readouterr()
    assert code == 0
    assert out.strip() == "The answer is \\boxed{42}."
    assert "tokens generated in 2 requests" in err


def test_json_prints_the_whole_result(srv: object, capsys: pytest.CaptureFixture[str]) -> None:
    url = srv.url  # type: ignore[attr-defined]
    code = run_cli("run", "Q?", "--backend", url, "--widths", "3,2", "--json", "--seed", "1")
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["widths"] == [3, 2, 1]
    assert [len(r) for r in data["rounds"]] == [3, 2, 1]
    assert data["answer"] == "The answer is \\boxed{42}."
    assert data["requests"] == 3
    assert data["ttc_tokens"] > 0


def test_stream_flag_streams(srv: object, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli("run", "Q?", "--backend", srv.url, "--stream", "--quiet")  # type: ignore[attr-defined]
    assert code == 0
    assert srv.stats.bodies[-1]["stream"] is True  # type: ignore[attr-defined]
    assert "boxed{42}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "   "], "the question is empty"),
        (["run"], "give a question"),
        (["run", "Q", "--widths", "0"], "width 0 must be at least 1"),
        (["run", "Q", "--widths", "4,-2"], "width -2 must be at least 1"),
        (["run", "Q", "--widths", "1.5"], "width '1.5' is not an integer"),
        (["run", "Q", "--widths", "2048"], "above the cap of 1024"),
        (["run", "Q", "--widths", "2048", "--max-width", "10"], "above the cap of 10"),
        (["run", "Q", "--preset", "ultra"], "unknown preset 'ultra'"),
        (["run", "Q", "--preset", "low", "--widths", "4"], "not allowed with argument"),
        (["run", "Q", "--temperature", "hot"], "invalid float value"),
        (["run", "Q", "--backend", "localhost:8000"], "must start with http"),
        (["run", "Q", "--compaction", "zip"], "unknown compaction"),
        (["run", "Q", "--output", "x.jsonl"], "--output needs --input"),
        (["run", "Q", "--retry-failed"], "--retry-failed is for a batch"),
        (["run", "Q", "--no-text"], "--no-text is for a batch"),
        (["run", "--input", "p.jsonl", "--output", "o.jsonl", "--json"], "--json prints one"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = run_cli(*args)
    except SystemExit as exc:  # argparse's own errors exit; pacore's return the code
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_unreachable_backend(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli("run", "Q", "--backend", dead_url(), "--wait-ready", "0")
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("pacore: error: cannot reach backend")
    assert len(err.splitlines()) == 1


def test_malformed_input_file_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "question": "Q"}\n{"id": "b", "question": \n')
    code = run_cli("run", "--input", str(src), "--output", str(tmp_path / "o.jsonl"))
    err = capsys.readouterr().err
    assert code == 2
    assert f"{src}:2: invalid JSON" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "o.jsonl").exists()


def test_missing_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli("run", "--input", str(tmp_path / "nope.jsonl"), "--output", "o.jsonl")
    assert code == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err


def _problems(path: Path, count: int) -> Path:
    with path.open("w") as fh:
        for i in range(count):
            fh.write(json.dumps({"id": f"q{i}", "question": f"What is {i}+{i}?"}) + "\n")
    return path


def test_batch_writes_every_result_and_resumes(
    tmp_path: Path, srv: object, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _problems(tmp_path / "in.jsonl", 5)
    out = tmp_path / "out.jsonl"
    url = srv.url  # type: ignore[attr-defined]
    assert run_cli("run", "--input", str(src), "--output", str(out), "--backend", url) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == [f"q{i}" for i in range(5)]
    for r in records:
        for key in ("answer", "final_text", "rounds", "ttc_tokens", "max_context_tokens"):
            assert key in r
        assert r["requests"] == 2
        assert r["status"] == "ok"
        assert {"text", "message", "status", "finish_reason", "usage"} <= set(r["rounds"][0][0])
    requests = srv.stats.requests  # type: ignore[attr-defined]
    # A rerun skips every id already there: no request, no duplicate line.
    assert run_cli("run", "--input", str(src), "--output", str(out), "--backend", url) == 0
    assert srv.stats.requests == requests  # type: ignore[attr-defined]
    assert len(out.read_text().splitlines()) == 5
    assert "resuming: 5 of 5" in capsys.readouterr().err


def test_batch_keeps_metadata(tmp_path: Path, srv: object) -> None:
    src = tmp_path / "in.jsonl"
    record = {"id": "m", "messages": [{"role": "user", "content": "Q"}], "ground_truth": "7"}
    src.write_text(json.dumps(record) + "\n")
    out = tmp_path / "out.jsonl"
    run_cli("run", "--input", str(src), "--output", str(out), "--backend", srv.url, "--quiet")  # type: ignore[attr-defined]
    (line,) = out.read_text().splitlines()
    assert json.loads(line)["metadata"] == {"ground_truth": "7"}


def test_killed_batch_resumes_without_losing_or_repeating(tmp_path: Path) -> None:
    """Kill a real `pacore run` process midway, rerun it, and get every result once."""
    src = _problems(tmp_path / "in.jsonl", 8)
    out = tmp_path / "out.jsonl"
    config = FakeConfig(responder=boxed_answer, ttft_s=0.15)
    with run_in_thread(config) as server:
        cmd = [
            sys.executable, "-m", "pacore.cli", "run", "--input", str(src), "--output", str(out),
            "--backend", server.url, "--concurrency", "1", "--quiet",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for_lines(out, 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = [json.loads(x)["id"] for x in out.read_text().splitlines()]
        assert 2 <= len(first) < 8
        before = server.stats.requests
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        rerun_requests = server.stats.requests - before
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert sorted(ids) == sorted(f"q{i}" for i in range(8))
    assert len(ids) == len(set(ids))
    # Only unfinished problems were asked again (2 rounds each; one may have been mid-flight).
    assert rerun_requests == 2 * (8 - len(first))


def test_help_is_quick_to_import() -> None:
    # `pacore --help` must not import the HTTP stack or the embedded model.
    code = (
        "import sys; from pacore import cli; "
        "print(any(m in sys.modules for m in ('aiohttp', 'xllamacpp', 'jinja2')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_system_message_is_prepended(srv: object, tmp_path: Path) -> None:
    url = srv.url  # type: ignore[attr-defined]
    assert run_cli("run", "Q?", "--backend", url, "--system", "Box it.", "--quiet") == 0
    bodies = srv.stats.bodies  # type: ignore[attr-defined]
    assert bodies[-1]["messages"][0] == {"role": "system", "content": "Box it."}
    # A batch record with its own system message keeps it.
    src = tmp_path / "in.jsonl"
    own = [{"role": "system", "content": "Mine."}, {"role": "user", "content": "Q"}]
    src.write_text(json.dumps({"id": "s", "messages": own}) + "\n")
    out = tmp_path / "out.jsonl"
    args = ["--input", str(src), "--output", str(out), "--system", "Box it.", "--quiet"]
    assert run_cli("run", *args, "--backend", url) == 0
    assert bodies[-1]["messages"][0] == {"role": "system", "content": "Mine."}


def test_custom_template_file(srv: object, tmp_path: Path) -> None:
    template = tmp_path / "t.j2"
    template.write_text("Q={{ original_prompt }}|{% for r in ref_responses %}[{{ r }}]{% endfor %}")
    url = srv.url  # type: ignore[attr-defined]
    assert (
        run_cli("run", "Why?", "--backend", url, "--widths", "2", "--template", str(template)) == 0
    )
    synthesis = srv.stats.bodies[-1]["messages"][-1]["content"]  # type: ignore[attr-defined]
    assert synthesis == "Q=Why?|[The answer is \\boxed{42}.][The answer is \\boxed{42}.]"


def test_bad_template_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{% for r in %}")
    assert run_cli("run", "Q", "--template", str(template)) == 2
    err = capsys.readouterr().err
    assert "template syntax error" in err
    assert len(err.splitlines()) == 1
