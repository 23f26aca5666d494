"""The view's data layer on crafted eval records and batch outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pacore.errors import ConfigError
from pacore.eval.datasets import Sample
from pacore.eval.problems_file import PROBLEMS, StoredProblem
from pacore.eval.records import RunRecord
from pacore.eval.results_file import inspect_results
from pacore.view import data
from pacore.view.answers import said


def record(pid: str, method: str, run: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": pid, "method": method, "run": run, "status": "ok"}
    base.update(fields)
    return RunRecord.from_dict(base).to_dict()


def stored(pid: str, question: str = "", answer: str = "42") -> StoredProblem:
    """A problem as `pacore eval` stores it."""
    message = {"role": "user", "content": question or f"Question {pid}?"}
    return StoredProblem.of(Sample(id=pid, messages=(message,), answer=answer), "d")


def eval_folder(tmp_path: Path, records: list[dict[str, Any]], problems: bool = True) -> Path:
    """A crafted eval folder (its problems stored, as `pacore eval` does, unless not
    `problems`: a folder of an older pacore)."""
    out = tmp_path / "out"
    out.mkdir()
    lines = [json.dumps(r) for r in records]
    (out / "results.jsonl").write_text("\n".join([*lines, "{torn"]) + "\n")
    if problems:
        ids = dict.fromkeys(str(r["id"]) for r in records)
        (out / PROBLEMS).write_text("".join(json.dumps(stored(p).to_dict()) + "\n" for p in ids))
    summary = {
        "methods": {
            "pacore:low": {"family": "pacore", "accuracy": 0.5, "mean_ttc_tokens": 4000},
            "pacore:medium": {"family": "pacore", "accuracy": 0.75, "mean_ttc_tokens": 16000},
            "single": {"family": "single", "accuracy": 0.25, "mean_ttc_tokens": 1000},
            "broken": {"family": "x", "accuracy": None},
        }
    }
    (out / "summary.json").write_text(json.dumps(summary))
    return out


EMERGENT = record(
    "p1", "pacore:low", 0, correct=True, extracted="42", final_text="Ref 1 is wrong. \\boxed{42}",
    round_correct=[[False, False, False]], ref_correct=[False, False, False],
    ref_answers=["7", "7", "9"], ttc_tokens=300,
)  # fmt: skip
AGREES = record(
    "p2", "pacore:low", 0, correct=True, extracted="42", final_text="\\boxed{42}",
    round_correct=[[True, True, False]], ref_correct=[True, True, False],
    ref_answers=["42", "42", "9"],
)  # fmt: skip
SOLIPSIST = record(
    "p3", "pacore:low", 0, correct=False, extracted="5", final_text="\\boxed{5}",
    round_correct=[[True, False]], ref_correct=[True, False], ref_answers=["42", "9"],
)  # fmt: skip
FAILED = record("p3", "single", 0, status="failed", error="HTTP 500")


def test_eval_folder_rows_flag_emergent_markers_solipsism_and_failures(tmp_path: Path) -> None:
    loaded = data.load(eval_folder(tmp_path, [EMERGENT, AGREES, SOLIPSIST, FAILED]))
    assert loaded.kind == "eval"
    assert loaded.methods == ["pacore:low", "single"]
    by_id = {(r.id, r.method): r for r in loaded.rows}
    assert by_id["p1", "pacore:low"].emergent
    assert by_id["p1", "pacore:low"].markers == 1
    assert by_id["p1", "pacore:low"].rounds == 2
    assert not by_id["p2", "pacore:low"].emergent
    assert by_id["p3", "pacore:low"].solipsist
    assert by_id["p3", "single"].failed
    assert data.counts(loaded.rows) == data.Counts(emergent=1, markers=1, solipsism=2, failed=1)


def test_a_later_failure_does_not_hide_an_earlier_answer(tmp_path: Path) -> None:
    answered = record("p1", "single", 0, correct=True, extracted="42")
    loaded = data.load(eval_folder(tmp_path, [answered, FAILED | {"id": "p1"}]))
    assert [r.correct for r in loaded.rows] == [True]


def test_filters_combine_and_pages_clamp(tmp_path: Path) -> None:
    loaded = data.load(eval_folder(tmp_path, [EMERGENT, AGREES, SOLIPSIST, FAILED]))

    def ids(**query: str) -> list[str]:
        rows = data.filter_rows(loaded, data.Filters.from_query(query))
        return [f"{r.id}/{r.method}" for r in rows]

    assert ids(emergent="1") == ["p1/pacore:low"]
    assert ids(outcome="wrong") == ["p3/pacore:low"]
    assert ids(outcome="correct", method="pacore:low") == ["p1/pacore:low", "p2/pacore:low"]
    assert ids(failed="1") == ["p3/single"]
    assert ids(markers="1") == ["p1/pacore:low"]
    # An emergent answer matches none of its references: solipsist by definition too.
    assert ids(solipsism="1") == ["p1/pacore:low", "p3/pacore:low"]
    assert ids(q="P2") == ["p2/pacore:low"]
    assert ids(outcome="bogus") == ids()
    pages = data.page(loaded.rows, 99, size=3)
    assert (pages.number, pages.pages, pages.total, len(pages.rows)) == (2, 2, 4, 1)
    assert data.page([], 0).pages == 1


def test_problem_page_of_an_eval_record(tmp_path: Path) -> None:
    loaded = data.load(eval_folder(tmp_path, [EMERGENT, AGREES]))
    (view,) = data.problem_runs(loaded, "p1")
    assert view.verdict == "emergent"
    assert [r.title for r in view.rounds] == ["round 1", "the references the final synthesis saw"]
    refs = view.rounds[-1]
    assert [(g.answer, g.count, g.correct) for g in refs.groups] == [
        ("7", 2, False),
        ("9", 1, False),
    ]
    assert data.problem_runs(loaded, "p2")[0].verdict == "agrees"
    assert data.problem_runs(loaded, "nope") == []
    assert data.full_text(loaded, 0) == "Ref 1 is wrong. \\boxed{42}"
    assert data.full_text(loaded, 5) is None


def test_an_older_folder_takes_questions_and_gold_from_the_dataset(tmp_path: Path) -> None:
    dataset = tmp_path / "d.jsonl"
    dataset.write_text(json.dumps({"id": "p1", "question": "Six times seven?", "answer": "42"}))
    loaded = data.load(eval_folder(tmp_path, [EMERGENT, AGREES], problems=False), dataset)
    assert loaded.question("p1") == "Six times seven?"
    assert loaded.problems["p1"].gold == "42"
    assert loaded.question("p2") == ""
    rows = data.filter_rows(loaded, data.Filters(q="seven"))
    assert [r.id for r in rows] == ["p1"]


def trajectory(index: int, answer: str, text: str = "") -> dict[str, Any]:
    message = f"So \\boxed{{{answer}}}."
    return {
        "index": index, "text": text or f"<think>hm</think>{message}", "message": message,
        "status": "ok", "usage": {"completion_tokens": 10 + index},
    }  # fmt: skip


def test_batch_output_rows_and_problem_page(tmp_path: Path) -> None:
    out = tmp_path / "batch.jsonl"
    big = "x" * (data.PREVIEW_CHARS * 3)
    first = {
        "id": "a", "status": "ok", "answer": "So \\boxed{7}.", "ttc_tokens": 50,
        "rounds": [[trajectory(0, "42"), trajectory(1, "7", big), trajectory(2, "42")],
                   [trajectory(0, "7")]],
    }  # fmt: skip
    second = {"id": "b", "status": "failed", "error": "boom", "answer": "", "rounds": []}
    out.write_text(json.dumps(first) + "\n" + json.dumps({"other": 1}) + "\n" + json.dumps(second))
    loaded = data.load(out)
    assert loaded.kind == "run"
    assert [(r.id, r.answer, r.rounds, r.failed) for r in loaded.rows] == [
        ("a", "7", 2, False),
        ("b", None, 0, True),
    ]
    (view,) = data.problem_runs(loaded, "a")
    first_round = view.rounds[0]
    assert [(g.answer, g.count) for g in first_round.groups] == [("42", 2), ("7", 1)]
    assert first_round.cards[1].tokens == 11
    assert first_round.cards[1].length == len(big)
    assert view.final == "7"
    assert view.verdict == "overturns"
    assert data.full_text(loaded, 0, 1, 1) == big
    assert data.full_text(loaded, 0, 3, 0) is None
    assert data.full_text(loaded, 0, 1, 9) is None
    # Rewritten since it was loaded (another problem's line at that offset now): no
    # text rather than another problem's.
    out.write_text(json.dumps({**first, "id": "c"}) + "\n")
    assert data.full_text(loaded, 0, 1, 1) is None


def test_paths_that_are_not_results_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        data.load(tmp_path / "missing")
    with pytest.raises(ConfigError, match="not an eval folder"):
        data.load(tmp_path)
    other = tmp_path / "x.jsonl"
    other.write_text('{"id": 1}\n')
    with pytest.raises(ConfigError, match="not a pacore run output"):
        data.load(other)
    folder = tmp_path / "ev"
    (folder / "results.jsonl").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"results\.jsonl: is a directory, not a results file"):
        data.load(folder)
    with pytest.raises(ConfigError, match=r"ev: is a directory, not a dataset file$"):
        data.load(other, dataset=folder)


def test_a_traced_eval_run_shows_every_round_its_texts_and_prompts(tmp_path: Path) -> None:
    from tests.eval.test_traces import GOLD, evaluate

    # Round 2's first attempt fails (call 2): both its slots are resampled.
    loaded = data.load(evaluate(tmp_path, ["pacore:4,2", "sc:3"], fail={2}))
    assert loaded.traces is not None
    assert not loaded.warnings
    views = {v.row.method: v for v in data.problem_runs(loaded, "p")}
    pacore = views["pacore:4,2"]
    assert [r.title for r in pacore.rounds] == [
        "round 1: 4 trajectories",
        "round 2: 2 trajectories, each saw 4 messages",
        "round 3: the final synthesis of 2 messages",
    ]
    assert [r.has_prompt for r in pacore.rounds] == [False, True, True]
    second = pacore.rounds[1]
    assert [c.status for c in second.cards] == ["ok", "ok", "error", "error"]
    assert [len(second.slots), second.cards[2].note.split(":")[0]] == [
        2, "attempt 0, replaced by a resample",
    ]  # fmt: skip
    assert second.cards[2].length == 0  # nothing stored for a failed request
    first = pacore.rounds[0]
    assert sum(g.count for g in first.groups) == 4
    assert all(c.correct is (c.answer == GOLD) for c in first.cards)
    assert all(c.tokens and c.tokens >= 3 for c in first.cards)
    row = pacore.row.index
    for r, rnd in enumerate(pacore.rounds, 1):
        for card in rnd.cards:
            text = data.full_text(loaded, row, r, card.position)
            if card.length:
                assert text is not None
                assert text.startswith("<think>think ")
                assert text.endswith(card.preview)
                assert len(text) == card.length
            else:
                assert text is None
    prompt = data.prompt_messages(loaded, row, 3)
    assert prompt is not None
    shown = data.prompt_text(prompt)
    assert shown.startswith("[user]\n")
    assert all(c.preview in shown for c in second.slots)
    assert data.prompt_messages(loaded, row, 4) is None
    assert data.prompt_messages(loaded, 99, 1) is None
    sc = views["sc:3"]
    assert [len(r.cards) for r in sc.rounds] == [3]
    assert sc.final_correct is True


def test_an_unreadable_traces_file_leaves_the_grades(tmp_path: Path) -> None:
    folder = eval_folder(tmp_path, [EMERGENT])
    (folder / "traces.sqlite").write_text("garbage " * 200)
    loaded = data.load(folder)
    assert loaded.traces is None
    skipped, warning = loaded.warnings  # the fixture's torn line, then the traces
    assert "are not records and are not shown" in skipped
    assert "not a readable traces file" in warning
    (view,) = data.problem_runs(loaded, "p1")
    assert view.rounds[-1].title == "the references the final synthesis saw"


def test_batch_rounds_show_their_prompts_and_replaced_attempts(tmp_path: Path) -> None:
    out = tmp_path / "batch.jsonl"
    failed = trajectory(1, "9") | {"status": "error", "error": "HTTP 500", "attempt": 0}
    line = {
        "id": "a", "status": "ok", "answer": "So \\boxed{42}.", "widths": [2, 1],
        "rounds": [[trajectory(0, "42"), trajectory(1, "42"), failed], [trajectory(0, "42")]],
        "prompts": [[{"role": "user", "content": "Q"}],
                    [{"role": "system", "content": "S"},
                     {"role": "user", "content": [{"type": "text", "text": "refs"}]}]],
    }  # fmt: skip
    out.write_text(json.dumps(line) + "\n")
    loaded = data.load(out)
    (view,) = data.problem_runs(loaded, "a")
    first, final = view.rounds
    assert [len(first.cards), len(first.slots), first.cards[2].note] == [3, 2, "HTTP 500"]
    assert said(first.groups, len(first.slots)) == "2 of 2 said 42"
    assert (first.has_prompt, final.has_prompt) == (False, True)
    prompt = data.prompt_messages(loaded, 0, 2)
    assert prompt is not None
    assert data.prompt_text(prompt) == "[system]\nS\n\n[user]\nrefs"
    assert data.prompt_messages(loaded, 0, 3) is None


def test_a_nan_line_is_shown_and_an_unreadable_line_is_named(tmp_path: Path) -> None:
    """An older pacore copied NaN from an input into a run output; orjson refuses it, so
    the record used to vanish without a word. It is shown now, and a line that is not a
    record (a torn write) is named in a warning instead of being dropped silently."""
    out = tmp_path / "out.jsonl"
    good = {"id": "a", "status": "ok", "answer": "1", "ttc_tokens": 3, "rounds": []}
    nan = {**good, "id": "b", "metadata": {"w": float("nan")}}
    out.write_text(json.dumps(good) + "\n" + json.dumps(nan) + "\n" + '{"id": "c", "sta')
    loaded = data.load(out)
    assert [r.id for r in loaded.rows] == ["a", "b"]
    assert data.run_record(loaded, 1)["id"] == "b"
    (warning,) = loaded.warnings
    assert "1 line(s) are not records and are not shown (line 3)" in warning


def test_final_texts_stay_on_disk_until_opened(tmp_path: Path) -> None:
    """An eval folder's records are held without their final texts (a long synthesis
    costs no memory until it is opened); its length, markers and text are the line's.
    A file rewritten since it was loaded gives no text rather than another record's."""
    long = "Reference 2 checks out. " * 4000 + "\\boxed{42}"
    first = record("p1", "pacore:low", 0, correct=True, extracted="42", final_text=long)
    second = record("p2", "pacore:low", 0, correct=True, extracted="42", final_text="\\boxed{42}")
    folder = eval_folder(tmp_path, [first, second])
    loaded = data.load(folder)
    assert all(r.final_text is None for r in loaded.records)
    (view,) = data.problem_runs(loaded, "p1")
    assert view.final_length == len(long)
    assert loaded.rows[0].markers == 4000
    assert data.full_text(loaded, 0) == long
    assert data.full_text(loaded, 1) == "\\boxed{42}"
    results = folder / "results.jsonl"
    lines = results.read_text().splitlines()
    results.write_text("\n".join([lines[1], lines[0]]) + "\n")  # rewritten: offsets moved
    assert data.full_text(loaded, 0) is None
    assert data.full_text(loaded, 1) is None


