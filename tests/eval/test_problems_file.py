"""`problems.jsonl`: an eval folder stores what it evaluated, extended and kept as the
folder is, and refuses a file it did not write. Cases from the benchmark heads in
`tests/data/shared`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pacore.cli import main
from pacore.cli.resources import with_system
from pacore.eval.datasets import load_dataset
from pacore.eval.problems_file import PROBLEMS, TESTS_CHARS, StoredProblem, read_problems
from pacore.io.formats import EVAL_PROBLEMS
from tests.eval.test_eval_files import boxed, eval_argv
from tests.fake_server import FakeConfig, run_in_thread

SHARED = Path(__file__).resolve().parents[1] / "data" / "shared"
MATH = ("aime2025", "hmmt_feb2025", "math500")


def shared_records(*names: str) -> list[dict[str, Any]]:
    """The records of the benchmark heads `names`, in order."""
    return [
        json.loads(line)
        for name in names
        for line in (SHARED / f"{name}.jsonl").read_text().splitlines()
    ]


def write_records(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def stored_lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / PROBLEMS).read_text().splitlines()]


# ------------------------------------------------------------------ the record


@pytest.mark.parametrize("name", [*MATH, "humaneval", "codecontests_test"])
def test_every_real_problem_reads_back_and_matches_itself_only(name: str) -> None:
    """Each record of each benchmark head: stored, written, read back the same; its
    sample matches it (with --system added too), and a changed answer or question not."""
    for sample in load_dataset(SHARED / f"{name}.jsonl"):
        problem = StoredProblem.of(sample, name)
        line = json.loads(json.dumps(problem.to_dict()))
        assert line["format"] == EVAL_PROBLEMS.tag
        assert StoredProblem.from_dict(line, "here") == problem
        assert problem.matches(sample)
        system = replace(sample, messages=with_system(sample.messages, "Be brief."))
        assert StoredProblem.of(system, name).matches(sample)
        assert not problem.matches(system)
        assert problem.question == sample.question
        if sample.answer is not None:
            assert problem.gold == sample.answer
            assert not problem.matches(replace(sample, answer=sample.answer + "0"))
        else:  # code: the tests summarised, the gold one short line
            assert problem.tests is not None
            assert len(problem.tests) <= TESTS_CHARS + 2
            cases = f"{len(sample.tests)} input/output case(s)"
            assert problem.gold == (
                f"tests of {sample.entry_point}" if sample.entry_point else cases
            )
            assert not problem.matches(replace(sample, entry_point="other"))
        reworded = {**sample.messages[-1], "content": problem.question + " "}
        assert not problem.matches(replace(sample, messages=(reworded,)))


def test_code_tests_are_summarised_not_copied() -> None:
    (contest,) = load_dataset(SHARED / "codecontests_test.jsonl")
    summary = StoredProblem.of(contest, "cc").tests or ""
    assert summary.startswith(f"{len(contest.tests)} input/output case(s)\nthe first:\ninput:\n")
    assert len(summary) < len(json.dumps(contest.tests))
    human = load_dataset(SHARED / "humaneval.jsonl")[0]
    assert StoredProblem.of(human, "he").tests == human.tests  # short: whole


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ([], "not a JSON object"),
        ({"id": "a"}, "no tag"),
        ({"format": "pacore.eval/1"}, "format 'pacore.eval/1' is not pacore.eval-problems/1"),
        ({"format": EVAL_PROBLEMS.tag, "id": "a", "dataset": "d"}, "no id, dataset or hash"),
        ({"format": EVAL_PROBLEMS.tag, "id": "a", "dataset": "d", "hash": "h"}, "messages"),
    ],
)
def test_a_line_that_is_not_a_stored_problem_says_why(line: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        StoredProblem.from_dict(line, "here")


# ------------------------------------------------------------------ pacore eval


def test_eval_stores_its_problems_extends_and_keeps_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = shared_records(*MATH)
    data = write_records(tmp_path / "math.jsonl", records)
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        assert main(eval_argv(data, out, srv.url, "--limit", "4")) == 0
        first = (out / PROBLEMS).read_bytes()
        assert [p["id"] for p in stored_lines(out)] == [r["id"] for r in records[:4]]
        # A larger --limit extends them; the first lines stay as they were.
        assert main(eval_argv(data, out, srv.url)) == 0
        assert (out / PROBLEMS).read_bytes().startswith(first)
        # A resume, or a smaller --limit, writes nothing and loses nothing.
        before = (out / PROBLEMS).stat()
        assert main(eval_argv(data, out, srv.url)) == 0
        assert main(eval_argv(data, out, srv.url, "--limit", "2")) == 0
        after = (out / PROBLEMS).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    hashes = json.loads((out / "fingerprint.json").read_text())["problems"]
    lines = stored_lines(out)
    assert len(lines) == len(records) == len(hashes)
    for line, record in zip(lines, records, strict=True):
        assert line["dataset"] == "math"
        assert line["hash"] == hashes[record["id"]]
        assert line["messages"] == [{"role": "user", "content": record["question"]}]
        assert line["answer"] == record["answer"]
    err = capsys.readouterr().err
    assert f"pacore: browse it with: pacore view {out}\n" in err


def test_a_folder_started_over_stores_its_new_problems_only(tmp_path: Path) -> None:
    data = write_records(tmp_path / "a.jsonl", shared_records("aime2025"))
    other = write_records(tmp_path / "b.jsonl", shared_records("hmmt_feb2025")[:2])
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        assert main(eval_argv(data, out, srv.url)) == 0
        (out / "results.jsonl").rename(tmp_path / "old.jsonl")
        assert main(eval_argv(other, out, srv.url)) == 0
    assert list(read_problems(out)) == ["hmmt_feb2025-1", "hmmt_feb2025-2"]
    assert {p.dataset for p in read_problems(out).values()} == {"b"}


def test_report_only_stores_the_problems_of_an_older_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_records(tmp_path / "he.jsonl", shared_records("humaneval")[:3])
    out = tmp_path / "out"

    def nothing(messages: list[Any], index: int, body: Any) -> str:
        return "```python\ndef nothing():\n    return None\n```"

    with run_in_thread(FakeConfig(responder=nothing)) as srv:
        assert main(eval_argv(data, out, srv.url, "--system", "Write Python.")) == 0
    written = (out / PROBLEMS).read_bytes()
    assert all(p.messages[0]["role"] == "system" for p in read_problems(out).values())
    (out / PROBLEMS).unlink()  # as an older pacore left it
    argv = eval_argv(data, out, "http://127.0.0.1:9", "--system", "Write Python.")
    assert main([*argv, "--report-only"]) == 0
    assert (out / PROBLEMS).read_bytes() == written
    capsys.readouterr()


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("not json\n", "invalid JSON"),
        ('{"format": "pacore.eval/1", "id": "p0"}\n', "is not pacore.eval-problems/1"),
        ('{"format": "pacore.eval-problems/9"}\n', "upgrade pacore to read it"),
        ('{"format": "pacore.eval-problems/1", "id": "p0"}\n', "not a stored problem"),
    ],
)
def test_a_problems_file_pacore_did_not_write_is_refused_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, said: str
) -> None:
    data = write_records(tmp_path / "d.jsonl", shared_records("aime2025"))
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        assert main(eval_argv(data, out, srv.url, "--limit", "1")) == 0
        (out / PROBLEMS).write_text(content)
        results = (out / "results.jsonl").read_bytes()
        capsys.readouterr()
        assert main(eval_argv(data, out, srv.url)) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert said in err
    assert "upgrade" in err or f"move {out / PROBLEMS} away" in err
    assert (out / PROBLEMS).read_text() == content
    assert (out / "results.jsonl").read_bytes() == results


def test_report_only_refuses_a_dataset_the_folder_never_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--report-only` with another benchmark replaced the folder's report with an empty
    one and added problems it never ran to problems.jsonl (exit 0)."""
    data = write_records(tmp_path / "a.jsonl", shared_records("aime2025")[:3])
    other = write_records(tmp_path / "b.jsonl", shared_records("hmmt_feb2025")[:2])
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        assert main(eval_argv(data, out, srv.url)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main([*eval_argv(other, out, "http://127.0.0.1:9"), "--report-only"]) == 2
    err = capsys.readouterr().err
    assert "2 of the dataset's 2 problems were never part of the evaluation" in err
    assert len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # its own dataset, or part of it, still reports
    assert main([*eval_argv(data, out, "http://127.0.0.1:9"), "--report-only", "--limit", "2"]) == 0


def test_report_only_takes_the_command_that_ran_and_notes_no_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command that ran plus `--report-only`, without `--backend`, was refused for a
    server's option ("--no-n is for a server ... not the embedded model"), and without
    `--max-tokens` a note said the results were computed with max_tokens null "(now
    512)": the embedded model's default, though no model is used by a report."""
    data = write_records(tmp_path / "a.jsonl", shared_records("aime2025")[:2])
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        argv = eval_argv(data, out, srv.url, "--no-n", "--retries", "1")
        assert main(argv) == 0
    at = argv.index("--backend")
    served = argv[:at] + argv[at + 2 :]  # the same command without its server
    capsys.readouterr()
    assert main([*served, "--report-only"]) == 0
    err = capsys.readouterr().err
    assert "is for a server" not in err
    assert "pacore: note" not in err


def test_report_only_notes_only_the_settings_given_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Results computed with max_tokens 512 (the embedded model's default): a report
    without `--max-tokens` said they were computed with 512 "(now null)", a default no
    report uses. Only what is given now is compared."""
    data = write_records(tmp_path / "a.jsonl", shared_records("aime2025")[:2])
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=boxed)) as srv:
        assert main(eval_argv(data, out, srv.url, "--max-tokens", "512")) == 0
    report = [*eval_argv(data, out, "http://127.0.0.1:9"), "--report-only"]
    capsys.readouterr()
    assert main(report) == 0
    assert "pacore: note" not in capsys.readouterr().err
    assert main([*report, "--max-tokens", "256"]) == 0
    assert "computed with max_tokens 512 (now 256)" in capsys.readouterr().err
