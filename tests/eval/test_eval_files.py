"""`pacore eval` and the files it is given: nothing lost, nothing damaged.

One writer per folder, one record per (id, method, run), a fingerprint of what the
folder's results were computed on, and every I/O error as one line with exit 1 or 2,
the folder left as it was or resumable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pacore.cli import main
from pacore.eval import results_file
from pacore.eval.records import RunRecord
from pacore.eval.results_file import inspect_results, one_per_key
from pacore.io.locks import OutputLock
from tests.fake_server import FakeConfig, ResponderResult, run_in_thread
from tests.helpers import FullDisk

ROOT = Path(__file__).resolve().parents[2]
Body = dict[str, Any]


def boxed(messages: list[Body], index: int, body: Body) -> ResponderResult:
    """A model that always answers 42."""
    return "<think>r</think>The answer is \\boxed{42}."


def write_dataset(path: Path, problems: int, answer: str = "42", question: str = "Q") -> Path:
    lines = (
        json.dumps({"id": f"p{i}", "question": f"{question} {i}?", "answer": answer})
        for i in range(problems)
    )
    path.write_text("".join(line + "\n" for line in lines))
    return path


def eval_argv(data: Path, out: Path, url: str, *extra: str) -> list[str]:
    argv = ["eval", "--dataset", str(data), "--out", str(out), "--backend", url]
    return [*argv, "--method", "single", "--runs", "2", "--quiet", "--no-plots", *extra]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (and a lock beside it), by relative path, with its bytes."""
    files = {p.relative_to(folder.parent).as_posix(): p for p in folder.parent.rglob("*")}
    return {name: p.read_bytes() for name, p in sorted(files.items()) if p.is_file()}


def records_of(out: Path) -> list[Body]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def record(pid: str, run: int, status: str = "ok", answer: str = "42") -> RunRecord:
    return RunRecord.from_dict(
        {"id": pid, "method": "single", "run": run, "status": status, "answer": answer}
    )


# ------------------------------------------------------------------ one per key


def test_one_per_key_keeps_the_last_record_that_did_not_fail() -> None:
    chosen = one_per_key(
        [
            record("a", 0, answer="first"),
            record("a", 0, answer="second"),
            record("b", 0),
            record("b", 0, status="failed"),
            record("c", 0, status="failed", answer="x"),
            record("c", 0, status="failed", answer="y"),
        ]
    )
    got = {(r.id, r.status, r.answer) for r in chosen}
    assert got == {("a", "ok", "second"), ("b", "ok", "42"), ("c", "failed", "y")}


