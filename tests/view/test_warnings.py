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


# A field of another type than pacore writes, as a hand edit or another tool leaves it.
ODD_EVAL_FIELDS = [
    ("ref_answers", [1, 2]),
    ("final_text", 7),
    ("ttc_tokens", float("inf")),
    ("ttc_tokens", 1e400),
    ("error", {"why": "x"}),
    ("extracted", 5),
    ("run", 10**30),
    ("correct", "false"),
    ("round_correct", [[1, 0]]),
    ("votes", ["3"]),
    ("score", "0.5"),
]


def test_eval_records_with_odd_field_types_are_counted_never_a_500(tmp_path: Path) -> None:
    """Each of these was a traceback as the folder loaded, or a 500 on a page that shows
    the record (`/problems`, `/problem/ID`, `/compare/ID`)."""
    out = evaluate(tmp_path, ["pacore:3"], fail=set())
    lines = (out / "results.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    with (out / "results.jsonl").open("a") as fh:
        for i, (name, value) in enumerate(ODD_EVAL_FIELDS):
            odd = {**record, "id": f"odd{i}", name: value}
            fh.write(json.dumps(odd) + "\n")  # Infinity where the value is one
    loaded = data.load(out)
    assert [r.id for r in loaded.rows] == ["p"]
    assert any(
        f"{len(ODD_EVAL_FIELDS)} record(s) are not eval results" in w for w in loaded.warnings
    )
    client = TestClient(create_app(loaded))
    for page in ("/", "/problems", "/problem/p", "/compare/p"):
        assert client.get(page).status_code == 200, page


def test_run_lines_with_odd_field_types_are_counted_never_a_traceback(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    good = {"id": "a", "status": "ok", "answer": "1", "ttc_tokens": 3, "rounds": []}
    odd = [
        {**good, "id": "b", "ttc_tokens": "abc"},
        {**good, "id": "c", "ttc_tokens": [1]},
        {**good, "id": "d", "ttc_tokens": float("nan")},
        {**good, "id": "e", "ttc_tokens": 1e400},
        {**good, "id": "f", "answer": 5},
        {**good, "id": "g", "error": ["x"]},
        {**good, "id": "h", "status": 3},
    ]
    out.write_text("".join(json.dumps(x) + "\n" for x in [good, *odd]))
    loaded = data.load(out)
    assert [r.id for r in loaded.rows] == ["a"]
    (warning,) = loaded.warnings
    assert f"{len(odd)} record(s) are not run results" in warning
    client = TestClient(create_app(loaded))
    for page in ("/", "/problems", "/problem/a"):
        assert client.get(page).status_code == 200, page


def test_trace_rows_a_hand_or_another_tool_wrote_are_a_warning(tmp_path: Path) -> None:
    """A trace holding Infinity (valid to Python's JSON, not to SQLite's) and a row whose
    run is text were tracebacks as the folder loaded."""
    out = evaluate(tmp_path, ["pacore:3", "sc:3"], fail=set())
    db = sqlite3.connect(out / TRACES)
    (text,) = db.execute("SELECT trace FROM traces WHERE method = 'sc:3'").fetchone()
    trace = json.loads(text)
    trace["rounds"][0]["width"] = float("inf")
    db.execute("UPDATE traces SET trace = ? WHERE method = 'sc:3'", (json.dumps(trace),))
    db.execute("INSERT INTO traces VALUES ('held', 'zz', 'abc', 'not json')")
    db.commit()
    db.close()
    loaded = data.load(out)
    (warning,) = [w for w in loaded.warnings if "trace(s) cannot be read" in w]
    assert "2 trace(s) cannot be read" in warning
    client = TestClient(create_app(loaded))
    assert client.get("/problem/p").status_code == 200


ODD_SUMMARIES = [
    ({"methods": {"m": {"accuracy": "0.5"}}}, "accuracy is not a fraction"),
    ({"methods": {"m": {"accuracy": 0.5, "ci_low": 0.4}}}, "one end of its interval only"),
    ({"methods": {"m": {"mean_ttc_tokens": "big"}}}, "mean_ttc_tokens is not a count"),
    ({"methods": {"m": {"accuracy": 0.5, "mean_ttc_tokens": 1e308}}}, "not a count of tokens"),
    ({"methods": {"m": 5}}, "method 'm' is not an object"),
    ({"methods": [1]}, "its methods are not an object"),
    ({"methods": {"m": {"solipsism_counts": ["a", 1]}}}, "solipsism_counts is not two counts"),
]


def test_a_summary_of_odd_values_is_a_warning_not_a_500(tmp_path: Path) -> None:
    """Each was a 500 on the overview (or an OverflowError in the plot)."""
    out = evaluate(tmp_path, ["pacore:3"], fail=set())
    for summary, said in ODD_SUMMARIES:
        (out / "summary.json").write_text(json.dumps(summary))
        loaded = data.load(out)
        assert any(said in w and "the summary is not shown" in w for w in loaded.warnings), said
        assert TestClient(create_app(loaded)).get("/").status_code == 200, said


def test_a_failed_synthesis_is_not_said_to_lack_references(tmp_path: Path) -> None:
    """Round 1 answered, every synthesis attempt failed: the page said "no references to
    compare" although the run had three."""
    out = evaluate(tmp_path, ["pacore:3"], fail={2, 3, 4, 5, 6})
    page = TestClient(create_app(data.load(out))).get("/problem/p").text
    assert "no final answer to compare" in page
    assert "no references to compare" not in page
