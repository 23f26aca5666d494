"""The files layer (`pacore.io`) as every command inherits it, driven through the real
commands against the fake upstream: outputs guarded, inputs read once, resumes
fingerprinted, full disks survived, modes kept. Each case checks the exit code, the
one line on stderr (no traceback) and the bytes of every file before and after."""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pacore.cli import main
from tests.fake_server import FakeConfig, FakeServer, run_in_thread

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = [
    {"id": f"p{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(4)
]


@pytest.fixture(scope="module")
def srv() -> Iterator[FakeServer]:
    with run_in_thread(FakeConfig()) as server:
        yield server


def jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(folder.iterdir())
        if not stat.S_ISFIFO(p.lstat().st_mode)
    }


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("pacore: error: ")
    return lines[0]


# ------------------------------------------------------------------ the output guard

Target = Callable[[Path], Path]
"""Makes the output to try in a folder (which already holds `in.jsonl`)."""


def user_dataset(d: Path) -> Path:
    """A 500-problem data set the user wrote: no pacore format marker."""
    return jsonl(d / "mine.jsonl", [{"id": i, "question": f"Q{i}?"} for i in range(500)])


def hard_link_to_input(d: Path) -> Path:
    os.link(d / "in.jsonl", d / "link.jsonl")
    return d / "link.jsonl"


def symlink_to_input(d: Path) -> Path:
    (d / "sym.jsonl").symlink_to(d / "in.jsonl")
    return d / "sym.jsonl"


def the_input(d: Path) -> Path:
    return d / "in.jsonl"


def fifo(d: Path) -> Path:
    os.mkfifo(d / "pipe.jsonl")
    return d / "pipe.jsonl"


def folder(d: Path) -> Path:
    (d / "dir.jsonl").mkdir()
    return d / "dir.jsonl"


def device(d: Path) -> Path:
    """A device under a name with the command's suffix (as `/dev/full` behind a link)."""
    (d / "dev.jsonl").symlink_to("/dev/null")
    return d / "dev.jsonl"


TARGETS: dict[str, tuple[Target, str]] = {
    "a user's data set": (user_dataset, "was not written by this pacore command"),
    "the input": (the_input, "(the same file under this name)"),
    "a hard link to the input": (hard_link_to_input, "(the same file under this name)"),
    "a symlink to the input": (symlink_to_input, "(the same file under this name)"),
    "a FIFO": (fifo, "is a FIFO, not a regular file"),
    "a folder": (folder, "is a directory"),
    "a device": (device, "is a device, not a regular file"),
}

COMMANDS: dict[str, Callable[[Path, Path], list[str]]] = {
    "train arith": lambda d, out: ["train", "arith", "--count", "5", "--out", str(out)],
    "train filter": lambda d, out: [
        "train",
        "filter",
        "--stage",
        "1",
        "--input",
        str(d / "in.jsonl"),
        "--out",
        str(out),
    ],
    "train export": lambda d, out: [
        "train",
        "export",
        "--format",
        "verl",
        "--input",
        str(d / "in.jsonl"),
        "--out",
        str(out),
        "--refs",
        "2..2",
    ],
    "train pool": lambda d, out: [
        "train",
        "pool",
        "--dataset",
        str(d / "in.jsonl"),
        "--out",
        str(out),
        "--backend",
        "http://127.0.0.1:9/v1",
    ],
}


def pool_input(d: Path) -> Path:
    records = [
        {"id": r["id"], "question": r["question"], "ground_truth": r["answer"],
         "responses": [f"\\boxed{{{r['answer']}}}", "\\boxed{7}", "\\boxed{8}"]}
        for r in PROBLEMS
    ]  # fmt: skip
    return jsonl(d / "in.jsonl", records)


CASES = [
    (command, target)
    for command in COMMANDS
    for target in TARGETS
    if not (command == "train arith" and "input" in target)  # arith reads no input
]


@pytest.mark.parametrize(("command", "target"), CASES)
def test_every_writing_command_refuses_what_it_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, target: str
) -> None:
    make, message = TARGETS[target]
    pool_input(tmp_path)
    out = make(tmp_path)
    before = snapshot(tmp_path)
    assert main(COMMANDS[command](tmp_path, out)) == 2
    line = one_line_error(capsys.readouterr().err)
    assert message in line
    assert snapshot(tmp_path) == before
    if target == "a device":
        assert stat.S_ISCHR(os.stat(out).st_mode)


