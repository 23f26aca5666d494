"""`pacore view` writes nothing beside the user's files, even on the folder of a killed eval.

A writer killed with SIGKILL leaves `traces.sqlite-wal` and `-shm` (and the store's) in
the folder, the newest rows only in the logs. Loading the folder and rendering its pages
must leave every file's bytes and mtime, and the listing, as they were, and still show
the rows that are only in the logs.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pacore.eval.traces import TRACES
from pacore.store import connect_read_only
from pacore.view import data
from pacore.view.app import create_app
from tests.eval.test_traces import evaluate

STORE = "trajectories.sqlite"

# Puts the saved rows back into the folder's files in WAL mode, never checkpointing, and
# dies by SIGKILL with both connections open: the rows are in the logs only.
_KILLED_WRITER = """
import os, signal, sqlite3, sys
folder, saved = sys.argv[1], sys.argv[2]
for name, table in (("traces.sqlite", "traces"), ("trajectories.sqlite", "trajectories")):
    db = sqlite3.connect(os.path.join(folder, name), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("ATTACH ? AS saved", (os.path.join(saved, name),))
    db.execute(f"INSERT INTO main.{table} SELECT * FROM saved.{table}")
    db.execute("DETACH saved")
    globals()["keep_" + table] = db
os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_eval(tmp_path: Path) -> Path:
    """A real eval folder whose traces and trajectories were last written by a killed
    writer: the database files lack them, the `-wal` files hold them."""
    out = evaluate(tmp_path, ["pacore:3"], fail=set())
    saved = tmp_path / "saved"
    saved.mkdir()
    for name, table in ((TRACES, "traces"), (STORE, "trajectories")):
        db, copy = sqlite3.connect(out / name), sqlite3.connect(saved / name)
        db.backup(copy)
        copy.close()
        db.execute(f"DELETE FROM {table}")
        db.commit()
        db.close()  # the last connection: checkpointed, no log left
    assert not list(out.glob("*-wal"))
    writer = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(out), str(saved)])
    assert writer.returncode == -signal.SIGKILL
    for name in (TRACES, STORE):
        assert (out / f"{name}-wal").stat().st_size > 0
    return out


def _state(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("shm", ["left", "gone"])
def test_view_of_a_killed_eval_changes_nothing_and_shows_the_logged_rows(
    tmp_path: Path, shm: str
) -> None:
    out = _killed_eval(tmp_path)
    if shm == "gone":  # a folder copied without its -shm files
        for found in out.glob("*-shm"):
            found.unlink()
    before = _state(out)
    os.utime(out, ns=(0, 0))
    listing = sorted(os.listdir(out))

    loaded = data.load(out)
    assert not loaded.warnings
    (run,) = data.problem_runs(loaded, "p")
    assert [len(r.cards) for r in run.rounds] == [3, 1]  # the trace, from the log
    text = data.full_text(loaded, run.row.index, 1, 0)  # the store, from its log
    assert text is not None
    assert text.startswith("<think>think ")
    client = TestClient(create_app(loaded))
    assert client.get("/").status_code == 200
    assert 'data-src="/text/0/1/2"' in client.get("/problem/p").text
    assert client.get("/text/0/1/2").text.startswith("<think>think ")
    assert loaded.traces is not None
    loaded.traces.close()

    assert sorted(os.listdir(out)) == listing
    assert _state(out) == before
    assert out.stat().st_mtime_ns == 0  # nothing was created and removed either


def test_view_beside_a_writer_at_work_changes_nothing(tmp_path: Path) -> None:
    """A writer still open (an eval running): the view reads what it committed, and its
    `-wal`/`-shm` files are left to it, untouched."""
    out = evaluate(tmp_path, ["pacore:3"], fail=set())
    writer = sqlite3.connect(out / TRACES, isolation_level=None)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("INSERT INTO traces SELECT id || '2', method, run, trace FROM traces")
        before = _state(out)
        loaded = data.load(out)
        assert loaded.traces is not None
        assert loaded.traces.trace("p2", "pacore:3", 0) is not None  # only in the log
        loaded.traces.close()
        assert _state(out) == before
    finally:
        writer.close()


def test_a_snapshot_is_removed_when_closed(tmp_path: Path) -> None:
    out = _killed_eval(tmp_path)
    db = connect_read_only(out / TRACES)
    assert db.execute("SELECT count(*) FROM traces").fetchone() == (1,)
    (copy,) = (Path(row[2]) for row in db.execute("PRAGMA database_list"))
    assert copy.parent != out
    assert copy.exists()
    db.close()
    assert not copy.parent.exists()


def test_a_clean_file_is_read_in_place_as_immutable(tmp_path: Path) -> None:
    out = evaluate(tmp_path, ["pacore:3"], fail=set())
    db = connect_read_only(out / TRACES)
    (path,) = (Path(row[2]) for row in db.execute("PRAGMA database_list"))
    assert path == (out / TRACES).resolve()
    db.close()
    assert not list(out.glob("*-shm"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_view_stopped_by_a_signal_removes_its_private_copies(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """On the folder of a killed eval the view reads private copies of the SQLite files
    (with their logs). Stopped by SIGTERM or SIGHUP (a closed terminal) it died with them
    left in the temporary folder: gigabytes a stop, for a large store."""
    import time
    import urllib.request

    out = _killed_eval(tmp_path)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    argv = [sys.executable, "-m", "pacore.cli", "view", str(out), "--port", "0"]
    view = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert view.stderr is not None
        url = ""
        for line in view.stderr:
            if "Ctrl-C stops" in line:
                url = line.split()[2]
                break
        with urllib.request.urlopen(url + "text/0/1/2", timeout=30) as page:  # the store too
            assert page.read().startswith(b"<think>think ")
        copies = list(temp.iterdir())
        assert len(copies) == 2  # the traces' and the store's
        view.send_signal(sig)
        view.wait(30)
    finally:
        if view.poll() is None:
            view.kill()
    assert view.returncode == 128 + sig
    deadline = time.monotonic() + 5
    while list(temp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(temp.iterdir())