@pytest.mark.parametrize("ending", ["\r", "\r\n", "\n"])
def test_lines_end_where_a_resume_says_they_end(tmp_path: Path, ending: str) -> None:
    """A results file whose lines end with a lone CR (or CR LF) is read by a resume
    line by line (`inspect_lines`); the viewer saw one unreadable line and showed no run.
    It now cuts the lines the same way, and a run's text reread on opening is its own."""
    long = "Reference 1 agrees. " * 50 + "\\boxed{42}"
    records = [
        record(f"p{i}", "pacore:low", 0, correct=True, extracted="42", final_text=f"{long} {i}")
        for i in range(3)
    ]
    folder = eval_folder(tmp_path, records)
    results = folder / "results.jsonl"
    results.write_text(ending.join(json.dumps(r) for r in records) + ending, newline="")
    resumed = inspect_results(results)
    loaded = data.load(folder)
    assert [r.id for r in loaded.records] == [h.id for h in resumed.records] == ["p0", "p1", "p2"]
    assert not loaded.warnings
    assert [data.full_text(loaded, i) for i in range(3)] == [f"{long} {i}" for i in range(3)]
    batch = tmp_path / "batch.jsonl"
    runs = [
        {"id": f"b{i}", "status": "ok", "answer": f"\\boxed{{{i}}}", "rounds": []} for i in range(3)
    ]
    batch.write_text(ending.join(json.dumps(r) for r in runs) + ending, newline="")
    loaded = data.load(batch)
    assert [r.id for r in loaded.rows] == ["b0", "b1", "b2"]
    assert [data.run_record(loaded, i)["id"] for i in range(3)] == ["b0", "b1", "b2"]