def test_a_command_replaces_its_own_earlier_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a.jsonl"
    assert main(["train", "arith", "--count", "5", "--out", str(out)]) == 0
    first = out.read_bytes()
    assert main(["train", "arith", "--count", "7", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 7
    assert out.read_bytes() != first
    pool_input(tmp_path)
    export = tmp_path / "e.parquet"
    argv = [
        "train",
        "export",
        "--format",
        "verl",
        "--input",
        str(tmp_path / "in.jsonl"),
        "--refs",
        "2..2",
    ]
    assert main([*argv, "--out", str(export)]) == 0
    assert main([*argv, "--out", str(export)]) == 0
    kept = tmp_path / "k.jsonl"
    argv = ["train", "filter", "--stage", "1", "--input", str(tmp_path / "in.jsonl")]
    assert main([*argv, "--out", str(kept)]) == 0
    assert main([*argv, "--out", str(kept)]) == 0
    capsys.readouterr()


def test_export_refuses_a_parquet_file_it_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "theirs.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), out)
    before = out.read_bytes()
    pool_input(tmp_path)
    argv = [
        "train",
        "export",
        "--format",
        "verl",
        "--input",
        str(tmp_path / "in.jsonl"),
        "--refs",
        "2..2",
    ]
    assert main([*argv, "--out", str(out)]) == 2
    assert "was not written by this pacore command" in one_line_error(capsys.readouterr().err)
    assert out.read_bytes() == before


def test_run_refuses_each_bad_output_the_same_way(
    srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = jsonl(tmp_path / "in.jsonl", PROBLEMS)
    for name, (make, message) in TARGETS.items():
        if name == "a user's data set":
            message = "not a pacore result line"
        out = make(tmp_path)
        before = snapshot(tmp_path)
        argv = ["run", "--input", str(src), "--output", str(out), "--backend", srv.url]
        assert main([*argv, "--quiet"]) == 2, name
        assert message in one_line_error(capsys.readouterr().err), name
        assert snapshot(tmp_path) == before, name


# ------------------------------------------------------------------ inputs read once


def feed_fifo(path: Path, data: bytes) -> threading.Thread:
    def write() -> None:
        with path.open("wb") as fh:
            fh.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_run_reads_a_fifo_input_once(
    srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = tmp_path / "problems"
    os.mkfifo(pipe)
    feeder = feed_fifo(pipe, "".join(json.dumps(p) + "\n" for p in PROBLEMS).encode())
    out = tmp_path / "out.jsonl"
    argv = ["run", "--input", str(pipe), "--output", str(out), "--backend", srv.url]
    assert main([*argv, "--quiet", "--widths", "2"]) == 0
    feeder.join(5)
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == [p["id"] for p in PROBLEMS]
    assert f"{len(PROBLEMS)} results written" in capsys.readouterr().err


def test_run_reads_dev_stdin_and_process_substitution(tmp_path: Path) -> None:
    """`--input /dev/stdin` from a pipe, and `<(cat f)` through bash."""
    src = jsonl(tmp_path / "in.jsonl", PROBLEMS)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with run_in_thread(FakeConfig()) as server:
        base = [sys.executable, "-m", "pacore.cli", "run", "--backend", server.url, "--quiet"]
        out = tmp_path / "stdin.jsonl"
        done = subprocess.run(
            [*base, "--input", "/dev/stdin", "--output", str(out)],
            input=src.read_bytes(),
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert len(out.read_text().splitlines()) == len(PROBLEMS)
        out2 = tmp_path / "subst.jsonl"
        line = " ".join([*base, "--input", f"<(cat {src})", "--output", str(out2)])
        done = subprocess.run(["bash", "-c", line], env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert len(out2.read_text().splitlines()) == len(PROBLEMS)


def test_eval_and_train_filter_read_a_fifo(
    srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pipe = tmp_path / "data.jsonl"
    os.mkfifo(pipe)
    feeder = feed_fifo(pipe, "".join(json.dumps(p) + "\n" for p in PROBLEMS).encode())
    argv = ["eval", "--dataset", str(pipe), "--method", "single", "--runs", "1"]
    code = main([*argv, "--backend", srv.url, "--out", str(tmp_path / "ev"), "--quiet"])
    feeder.join(5)
    assert code == 0, capsys.readouterr().err
    assert len((tmp_path / "ev" / "results.jsonl").read_text().splitlines()) == len(PROBLEMS)
    pool = pool_input(tmp_path)
    pipe2 = tmp_path / "pool.jsonl"
    os.mkfifo(pipe2)
    feeder = feed_fifo(pipe2, pool.read_bytes())
    out = tmp_path / "kept.jsonl"
    assert main(["train", "filter", "--stage", "1", "--input", str(pipe2), "--out", str(out)]) == 0
    feeder.join(5)
    assert out.exists()
    capsys.readouterr()


def test_a_device_input_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    argv = ["run", "--input", "/dev/zero", "--output", str(out), "--backend", "http://127.0.0.1:9"]
    assert main(argv) == 2
    assert "/dev/zero: is a device" in one_line_error(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize(
    ("constant", "message"),
    [
        ("NaN", "NaN is not a JSON number"),
        ("Infinity", "Infinity is not a JSON number"),
        ("-Infinity", "-Infinity is not a JSON number"),
        # Infinity spelt as a number: it became null in a run's metadata, and an eval
        # gold "inf", graded, exit 0.
        ("1e999", "1e999 is out of the range of a JSON number"),
        ("-2.5E+400", "-2.5E+400 is out of the range of a JSON number"),
    ],
)
def test_nan_in_an_input_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], constant: str, message: str
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps(PROBLEMS[0]) + "\n" + f'{{"id": "x", "question": "Q", "w": {constant}}}\n'
    )
    out = tmp_path / "out.jsonl"
    assert (
        main(["run", "--input", str(src), "--output", str(out), "--backend", "http://127.0.0.1:9"])
        == 2
    )
    assert f"in.jsonl:2: invalid JSON ({message}" in one_line_error(capsys.readouterr().err)
    assert not out.exists()
    argv = ["eval", "--dataset", str(src), "--method", "single", "--out", str(tmp_path / "e")]
    assert main([*argv, "--backend", "http://127.0.0.1:9"]) == 2
    assert "in.jsonl:2: invalid JSON" in one_line_error(capsys.readouterr().err)


# ------------------------------------------------------------------ resume fingerprints


def test_run_refuses_to_resume_an_output_of_another_input(
    srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = jsonl(tmp_path / "a.jsonl", PROBLEMS[:2])
    out = tmp_path / "out.jsonl"
    base = ["run", "--output", str(out), "--backend", srv.url, "--quiet", "--widths", "2"]
    assert main([*base, "--input", str(a)]) == 0
    before = out.read_bytes()
    other = [{**p, "question": p["question"] + " Explain."} for p in PROBLEMS]
    b = jsonl(tmp_path / "b.jsonl", other)  # the same ids, other questions
    capsys.readouterr()
    assert main([*base, "--input", str(b)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "computed on another problem (a different input under the same ids)" in line
    assert out.read_bytes() == before
    # other result-changing settings are refused too; throughput options are not
    assert main([*base, "--input", str(a), "--temperature", "0.5"]) == 2
    assert "other result-changing settings" in one_line_error(capsys.readouterr().err)
    assert out.read_bytes() == before
    more = jsonl(tmp_path / "more.jsonl", PROBLEMS)  # a larger input extends the output
    assert main([*base, "--input", str(more), "--concurrency", "3"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == [p["id"] for p in PROBLEMS]
    assert {r["format"] for r in records} == {"pacore.run/1"}
    assert len({r["fingerprint"]["settings"] for r in records}) == 1


def test_an_output_of_a_newer_pacore_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = jsonl(tmp_path / "in.jsonl", PROBLEMS)
    out = tmp_path / "out.jsonl"
    line = {"format": "pacore.run/9", "id": "p0", "status": "ok", "ttc_tokens": 1, "rounds": []}
    out.write_text(json.dumps(line) + "\n")
    assert (
        main(["run", "--input", str(src), "--output", str(out), "--backend", "http://127.0.0.1:9"])
        == 2
    )
    assert "written by a newer pacore" in one_line_error(capsys.readouterr().err)


# ------------------------------------------------------------------ a real full disk


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from pacore.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_full_disk_leaves_only_whole_lines_and_the_rerun_resumes(tmp_path: Path) -> None:
    """The kernel refuses writes past RLIMIT_FSIZE as a full disk refuses them: a line
    lands in part, then the write fails. Only whole lines may stay behind, and the same
    command resumes once there is room. (A buffered writer flushed the rest of the
    failed line on close, after the cut: a fragment the rerun then refused.)"""
    problems = [{"id": f"p{i}", "question": f"Q{i} " + "x" * 300} for i in range(12)]
    src = jsonl(tmp_path / "in.jsonl", problems)
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with run_in_thread(FakeConfig()) as server:
        argv = ["run", "--input", str(src), "--output", str(out), "--backend", server.url,
                "--quiet", "--widths", "2", "--concurrency", "1"]  # fmt: skip
        limit = 9000  # a few result lines of ~2.5 kB fit
        done = subprocess.run(
            [sys.executable, "-c", FULL_DISK, str(limit), *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        assert "File too large" in done.stderr
        assert "rerun the same command to resume" in done.stderr
        assert "Traceback" not in done.stderr
        data = out.read_bytes()
        assert 0 < len(data) <= limit
        assert data.endswith(b"\n")
        saved = [json.loads(line)["id"] for line in data.splitlines()]
        again = subprocess.run(
            [sys.executable, "-m", "pacore.cli", *argv], env=env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert ids[: len(saved)] == saved
    assert sorted(ids) == sorted(p["id"] for p in problems)
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == resource.RLIM_INFINITY


# ------------------------------------------------------------------ normal file modes


def test_files_written_whole_get_ordinary_modes(
    srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = os.umask(0o022)
    try:
        arith = tmp_path / "a.jsonl"
        assert main(["train", "arith", "--count", "3", "--out", str(arith)]) == 0
        pool = pool_input(tmp_path)
        kept = tmp_path / "k.jsonl"
        assert (
            main(["train", "filter", "--stage", "1", "--input", str(pool), "--out", str(kept)]) == 0
        )
        export = tmp_path / "e.parquet"
        argv = [
            "train",
            "export",
            "--format",
            "verl",
            "--input",
            str(pool),
            "--refs",
            "2..2",
            "--out",
            str(export),
        ]
        assert main(argv) == 0
        ev = tmp_path / "ev"
        data = jsonl(tmp_path / "d.jsonl", PROBLEMS)
        argv = ["eval", "--dataset", str(data), "--method", "single", "--runs", "1",
                "--backend", srv.url, "--out", str(ev), "--quiet"]  # fmt: skip
        assert main(argv) == 0
        written = [arith, kept, export, kept.with_name("k.jsonl.counts.json"),
                   ev / "summary.json", ev / "report.md", ev / "fingerprint.json",
                   ev / "results.jsonl"]  # fmt: skip
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written}
        assert set(modes.values()) == {"0o644"}, modes
        kept.chmod(0o640)  # a replaced file keeps the mode its owner gave it
        assert (
            main(["train", "filter", "--stage", "1", "--input", str(pool), "--out", str(kept)]) == 0
        )
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    finally:
        os.umask(old)
    capsys.readouterr()


def test_an_interrupted_train_pool_names_the_store_it_resumes_from(
    srv: FakeServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool file is written whole at the end; after Ctrl-C what is saved is the
    store, so that is the file the message names, and it exists."""
    import pacore.train.pool as pool_module

    real = pool_module.fill_pools

    async def interrupted(*args: Any, **kwargs: Any) -> Any:
        async for pooled in real(*args, **kwargs):
            yield pooled
            raise KeyboardInterrupt

    monkeypatch.setattr(pool_module, "fill_pools", interrupted)
    data = jsonl(tmp_path / "d.jsonl", PROBLEMS)
    out = tmp_path / "pool.jsonl"
    argv = ["train", "pool", "--dataset", str(data), "--out", str(out), "--size", "2"]
    assert main([*argv, "--backend", srv.url]) == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    store = tmp_path / "pool.jsonl.store.sqlite"
    assert line == f"pacore: interrupted; finished results are in {store}, rerun to resume"
    assert store.exists()
    assert not out.exists()


def test_train_pool_refuses_a_foreign_store_before_the_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    foreign = tmp_path / "app.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE users (name TEXT)")
    db.commit()
    db.close()
    data = jsonl(tmp_path / "d.jsonl", PROBLEMS)
    before = snapshot(tmp_path)
    argv = ["train", "pool", "--dataset", str(data), "--out", str(tmp_path / "p.jsonl"),
            "--store", str(foreign), "--backend", "http://127.0.0.1:9/v1"]  # fmt: skip
    assert main(argv) == 2
    assert "app.sqlite" in one_line_error(capsys.readouterr().err)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ what a message says


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "x", "question": "Q\x00"}', "invalid JSON (Invalid control character at column"),
        (
            '{"id": "x", "question": "Q", "n": ' + "1" * 5000 + "}",
            "invalid JSON (a number of more than 4300 digits)",
        ),
    ],
)
def test_an_input_error_says_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    """Not "at at", not Python's advice to raise `sys.set_int_max_str_digits`."""
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(PROBLEMS[0]) + "\n" + line + "\n")
    argv = ["run", "--input", str(src), "--output", str(tmp_path / "o.jsonl")]
    assert main([*argv, "--backend", "http://127.0.0.1:9"]) == 2
    error = one_line_error(capsys.readouterr().err)
    assert f"in.jsonl:2: {message}" in error
    assert " at at " not in error
    assert "sys." not in error


def test_a_byte_order_mark_is_not_part_of_the_input(
    srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Windows editors start a UTF-8 file with a BOM: the first line was "invalid JSON"."""
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(p) + "\n" for p in PROBLEMS).encode())
    out = tmp_path / "o.jsonl"
    assert main(["run", "--input", str(src), "--output", str(out), "--backend", srv.url, "-q"]) == 0
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["p0", "p1", "p2", "p3"]
    listed = tmp_path / "d.json"
    listed.write_bytes(b"\xef\xbb\xbf" + json.dumps(PROBLEMS).encode())
    argv = ["eval", "--dataset", str(listed), "--method", "single", "--runs", "1", "--pool", "1"]
    argv += ["--out", str(tmp_path / "ev"), "--backend", srv.url, "--no-plots", "-q"]
    assert main(argv) == 0
    records = (tmp_path / "ev" / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in records) == ["p0", "p1", "p2", "p3"]


@pytest.mark.parametrize(
    ("output", "message"),
    [("", "argument --output: is empty"), ("newdir/", "argument --output: newdir/ names a folder")],
)
def test_an_output_that_names_no_file_is_refused(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    output: str,
    message: str,
) -> None:
    """`--output newdir/` wrote a file named `newdir`; `--output ""` named the folder."""
    monkeypatch.chdir(tmp_path)
    src = jsonl(tmp_path / "in.jsonl", PROBLEMS)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--input", str(src), "--output", output, "--backend", "http://127.0.0.1:9"])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_an_output_in_a_new_folder_and_a_resume_count_of_this_input(
    srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The output's folder is created (the lock beside the output failed to be, naming
    the lock); a resume counts only this input's problems as done (an output holding
    another input's ids said "2 of 2 problems already in" and ran both)."""
    out = tmp_path / "new" / "deeper" / "o.jsonl"
    first = jsonl(tmp_path / "a.jsonl", PROBLEMS[:2])
    assert main(["run", "--input", str(first), "--output", str(out), "--backend", srv.url]) == 0
    capsys.readouterr()
    second = jsonl(tmp_path / "b.jsonl", PROBLEMS[1:4])
    assert main(["run", "--input", str(second), "--output", str(out), "--backend", srv.url]) == 0
    err = capsys.readouterr().err
    assert "pacore: resuming: 1 of 3 problems already in" in err
    assert len(out.read_text().splitlines()) == 4


def test_a_max_width_under_one_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    """It said "width 4 is above the cap of 0 (raise it with max_width)"."""
    assert main(["run", "Q", "--backend", "http://127.0.0.1:9", "--max-width", "0"]) == 2
    assert "--max-width must be at least 1, got 0" in one_line_error(capsys.readouterr().err)
