"""Everything the view cannot show is counted in one warning per kind, on the overview and
on stderr when `pacore view` starts: real eval folders and run outputs, spoiled by hand."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from starlette.testclient import TestClient

from pacore.eval.traces import TRACES
from pacore.view import data
from pacore.view.app import create_app
from tests.eval.test_traces import evaluate

ROOT = Path(__file__).resolve().parents[2]


def spoiled_eval(tmp_path: Path) -> Path:
    """A real eval folder (two methods) with a torn line, two records pacore cannot read,
    a trace row that is not JSON, and a summary that is not an object."""
    out = evaluate(tmp_path, ["pacore:3", "sc:3"], fail=set())
    with (out / "results.jsonl").open("a") as fh:
        fh.write(json.dumps({"id": "q", "method": "sc:3", "status": "ok"}) + "\n")  # no run
        fh.write(json.dumps({"id": "q", "method": "sc:3", "run": 0, "status": "ok",
                             "ttc_tokens": "many"}) + "\n")  # fmt: skip
        fh.write('{"id": "q", "meth\n')
    db = sqlite3.connect(out / TRACES)
    db.execute("UPDATE traces SET trace = '{\"rounds\": [' WHERE method = 'sc:3'")
    db.commit()
    db.close()
    (out / "summary.json").write_text("[]")
    return out


EVAL_WARNINGS = [
    "1 line(s) are not records and are not shown (line 5)",
    "2 record(s) are not eval results and are not shown (line 3, 4; line 3: not an eval "
    "result (no run))",
    "summary.json: not a summary (not a JSON object); the summary is not shown",
    "1 trace(s) cannot be read (p sc:3 0); their rounds are shown from the grades alone",
]


def test_an_eval_folder_names_every_kind_of_thing_it_cannot_show(tmp_path: Path) -> None:
    loaded = data.load(spoiled_eval(tmp_path))
    assert len(loaded.warnings) == len(EVAL_WARNINGS)
    for warning, expected in zip(loaded.warnings, EVAL_WARNINGS, strict=True):
        assert expected in warning
    assert sorted(r.method for r in loaded.rows) == ["pacore:3", "sc:3"]
    views = {v.row.method: v for v in data.problem_runs(loaded, "p")}
    assert [len(r.cards) for r in views["pacore:3"].rounds] == [3, 1]  # its trace is fine
    assert views["sc:3"].rounds  # from the grades alone
    overview = TestClient(create_app(loaded)).get("/").text
    for expected in EVAL_WARNINGS:
        assert expected.split(" (")[0] in overview


def test_a_run_output_names_its_lines_without_id_or_rounds(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    good = {"id": "a", "status": "ok", "answer": "1", "ttc_tokens": 3, "rounds": []}
    lines = [good, {"status": "ok", "rounds": []}, {**good, "id": "b", "rounds": None}]
    out.write_text("".join(json.dumps(x) + "\n" for x in lines))
    loaded = data.load(out)
    assert [r.id for r in loaded.rows] == ["a"]
    (warning,) = loaded.warnings
    assert warning == (
        f"{out}: 2 record(s) are not run results and are not shown (line 2, 3; line 2: no id)"
    )


def test_pacore_view_says_the_warnings_on_stderr_as_it_starts(tmp_path: Path) -> None:
    folder = spoiled_eval(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    argv = [sys.executable, "-m", "pacore.cli", "view", str(folder), "--port", "0"]
    view = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert view.stderr is not None
        lines = []
        for line in view.stderr:  # until it says it serves
            lines.append(line)
            if "Ctrl-C stops" in line:
                break
    finally:
        view.terminate()
        view.wait(30)
    warnings = [line for line in lines if line.startswith("pacore view: warning: ")]
    assert len(warnings) == len(EVAL_WARNINGS), lines
    for warning, expected in zip(warnings, EVAL_WARNINGS, strict=True):
        assert expected in warning
