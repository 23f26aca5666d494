"""`pacore train arith|pool|filter` end to end against the fake server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pacore.cli import main
from pacore.train.episodes import episode
from pacore.train.records import PoolRecord, read_pool, write_pool
from tests.fake_server import FakeConfig, run_in_thread

STAGE1 = ["filter", "--stage", "1", "--input", "{d}/p.jsonl", "--out", "{d}/o.jsonl"]
STAGE2 = ["filter", "--stage", "2", "--input", "{d}/p.jsonl", "--out", "{d}/o.jsonl"]
EXPORT = ["export", "--format", "verl", "--input", "{d}/p.jsonl"]
VERL_COMMAND = ["verl-command", "--data", "{d}/none.parquet"]
GRPO = ["grpo", "--model", "{d}/none", "--input", "{d}/p.jsonl", "--out", "{d}/trained"]
_OPERANDS = re.compile(r"(\d+) (?:\+|plus|and) (\d+)")


def arithmetic(messages: list[dict[str, Any]], index: int, body: dict[str, Any]) -> str:
    """Right on the first `a % 4` choices of a sum `a + b`, wrong on the rest."""
    text = str(messages[-1]["content"])
    problem = text.split("Original Problem:\n", 1)[-1]
    a, b = (int(x) for x in _OPERANDS.findall(problem)[0])
    answer = a + b if index < a % 4 else a + b + 1
    return f"<think>adding {a} and {b}</think>So the sum is \\boxed{{{answer}}}."


def problems(tmp_path: Path) -> Path:
    out = tmp_path / "problems.jsonl"
    argv = ["train", "arith", "--count", "12", "--seed", "1", "--out", str(out)]
    assert main([*argv, "--magnitude", "0..1", "--operations", "add"]) == 0
    return out


def test_arith_writes_the_eval_format(tmp_path: Path) -> None:
    out = problems(tmp_path)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 12
    assert {"id", "question", "answer"} <= set(lines[0])
    again = tmp_path / "new" / "folder" / "again.jsonl"  # made, as `run --output` makes it
    argv = ["train", "arith", "--count", "12", "--seed", "1", "--out", str(again)]
    assert main([*argv, "--magnitude", "0..1", "--operations", "add"]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_pool_then_filter_stages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = problems(tmp_path)
    pool = tmp_path / "pool.jsonl"
    with run_in_thread(FakeConfig(responder=arithmetic, record_bodies=False)) as srv:
        argv = ["train", "pool", "--dataset", str(data), "--size", "8", "--backend", srv.url]
        assert main([*argv, "--out", str(pool), "--temperature", "1.0"]) == 0
        first = srv.stats.requests
        assert first >= 12
        # A rerun (a killed run resumed) finds every trajectory in the store.
        assert main([*argv, "--out", str(pool), "--temperature", "1.0"]) == 0
        assert srv.stats.requests == first
    records = list(read_pool(pool))
    assert len(records) == 12
    assert all(len(r.responses) == 8 for r in records)
    assert records[0].responses[0].startswith("<think>")  # stored whole
    assert (tmp_path / "pool.jsonl.store.sqlite").exists()

    kept = tmp_path / "kept.jsonl"
    argv = ["train", "filter", "--stage", "1", "--input", str(pool), "--out", str(kept)]
    assert main([*argv, "--threshold", "9/24"]) == 0
    counts = json.loads((tmp_path / "kept.jsonl.counts.json").read_text())
    total = counts["total"]
    assert total["input"] == 12
    by_residue: dict[int, list[str]] = {}
    for r in records:
        a = int(_OPERANDS.findall(r.question)[0][0])
        by_residue.setdefault(a % 4, []).append(r.id)
    expected = {r for m in (1, 2) for r in by_residue.get(m, [])}  # 1/8, 2/8 < 3/8
    assert {r.id for r in read_pool(kept)} == expected
    assert total["all wrong"] == len(by_residue.get(0, []))
    assert total["too easy"] == len(by_residue.get(3, []))  # 3/8 = t: the boundary
    assert counts["settings"] == {"grader": "math", "threshold": "3/8"}
    assert "| arith/add |" in (tmp_path / "kept.jsonl.counts.md").read_text()
    assert "stage 1: kept" in capsys.readouterr().err

    kept2 = tmp_path / "kept2.parquet"
    with run_in_thread(FakeConfig(responder=arithmetic)) as srv:
        argv = ["train", "filter", "--stage", "2", "--input", str(kept), "--out", str(kept2)]
        argv += ["--backend", srv.url, "--samples", "4", "--refs", "2..3", "--seed", "5"]
        assert main(argv) == 0
        prompts = [b["messages"] for b in srv.stats.bodies]
    # Stage 2 samples the episodes training builds, a fresh M for every sample (issue 19:
    # one M per problem made the four samples four looks at the same references).
    for record in read_pool(kept):
        for k in range(4):
            assert episode(record, k, lo=2, hi=3, seed=5) in prompts
    assert len(prompts) == 4 * len(expected)
    stage2 = json.loads((tmp_path / "kept2.parquet.counts.json").read_text())
    assert stage2["stage"] == 2
    assert stage2["total"]["input"] == len(expected)
    assert stage2["total"]["kept"] == len(list(read_pool(kept2)))


def test_pool_keeps_only_usable_responses(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "question": "Q?", "answer": "1"}\n')
    out = tmp_path / "p.json"

    def respond(messages: list[dict[str, Any]], index: int, body: dict[str, Any]) -> str:
        return "" if index % 2 else "\\boxed{1}"

    with run_in_thread(FakeConfig(responder=respond)) as srv:
        argv = ["train", "pool", "--dataset", str(data), "--size", "4", "--backend", srv.url]
        assert main([*argv, "--out", str(out)]) == 0
    (record,) = read_pool(out)
    assert record.responses == ("\\boxed{1}", "\\boxed{1}")
    assert record.sampled == 4  # the empty ones were sampled: stage 1 counts them wrong


def test_pool_failures_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "a", "question": "Q?", "answer": "1"}\n')
    config = FakeConfig(fail_rate=1.0, fail_rate_status=400)
    with run_in_thread(config) as srv:
        argv = ["train", "pool", "--dataset", str(data), "--size", "2", "--backend", srv.url]
        assert main([*argv, "--out", str(tmp_path / "p.jsonl"), "--retries", "0"]) == 1
    assert "2 failed: rerun to sample them" in capsys.readouterr().err


def test_code_pool_is_filtered_with_the_code_grader(tmp_path: Path) -> None:
    tests = [{"input": "1\n", "output": "1\n"}, {"input": "2\n", "output": "2\n"}]
    rec = PoolRecord(
        "c/1",
        ({"role": "user", "content": "echo"},),
        ("```python\nprint(input())\n```", "```python\nprint(1)\n```", "nothing") * 8,
        {"tests": tests},
    )
    pool = tmp_path / "code.parquet"
    write_pool(pool, [rec])
    out = tmp_path / "k.jsonl"
    argv = ["train", "filter", "--stage", "1", "--input", str(pool), "--out", str(out)]
    assert main([*argv, "--unsafe-sandbox"]) == 0  # mean 1/2 < 15/24
    assert [r.id for r in read_pool(out)] == ["c/1"]
    counts = json.loads((tmp_path / "k.jsonl.counts.json").read_text())
    assert counts["settings"] == {"grader": "code", "threshold": "5/8"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["arith", "--count", "0", "--out", "{d}/a.jsonl"], "--count must be"),
        (["arith", "--out", "{d}/a.txt"], "must be a .jsonl file"),
        (["arith", "--out", "{d}/p.jsonl/a.jsonl"], "is not a folder"),
        (["arith", "--magnitude", "x", "--out", "{d}/a.jsonl"], "--magnitude expects"),
        (["arith", "--magnitude", "-1..2", "--out", "{d}/a.jsonl"], "--magnitude must satisfy"),
        (["arith", "--operations", "", "--out", "{d}/a.jsonl"], "names no operation"),
        (["pool", "--dataset", "{d}/p.jsonl", "--out", "{d}/p.jsonl"], "(the same file"),
        (["pool", "--dataset", "{d}/p.jsonl", "--size", "0", "--out", "{d}/o.jsonl"], "--size"),
        # built whole before it is written: a billion filled memory first
        (["arith", "--count", "2000000000", "--out", "{d}/a.jsonl"], "--count must be at most"),
        # a size past any pool: a traceback from SQLite (too many variables) before
        (
            ["pool", "--dataset", "{d}/p.jsonl", "--size", "260000", "--out", "{d}/o.jsonl"],
            "--size must be from 1 to 65,536",
        ),
        (["pool", "--dataset", "{d}/none.jsonl", "--out", "{d}/o.jsonl"], "no such dataset"),
        (["filter", "--stage", "1", "--input", "{d}/p.jsonl", "--out", "{d}/o.csv"], "format"),
        (
            [*STAGE1, "--threshold", "2"],
            "--threshold must be",
        ),
        (
            [*STAGE1, "--grader", "poetry"],
            "unknown grader",
        ),
        (
            [*STAGE1, "--unsafe-sandbox"],
            "--unsafe-sandbox is for the code grader",
        ),
        (
            [*STAGE1, "--backend", "http://127.0.0.1:9/v1"],
            "--backend is for stage 2",
        ),
        (
            [*STAGE2, "--threshold", "1/2"],
            "--threshold is for stage 1",
        ),
        (
            [*STAGE2, "--samples", "0"],
            "--samples",
        ),
        (
            [*STAGE2, "--refs", "3..2"],
            "--refs: must satisfy 1 <= LO <= HI",
        ),
        (
            [*STAGE2, "--refs", "-1..2"],
            "--refs: must satisfy 1 <= LO <= HI",
        ),
        (
            [*STAGE2, "--refs", "abc"],
            "--refs: expected LO..HI",
        ),
        (
            [*STAGE2, "--refs", "2..x"],
            "--refs: expected LO..HI",
        ),
        (
            [*STAGE2, "--compaction", "zip"],
            "--compaction",
        ),
        (
            ["filter", "--stage", "1", "--input", "{d}/empty.jsonl", "--out", "{d}/o.jsonl"],
            "no problems",
        ),
        ([*EXPORT, "--out", "{d}/e.jsonl"], "e.jsonl: unknown export format (use .parquet)"),
        ([*EXPORT, "--out", "{d}/e.parquet", "--refs", "-1..2"], "--refs: must satisfy"),
        # p.jsonl's one problem has no responses: every row is skipped
        ([*EXPORT, "--out", "{d}/e.parquet", "--refs", "1..2"], "no problems to export"),
        ([*EXPORT, "--out", "{d}/e.parquet"], "no problems to export"),
        ([*EXPORT, "--input", "{d}/empty.jsonl", "--out", "{d}/e.pq"], "the pool is empty"),
        ([*VERL_COMMAND, "--actor-lr", "nan"], "--actor-lr must be a positive finite number"),
        ([*VERL_COMMAND, "--actor-lr", "-1e-6"], "--actor-lr must be a positive finite number"),
        ([*VERL_COMMAND, "--critic-lr", "-1"], "--critic-lr must be a positive finite number"),
        ([*VERL_COMMAND, "--critic-lr", "inf"], "--critic-lr must be a positive finite number"),
        ([*VERL_COMMAND, "--critic-lr", "0"], "--critic-lr must be a positive finite number"),
        ([*VERL_COMMAND, "--test-freq", "0"], "--test-freq must be at least 1"),
        # grpo's settings are checked where they are defined (`GrpoSettings`), before
        # TRL is needed: a learning rate of NaN or -1 was trained on.
        ([*GRPO, "--learning-rate", "nan"], "--learning-rate must be a finite number"),
        ([*GRPO, "--learning-rate", "-1e-6"], "--learning-rate must be above 0"),
        ([*GRPO, "--temperature", "0"], "--temperature must be above 0"),
        ([*GRPO, "--num-generations", "1"], "--num-generations must be at least 2"),
        ([*GRPO, "--epochs", "0"], "--epochs must be at least 1"),
        ([*GRPO, "--max-completion-length", "-5"], "--max-completion-length must be at least 1"),
        # a folder of the user's, or the base model, is never written over
        (
            ["grpo", "--model", "/nonexistent/m", "--input", "{d}/p.jsonl", "--out", "{d}"],
            "not written by this pacore command",
        ),
        ([*GRPO[:-1], "{d}/none"], "holds or is the input"),
        ([*GRPO[:-1], "{d}/p.jsonl"], "the output folder must be a folder"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "p.jsonl").write_text('{"id": "a", "question": "Q?", "answer": "1"}\n')
    (tmp_path / "empty.jsonl").write_text("")
    before = sorted(p.name for p in tmp_path.iterdir())
    args = ["train", *(a.replace("{d}", str(tmp_path)) for a in argv)]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors exit; pacore's return the code
        code = exc.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_stage1_keeps_a_later_copy_when_the_first_has_no_gold(tmp_path: Path) -> None:
    """Two copies of one question, only the second with a gold answer: the second is
    kept (as it would be alone), the first counted as gold unparsable."""
    question = ({"role": "user", "content": "What is 3+4?"},)
    responses = ("<think>x</think>\\boxed{7}",) * 3 + ("<think>y</think>\\boxed{8}",) * 21
    pool, out = tmp_path / "pool.jsonl", tmp_path / "kept.jsonl"
    write_pool(
        pool,
        [
            PoolRecord("copy1", question, responses, None, sampled=24),
            PoolRecord("copy2", question, responses, {"answer": "7"}, sampled=24),
        ],
    )
    argv = ["train", "filter", "--stage", "1", "--input", str(pool), "--out", str(out)]
    assert main(argv) == 0
    assert [r.id for r in read_pool(out)] == ["copy2"]
    total = json.loads((tmp_path / "kept.jsonl.counts.json").read_text())["total"]
    assert total["gold unparsable"] == 1
    assert total["duplicate"] == 0
    assert total["kept"] == 1
    assert total["input"] == 2 == sum(v for k, v in total.items() if k != "input")


def test_stage1_grades_a_large_pool_without_holding_it(tmp_path: Path) -> None:
    """400 problems x 24 responses of 10 kB (96 MB) pass through stage 1 a chunk of 64
    problems (15 MB) at a time: traced memory stays at a few chunks, and the kept set
    and counts are exact."""
    import tracemalloc

    big = "x" * 10_000

    def records() -> Any:
        for i in range(400):
            right = i % 5  # 0..4 right of 24: kept when 0 < right/24 < 9/24
            yield PoolRecord(
                id=f"src{i % 2}/p{i}",
                conversation=({"role": "user", "content": f"question {i}"},),
                responses=tuple(f"{big} \\boxed{{{1 if j < right else 2}}}" for j in range(24)),
                ground_truth="1",
            )

    pool, out = tmp_path / "big.jsonl", tmp_path / "kept.jsonl"
    write_pool(pool, records())
    argv = ["train", "filter", "--stage", "1", "--input", str(pool), "--out", str(out)]
    tracemalloc.start()
    try:
        assert main([*argv, "--grader", "exact"]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48_000_000  # a few chunks, never the whole 96 MB
    kept = [r.id for r in read_pool(out)]
    assert kept == [f"src{i % 2}/p{i}" for i in range(400) if i % 5]
    counts = json.loads((tmp_path / "kept.jsonl.counts.json").read_text())
    assert counts["total"]["input"] == 400
    assert counts["total"]["all wrong"] == 80
    assert counts["total"]["kept"] == 320
    assert counts["sources"]["src0"]["input"] == 200
