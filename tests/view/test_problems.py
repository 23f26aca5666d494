"""A problem's question and gold in `pacore view`: from the folder itself, with a dataset
that differs named and never shown in their place. Real eval folders on the benchmark
heads in `tests/data/shared`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from pacore.cli import main
from pacore.eval.problems_file import PROBLEMS
from pacore.view import data
from pacore.view.app import create_app
from tests.eval.test_eval_files import boxed, eval_argv
from tests.eval.test_problems_file import MATH, shared_records, write_records
from tests.fake_server import FakeConfig, run_in_thread


def evaluated(tmp_path: Path, records: list[dict[str, Any]], *extra: str) -> Path:
    """A real eval folder of `records` (`pacore eval` against the fake server)."""
    dataset = write_records(tmp_path / "math.jsonl", records)
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        assert main(eval_argv(dataset, out, srv.url, *extra)) == 0
    return out


@pytest.fixture
def folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = evaluated(tmp_path, shared_records(*MATH))
    capsys.readouterr()
    return out


def changed(record: dict[str, Any], how: int) -> dict[str, Any]:
    """Another problem under the same id: its answer, its question or both changed."""
    answer, question = record["answer"], record["question"]
    return {
        **record,
        "answer": f"{answer} + 1" if how != 1 else answer,
        "question": question if how == 0 else f"{question} Give it in base 7.",
    }


def test_a_fresh_folder_shows_its_questions_and_golds_with_no_dataset(folder: Path) -> None:
    loaded = data.load(folder)
    assert not loaded.warnings
    client = TestClient(create_app(loaded))
    for record in shared_records(*MATH):
        problem = loaded.problems[record["id"]]
        assert (problem.question, problem.gold) == (record["question"], record["answer"])
        assert problem.dataset == "math"
        assert loaded.question(record["id"]) == record["question"]
        page = client.get(f"/problem/{record['id']}").text
        assert f'<strong id="gold">{_html(record["answer"])}</strong>' in page
        assert _html(record["question"][:60]) in page


def _html(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def test_a_dataset_that_differs_is_named_and_the_stored_copy_shown(
    folder: Path, tmp_path: Path
) -> None:
    """Seven of the nine problems changed (answer, question or both), one left out and
    one added: the warning counts the seven and names the first five, and every page
    shows what was evaluated."""
    records = shared_records(*MATH)
    other = [changed(r, i % 3) if i < 7 else r for i, r in enumerate(records[:-1])]
    other.append({"id": "new", "question": "Not evaluated?", "answer": "1"})
    dataset = write_records(tmp_path / "other.jsonl", other)
    loaded = data.load(folder, dataset)
    (warning,) = loaded.warnings
    ids = [r["id"] for r in records[:7]]
    assert warning == (
        f"{dataset}: 7 problem(s) differ from the ones {folder} evaluated "
        f"({', '.join(ids[:5])}, ...): another dataset, --fields or --system?; the "
        "folder's own copies are shown"
    )
    for record in records:
        problem = loaded.problems[record["id"]]
        assert (problem.question, problem.gold) == (record["question"], record["answer"])
    overview = TestClient(create_app(loaded)).get("/").text
    assert "7 problem(s) differ from the ones" in overview


def test_the_same_dataset_with_system_is_no_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = shared_records("aime2025")
    out = evaluated(tmp_path, records, "--system", "Think step by step.")
    capsys.readouterr()
    loaded = data.load(out, tmp_path / "math.jsonl")
    assert not loaded.warnings
    problem = loaded.problems[records[0]["id"]]
    assert problem.messages[0] == {"role": "system", "content": "Think step by step."}
    assert problem.question == records[0]["question"]


def test_an_older_folder_opens_with_a_note_and_takes_a_matching_dataset(
    folder: Path, tmp_path: Path
) -> None:
    (folder / PROBLEMS).unlink()  # as pacore wrote folders before it stored problems
    loaded = data.load(folder)
    (note,) = loaded.warnings
    assert "the questions and golds are not stored in this folder" in note
    assert "pass --dataset, or rerun pacore eval" in note
    assert loaded.problems == {}
    assert "are not stored in this folder" in TestClient(create_app(loaded)).get("/").text

    records = shared_records(*MATH)
    loaded = data.load(folder, tmp_path / "math.jsonl")
    assert not loaded.warnings
    assert loaded.problems[records[0]["id"]].gold == records[0]["answer"]

    # A dataset that differs is checked against fingerprint.json: named, not shown.
    other = write_records(tmp_path / "other.jsonl", [changed(records[0], 0), *records[1:]])
    loaded = data.load(folder, other)
    (warning,) = loaded.warnings
    assert f"1 problem(s) differ from the ones {folder} evaluated ({records[0]['id']})" in warning
    assert warning.endswith("they are not shown")
    assert records[0]["id"] not in loaded.problems
    assert loaded.problems[records[1]["id"]].gold == records[1]["answer"]


@pytest.mark.parametrize(
    ("spoil", "said"),
    [
        ("torn", "1 line(s) are not records and are not shown (line 2)"),
        ("no hash", "1 record(s) are not stored problems and are not shown (line 2; "
                    "line 2: no id, dataset or hash)"),
        ("foreign", "format 'pacore.eval/1' is not pacore.eval-problems/1"),
        ("newer", "written by a newer pacore"),
    ],
)  # fmt: skip
def test_a_spoiled_problems_file_is_a_warning_not_a_traceback(
    folder: Path, spoil: str, said: str
) -> None:
    path = folder / PROBLEMS
    lines = path.read_text().splitlines(keepends=True)
    second = json.loads(lines[1])
    if spoil == "torn":
        lines[1] = lines[1][:40] + "\n"
    elif spoil == "no hash":
        lines[1] = json.dumps({k: v for k, v in second.items() if k != "hash"}) + "\n"
    elif spoil == "foreign":
        lines[1] = json.dumps({**second, "format": "pacore.eval/1"}) + "\n"
    else:
        lines = [json.dumps({**second, "format": "pacore.eval-problems/2"}) + "\n"]
    path.write_text("".join(lines))
    loaded = data.load(folder)
    warning, missing = loaded.warnings
    assert said in warning
    lost = [second["id"]] if spoil != "newer" else None
    if lost:
        assert f"1 problem(s) have no question to show ({lost[0]})" in missing
        assert len(loaded.problems) == 8
    else:  # a newer file is not read at all
        assert "9 problem(s) have no question to show" in missing
        assert loaded.problems == {}
    assert TestClient(create_app(loaded)).get(f"/problem/{second['id']}").status_code == 200
