"""Every command that takes `--grader` checks it against the registry the same way.

Run as users run them (`pacore.cli.main`): a name no grader has is one line and exit 2
before anything is read or written, and a name in another case is that grader, never
math in disguise. Without a name, the data decides (code if tests, else math).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pacore.cli import main
from pacore.errors import ConfigError
from pacore.train.records import PoolRecord, write_pool
from pacore.train.rewards import has_tests

UNKNOWN = "pacore: error: unknown grader 'vibes'; valid graders: code, exact, math, numeric\n"
CASES = [{"input": "1 2\n", "output": "3\n"}]


def _pool(path: Path, truth: object, responses: int = 16) -> Path:
    record = PoolRecord(
        id="p0",
        conversation=({"role": "user", "content": "Add the two numbers."},),
        responses=tuple(f"<think>try {i}</think>print(3)" for i in range(responses)),
        ground_truth=truth,
    )
    write_pool(path, [record])
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _dataset(path: Path) -> Path:
    path.write_text('{"id": "p0", "question": "What is 1 + 2?", "answer": "3"}\n')
    return path


COMMANDS = {
    "eval": "eval --dataset {d}/data.jsonl --out {d}/out --method single",
    "train filter": "train filter --stage 1 --input {d}/pool.jsonl --out {d}/kept.jsonl",
    "train filter, no pool": "train filter --stage 1 --input {d}/none.jsonl --out {d}/kept.jsonl",
    "train export": "train export --format verl --input {d}/pool.jsonl --out {d}/data.parquet",
    "train grpo": "train grpo --model {d}/no-model --input {d}/pool.jsonl --out {d}/trained",
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unknown_grader_is_one_line_and_exit_2_before_anything_is_written(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _dataset(tmp_path / "data.jsonl")
    _pool(tmp_path / "pool.jsonl", "3")
    before = _files(tmp_path)
    argv = [a.format(d=tmp_path) for a in COMMANDS[command].split()]
    argv += ["--backend", "http://127.0.0.1:9/v1", "--no-plots"] if command == "eval" else []
    capsys.readouterr()
    assert main([*argv, "--grader", "vibes"]) == 2
    assert capsys.readouterr().err == UNKNOWN
    assert _files(tmp_path) == before


def test_export_with_a_capitalised_grader_exports_that_grader(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pool = _pool(tmp_path / "pool.jsonl", CASES)
    out = tmp_path / "data.parquet"
    argv = ["train", "export", "--format", "verl", "--input", str(pool), "--out", str(out)]
    assert main([*argv, "--grader", "Code"]) == 0
    (row,) = pq.read_table(out).to_pylist()
    assert (row["ability"], row["data_source"], row["extra_info"]["kind"]) == (
        "code",
        "pacore/code",
        "code",
    )


def test_the_verl_reward_refuses_a_kind_no_grader_has() -> None:
    from pacore.train.verl import compute_score

    with pytest.raises(ConfigError, match="unknown grader 'vibes'"):
        compute_score("pacore/vibes", "\\boxed{3}", "3", extra_info={"kind": "vibes"})
    # a row pacore did not export: a data_source that names no grader is no error
    result: Any = compute_score("openai/gsm8k", "\\boxed{3}", "3")
    assert (result["score"] if isinstance(result, dict) else result) == 1.0  # dict: with analyses


@pytest.mark.parametrize(
    ("truth", "tests"),
    [
        (CASES, True),
        (json.dumps(CASES), True),
        ({"tests": "def check(f): assert f(1) == 2", "entry_point": "f"}, True),
        (json.dumps({"tests": CASES}), True),
        ("3", False),
        ("[1, 2]", False),
        ("{not json", False),
        ([], False),
        ([1, 2], False),
        ({"answer": "3"}, False),
        (None, False),
    ],
)
def test_ground_truths_with_tests_are_told_apart(truth: object, tests: bool) -> None:
    assert has_tests(truth) is tests


def test_eval_refuses_a_dataset_that_mixes_code_and_math(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mixed file would be graded all by the code grader (the math problems with no
    tests: wrong); one line, exit 2, nothing written, whatever --grader says."""
    shared = Path(__file__).resolve().parents[1] / "data" / "shared"
    lines = [
        *(shared / "humaneval.jsonl").read_text().splitlines()[:2],
        *(shared / "aime2025.jsonl").read_text().splitlines()[:3],
    ]
    data = tmp_path / "mixed.jsonl"
    data.write_text("\n".join(lines) + "\n")
    first_code, first_math = json.loads(lines[0])["id"], json.loads(lines[2])["id"]
    before = _files(tmp_path)
    for grader in ([], ["--grader", "code"], ["--grader", "math"]):
        capsys.readouterr()
        argv = ["eval", "--dataset", str(data), "--out", str(tmp_path / "out"), "--method",
                "single", "--backend", "http://127.0.0.1:9/v1", "--no-plots", *grader]  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"2 of 5 records have 'tests' (code, e.g. {first_code!r})" in err
        assert repr(first_math) in err
        assert _files(tmp_path) == before