def test_duplicate_records_are_counted_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two writers (or an older pacore, or a hand) left every key twice: the summary
    counts `--runs` runs per problem, and a rerun sends nothing."""
    data = write_dataset(tmp_path / "d.jsonl", 3)
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        assert main(eval_argv(data, out, srv.url)) == 0
        results = out / "results.jsonl"
        results.write_bytes(results.read_bytes() * 2)
        before = srv.stats.requests
        assert main(eval_argv(data, out, srv.url)) == 0
        assert srv.stats.requests == before
        assert main(eval_argv(data, out, srv.url, "--report-only")) == 0
    summary = json.loads((out / "summary.json").read_text())["methods"]["single"]
    assert (summary["n_problems"], summary["n_runs"], summary["results"]) == (3, 2, 6)
    assert "3 × 2" in (out / "report.md").read_text()
    capsys.readouterr()


# ------------------------------------------------------------------ fingerprint


@pytest.mark.parametrize("lost", [False, True], ids=["fingerprint", "lost fingerprint"])
def test_another_dataset_under_the_same_ids_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lost: bool
) -> None:
    """Refused by `fingerprint.json`; and without it (`lost`: a folder is then adopted as
    an earlier pacore's) by `problems.jsonl`, which says what its results were computed
    on (it was adopted, the old grades reported against the new questions and golds).
    The same dataset is adopted and gets its fingerprint back."""
    a = write_dataset(tmp_path / "a.jsonl", 3)
    b = write_dataset(tmp_path / "b.jsonl", 3, answer="7", question="Other")
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        assert main(eval_argv(a, out, srv.url)) == 0
        if lost:
            (out / "fingerprint.json").unlink()
        capsys.readouterr()
        files = snapshot(out)
        before = srv.stats.requests
        assert main(eval_argv(b, out, srv.url)) == 2
        assert main(eval_argv(b, out, srv.url, "--report-only")) == 2
        assert srv.stats.requests == before
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2
        assert "other questions or answers under 3 of the same ids (first 'p0'" in err[0]
        assert "use another --out, or move" in err[0]
        if lost:
            assert "problems.jsonl says so; fingerprint.json is missing" in err[0]
        assert snapshot(out) == files
        assert main(eval_argv(a, out, srv.url)) == 0
        assert srv.stats.requests == before
    assert (out / "fingerprint.json").exists()


@pytest.mark.parametrize(
    ("extra", "changed"),
    [
        (("--temperature", "0.5"), "temperature 1.0 (now 0.5)"),
        (("--seed", "9"), "seed 0 (now 9)"),
        (("--system", "Be brief."), "other questions or answers under 2"),
        (("--grader", "exact"), "grader 'math' (now 'exact')"),
    ],
)
def test_other_settings_on_a_folder_with_results_are_refused(
    tmp_path: Path, extra: tuple[str, ...], changed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path / "d.jsonl", 2)
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        assert main(eval_argv(data, out, srv.url)) == 0
        capsys.readouterr()
        assert main(eval_argv(data, out, srv.url, *extra)) == 2
    assert changed in capsys.readouterr().err


def test_a_folder_grows_with_more_problems_and_adopts_an_old_one(tmp_path: Path) -> None:
    """A larger --limit extends the folder; a folder from before fingerprints is adopted;
    one whose results were moved away starts over with any dataset."""
    data = write_dataset(tmp_path / "d.jsonl", 4)
    other = write_dataset(tmp_path / "o.jsonl", 4, answer="7", question="Other")
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        assert main(eval_argv(data, out, srv.url, "--limit", "2")) == 0
        per_problem = srv.stats.requests // 2  # the requests of one problem's pool
        assert main(eval_argv(data, out, srv.url)) == 0
        assert srv.stats.requests == 4 * per_problem
        assert len(json.loads((out / "fingerprint.json").read_text())["problems"]) == 4
        (out / "fingerprint.json").unlink()
        assert main(eval_argv(data, out, srv.url)) == 0
        assert (out / "fingerprint.json").exists()
        assert main(eval_argv(other, out, srv.url)) == 2
        (out / "results.jsonl").rename(tmp_path / "old.jsonl")
        assert main(eval_argv(other, out, srv.url)) == 0
        assert srv.stats.requests == 8 * per_problem


# ------------------------------------------------------------------ full disk


def test_a_full_disk_is_one_line_exit_1_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path / "d.jsonl", 3)
    out = tmp_path / "out"
    real = results_file.open_append

    def full_after_a_line_and_a_half(path: Path) -> Any:
        return FullDisk(real(path), room=len(json.dumps(_a_record_line())) * 3 // 2)

    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        monkeypatch.setattr(results_file, "open_append", full_after_a_line_and_a_half)
        assert main(eval_argv(data, out, srv.url, "--jobs", "1")) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "No space left on device" in err
        assert "rerun the same command to resume" in err
        assert "Traceback" not in err
        kept = (out / "results.jsonl").read_bytes()
        assert kept.endswith(b"\n")  # the part-written line was cut off again
        assert all(json.loads(line)["status"] == "ok" for line in kept.splitlines())
        assert not (tmp_path / "out.lock").exists()
        monkeypatch.setattr(results_file, "open_append", real)
        assert main(eval_argv(data, out, srv.url)) == 0
    keys = [(r["id"], r["method"], r["run"]) for r in records_of(out)]
    assert len(keys) == len(set(keys)) == 6
    summary = json.loads((out / "summary.json").read_text())["methods"]["single"]
    assert (summary["n_runs"], summary["accuracy"]) == (2, 1.0)


def _a_record_line() -> Body:
    return record("p0", 0).to_dict()


# ------------------------------------------------------------------ torn lines


def test_a_torn_line_left_by_a_crash_runs_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path / "d.jsonl", 2)
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        assert main(eval_argv(data, out, srv.url)) == 0
        results = out / "results.jsonl"
        whole = results.read_bytes()
        results.write_bytes(whole[: len(whole) - 30])
        assert main(eval_argv(data, out, srv.url)) == 0
    assert len(results.read_bytes().splitlines()) == 4
    assert json.loads((out / "summary.json").read_text())["methods"]["single"]["n_runs"] == 2
    capsys.readouterr()


def test_a_torn_line_is_cut_only_in_a_file_of_results(tmp_path: Path) -> None:
    good = json.dumps(_a_record_line())
    path = tmp_path / "results.jsonl"
    path.write_text(good + "\n" + good[:20])
    assert inspect_results(path).torn
    path.write_text(good + "\n" + '{"cfg": 1}')
    with pytest.raises(ValueError, match=":2: not an eval result line"):
        inspect_results(path)
    path.write_text('{"cfg": 1}\n' + good[:20])
    with pytest.raises(ValueError, match=":1: not an eval result line"):
        inspect_results(path)
    assert path.read_text() == '{"cfg": 1}\n' + good[:20]


# ------------------------------------------------------------------ the table


def _seed_results(out: Path, text: str, fingerprint: str | None = None) -> None:
    out.mkdir()
    (out / "results.jsonl").write_text(text)
    if fingerprint is not None:
        (out / "fingerprint.json").write_text(fingerprint)


@dataclass
class Case:
    """One hostile folder: how to set it up, what `pacore eval` must answer."""

    setup: Callable[[Path], Any]
    """Given tmp_path (the dataset is d.jsonl, the folder out/); may return a handle
    to keep alive while the command runs."""
    code: int
    message: str
    extra: tuple[str, ...] = ()
    requests: int | None = 0
    """Chat requests the server must receive (None: any)."""
    changes: bool = False
    """Whether the files may change."""
    config: dict[str, Any] = field(default_factory=dict)


def _own_file(tmp: Path, name: str, content: bytes) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / name).write_bytes(content)


def _locked(tmp: Path) -> OutputLock:
    lock = OutputLock((tmp / "out").resolve())
    lock.acquire()
    return lock


def _readonly(tmp: Path) -> None:
    (tmp / "ro").mkdir()
    os.chmod(tmp / "ro", 0o500)


CASES: dict[str, Case] = {
    "out under a file": Case(
        lambda t: (t / "file").write_text("x"),
        2,
        "file/sub: cannot be created, ",
        extra=("--out", "{tmp}/file/sub"),
    ),
    "out is a file": Case(
        lambda t: (t / "out").write_text("x"), 2, "out: exists and is not a folder"
    ),
    "store is a folder": Case(
        lambda t: (t / "st").mkdir(), 2, "st: is a directory", extra=("--store", "{tmp}/st")
    ),
    "foreign results": Case(
        lambda t: _seed_results(t / "out", '{"cfg": 1}\n'), 2, "results.jsonl:1: not an eval"
    ),
    "foreign torn tail": Case(
        lambda t: _seed_results(t / "out", '{"cfg": 1}'), 2, "results.jsonl:1: not an eval"
    ),
    "results is a folder": Case(
        lambda t: (t / "out" / "results.jsonl").mkdir(parents=True), 2, "is a directory"
    ),
    "bad fingerprint": Case(
        lambda t: _seed_results(t / "out", "", fingerprint="{"),
        2,
        "fingerprint.json: not a pacore fingerprint",
    ),
    "another writer": Case(_locked, 2, f"is being written by another pacore (PID {os.getpid()})"),
    # A folder of the user's own: its files of the report's names are not replaced.
    "a report of the user's": Case(
        lambda t: _own_file(t, "report.md", b"# My notes\n\nPaCoRe evaluation ideas\n"),
        2,
        "report.md: exists and was not written by this pacore command",
    ),
    "a summary of the user's": Case(
        lambda t: _own_file(t, "summary.json", b'{"methods": "mine", "format": "mine/1"}\n'),
        2,
        "summary.json: exists and was not written by this pacore command",
    ),
    "a summary that is a list": Case(
        lambda t: _own_file(t, "summary.json", b'[{"methods": {}}]\n'),
        2,
        "summary.json: exists and was not written",
    ),
    "a plot of the user's": Case(
        lambda t: _own_file(t, "prompt_tokens.png", b"\x89PNG\r\n\x1a\n" + bytes(200)),
        2,
        "prompt_tokens.png: exists and was not written",
    ),
    "a report that is a folder": Case(
        lambda t: (t / "out" / "report.md").mkdir(parents=True), 2, "report.md: is a directory"
    ),
    # /dev/zero was read for ever (23 GB, then the OOM killer), a FIFO waited on
    "results that are a device": Case(
        lambda t: _linked(t, "results.jsonl", "/dev/zero"), 2, "results.jsonl: is a device"
    ),
    "results that are a FIFO": Case(
        lambda t: _fifo(t, "results.jsonl"), 2, "results.jsonl: is a FIFO"
    ),
    "report-only, no results": Case(
        lambda t: None, 2, "no results to report on", extra=("--report-only",)
    ),
    "runs failed": Case(
        lambda t: None,
        1,
        "2 runs failed (infrastructure); rerun to retry",
        extra=("--retries", "0", "--runs", "1", "--pool", "1", "--on-failure", "continue"),
        requests=2,
        changes=True,
        config={"fail_rate": 1.0},
    ),
}
if os.geteuid() != 0:  # root writes through permissions
    CASES["read-only parent"] = Case(
        _readonly, 2, "cannot write in", extra=("--out", "{tmp}/ro/out")
    )


def _linked(tmp: Path, name: str, target: str) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / name).symlink_to(target)


def _fifo(tmp: Path, name: str) -> None:
    (tmp / "out").mkdir()
    os.mkfifo(tmp / "out" / name)


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_folders_get_one_line_and_keep_their_files(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CASES[name]
    data = write_dataset(tmp_path / "d.jsonl", 2)
    handle = case.setup(tmp_path)
    before = snapshot(tmp_path / "out")
    extra = [x.replace("{tmp}", str(tmp_path)) for x in case.extra]
    try:
        with run_in_thread(FakeConfig(responder=boxed, **case.config)) as srv:
            code = main(eval_argv(data, tmp_path / "out", srv.url, *extra))
        after = snapshot(tmp_path / "out")
    finally:
        if isinstance(handle, OutputLock):
            handle.release()
    err = capsys.readouterr().err
    assert code == case.code, err
    assert "Traceback" not in err
    done = ("pacore: wrote", "pacore: browse it with")
    lines = [x for x in err.splitlines() if not x.startswith(done)]
    assert lines == [lines[0]]
    assert case.message in lines[0]
    if case.requests is not None:
        assert srv.stats.requests == case.requests
    if not case.changes:
        assert after == before


def test_a_read_only_file_system_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As root, permissions cannot make a folder read-only: the file system's answer
    is played by `os.access` and `os.statvfs`."""
    data = write_dataset(tmp_path / "d.jsonl", 1)

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setattr(os, "statvfs", lambda path: ReadOnly())
    assert main(eval_argv(data, tmp_path / "out", "http://127.0.0.1:1/v1")) == 2
    err = capsys.readouterr().err
    assert err == f"pacore: error: {tmp_path / 'out'}: cannot write in {tmp_path} " + (
        "(a read-only file system)\n"
    )
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ two processes


def test_two_processes_on_one_folder_one_wins(tmp_path: Path) -> None:
    """A second pacore on a folder being written is refused at once with the first's
    PID, before it writes anything; every (id, method, run) is written once."""
    data = write_dataset(tmp_path / "d.jsonl", 4)
    out = tmp_path / "out"
    lock = tmp_path / "out.lock"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with run_in_thread(FakeConfig(responder=boxed, ttft_s=1.0)) as srv:
        argv = [sys.executable, "-m", "pacore.cli", *eval_argv(data, out, srv.url, "--jobs", "1")]
        first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Started once the first holds the lock (its PID written), still at its first jobs.
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
        second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        first_err = first.communicate(timeout=120)[1].decode()
    assert first.returncode == 0, first_err
    assert second.returncode == 2
    assert second.stderr == (
        f"pacore: error: {out.resolve()} is being written by another pacore "
        f"(PID {first.pid}); wait for it to finish, or choose another output\n"
    )
    keys = [(r["id"], r["method"], r["run"]) for r in records_of(out)]
    assert len(keys) == len(set(keys)) == 8
    assert not lock.exists()


def test_the_results_do_not_depend_on_how_many_jobs_run_at_once(tmp_path: Path) -> None:
    """One job at a time or every job at once: the same records, traces and summary
    (draws and seeds name the problem and run, never the order jobs finish in)."""
    import sqlite3

    data = write_dataset(tmp_path / "d.jsonl", 12, answer="1")
    methods = ["--method", "sc:4", "--method", "pacore:4", "--pool", "8"]

    def answer(messages: list[Body], index: int, body: Body) -> ResponderResult:
        """A model whose answers vary by prompt, seed and sample."""
        seed = int(body.get("seed") or 0)
        return (
            f"<think>r</think>The answer is \\boxed{{{(len(str(messages)) + seed + index) % 3}}}."
        )

    outs = []
    with run_in_thread(FakeConfig(responder=answer)) as srv:
        for jobs in ("1", "200"):
            out = tmp_path / f"jobs{jobs}"
            assert main(eval_argv(data, out, srv.url, *methods, "--jobs", jobs)) == 0
            outs.append(out)

    def content(out: Path) -> tuple[Any, ...]:
        records = {(r["id"], r["method"], r["run"]): {**r, "latency_s": 0} for r in records_of(out)}
        with sqlite3.connect(out / "traces.sqlite") as db:
            traces = dict(
                ((i, m, r), t)
                for i, m, r, t in db.execute("SELECT id, method, run, trace FROM traces")
            )
        db.close()
        summary = json.loads((out / "summary.json").read_text())
        summary.pop("created", None)
        return records, traces, summary

    first, second = content(outs[0]), content(outs[1])
    assert len(first[0]) == 12 * 3 * 2
    assert {r["correct"] for r in first[0].values()} == {True, False}  # the answers vary
    assert first == second


def test_an_empty_out_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--out "$UNSET"` named the current folder: the evaluation was written among the
    user's files, replacing their report.md and summary.json."""
    monkeypatch.chdir(tmp_path)
    data = write_dataset(tmp_path / "d.jsonl", 1)
    (tmp_path / "report.md").write_text("mine\n")
    before = snapshot(tmp_path / "d.jsonl")
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        argv = eval_argv(data, tmp_path, srv.url)
        argv[argv.index("--out") + 1] = ""
        with pytest.raises(SystemExit) as exited:
            main(argv)
    assert exited.value.code == 2
    assert srv.stats.requests == 0
    assert "argument --out: is empty" in capsys.readouterr().err
    assert snapshot(tmp_path / "d.jsonl") == before


def test_an_earlier_pacores_report_is_replaced_and_marked(tmp_path: Path) -> None:
    """A folder of a pacore from before the marks: its summary (no `format`), report
    (the default title) and plot (Matplotlib's PNG) are its own, and are rewritten."""
    pytest.importorskip("matplotlib")
    data = write_dataset(tmp_path / "d.jsonl", 2)
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        argv = [x for x in eval_argv(data, out, srv.url) if x != "--no-plots"]
        assert main(argv) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary.pop("format") == "pacore.eval-summary/1"
        (out / "summary.json").write_text(json.dumps(summary))
        report = (out / "report.md").read_text()
        assert report.rstrip().endswith("(pacore.eval-report/1) -->")
        (out / "report.md").write_text(report.rstrip().rsplit("\n", 1)[0] + "\n")
        png = (out / "accuracy_vs_ttc.png").read_bytes()
        assert b"pacore eval" in png[:4096]
        (out / "accuracy_vs_ttc.png").write_bytes(png.replace(b"pacore eval", b"plotted one"))
        assert main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["format"] == "pacore.eval-summary/1"
    assert (out / "report.md").read_text().rstrip().endswith("(pacore.eval-report/1) -->")
    assert b"pacore eval" in (out / "accuracy_vs_ttc.png").read_bytes()[:4096]
