"""PoolRecord and pool files: the PaCoRe-Train format in JSON, JSONL and Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pacore.errors import ConfigError
from pacore.train.records import PoolRecord, read_pool, write_pool


def record(i: int, truth: object = "42") -> PoolRecord:
    return PoolRecord(
        id=f"p{i}",
        conversation=({"role": "user", "content": f"question {i}"},),
        responses=(f"<think>r</think>\\boxed{{{i}}}", "plain"),
        ground_truth=truth,
    )


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    records = [record(i) for i in range(3)]
    path = tmp_path / f"pool{suffix}"
    assert write_pool(path, records) == 3
    assert list(read_pool(path)) == records
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_parquet_keeps_structured_ground_truth(tmp_path: Path) -> None:
    tests = [{"input": "1\n", "output": "1\n"}]
    records = [record(0, tests), record(1, "7")]
    write_pool(tmp_path / "p.parquet", records)
    assert list(read_pool(tmp_path / "p.parquet")) == records


def test_parquet_is_written_a_row_group_at_a_time(tmp_path: Path) -> None:
    """600 problems x 24 responses of 5 kB (72 MB), a structured ground truth only at
    the end: every ground truth becomes JSON, yet traced memory stays at about one row
    group (the records are spooled to disk first), and nothing is left beside it."""
    import tracemalloc

    import pyarrow.parquet as pq

    big = "é" * 5_000

    def records() -> Any:
        for i in range(600):
            truth: object = [{"input": "1\n", "output": "1\n"}] if i == 599 else str(i)
            yield PoolRecord(
                id=f"p{i}",
                conversation=({"role": "user", "content": f"question {i}"},),
                responses=tuple(f"{big}{j}" for j in range(24)),
                ground_truth=truth,
            )

    path = tmp_path / "big.parquet"
    tracemalloc.start()
    try:
        assert write_pool(path, records()) == 600
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 120_000_000  # one row group at a time: ~66 MB; all rows at once: 245 MB
    assert pq.ParquetFile(path).metadata.num_row_groups == 10
    back = list(read_pool(path))
    assert [r.ground_truth for r in back[:2]] == ["0", "1"]
    assert back[-1] == next(r for r in records() if r.id == "p599")
    assert back[5].responses[3] == f"{big}3"
    assert [p.name for p in tmp_path.iterdir()] == ["big.parquet"]


def test_released_format_without_ids(tmp_path: Path) -> None:
    path = tmp_path / "released.json"
    path.write_text(
        json.dumps(
            [
                {
                    "conversation": [{"role": "user", "content": "1+1?"}],
                    "responses": ["2"],
                    "ground_truth": "2",
                }
            ]
        )
    )
    (got,) = read_pool(path)
    assert got.id == "0"
    assert got.question == "1+1?"
    assert got.to_dict()["responses"] == ["2"]


def test_question_field_and_no_responses() -> None:
    got = PoolRecord.from_dict({"id": 3, "question": "Q", "answer": "5"}, "x")
    assert got == PoolRecord("3", ({"role": "user", "content": "Q"},), (), "5")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1], "expected a JSON object"),
        ({"conversation": []}, "non-empty list"),
        ({"conversation": [{"role": "user"}]}, r"conversation\[0\] needs a 'role' and a 'content'"),
        ({"conversation": [{"role": "system", "content": "s"}]}, "no user message"),
        ({"question": " "}, "'question' must be a non-empty string"),
        ({"question": "q", "responses": [1]}, "list of strings"),
        ({"question": "q", "id": True}, "the id must be"),
        ({"question": "q", "responses": ["ok", "a\udfffb"]}, "lone surrogate"),
        ({"question": "q\ud800"}, "lone surrogate"),
        ({"question": "q", "ground_truth": {"tests": [{"input": "\ud83d"}]}}, "lone surrogate"),
    ],
)
def test_malformed_records(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PoolRecord.from_dict(raw, "f.jsonl:1")


def test_read_errors(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match="unknown pool format"):
        list(read_pool(tmp_path / "x.csv"))
    with pytest.raises(ConfigError, match="no such file"):
        list(read_pool(tmp_path / "x.jsonl"))
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        list(read_pool(tmp_path / "d.jsonl"))
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": 1, "question": "q"}\n{"id": "1", "question": "q"}\n')
    with pytest.raises(ConfigError, match=r"dup.jsonl:2: duplicate id '1'"):
        list(read_pool(dup))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match="not a readable Parquet"):
        list(read_pool(bad))
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe[")
    with pytest.raises(ConfigError, match="not UTF-8"):
        list(read_pool(binary))


def test_write_creates_missing_folders_as_run_does(tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "p.jsonl"
    assert write_pool(out, []) == 0
    assert out.is_file()
    assert not out.read_bytes()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"):
        write_pool(tmp_path / "file" / "deeper" / "p.jsonl", [])
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_sampled_round_trips(tmp_path: Path, suffix: str) -> None:
    records = [
        PoolRecord("a", ({"role": "user", "content": "q"},), ("r",), "1", sampled=24),
        PoolRecord("b", ({"role": "user", "content": "q"},), ("r",), "1"),
    ]
    out = tmp_path / f"p{suffix}"
    write_pool(out, records)
    assert [r.sampled for r in read_pool(out)] == [24, None]


def test_sampled_below_the_responses_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "p.jsonl"
    out.write_text('{"id": "a", "question": "q", "responses": ["x", "y"], "sampled": 1}\n')
    with pytest.raises(ConfigError, match="'sampled'"):
        list(read_pool(out))


def test_parquet_ground_truth_nested_too_deeply_is_one_line(tmp_path: Path) -> None:
    """A structured ground truth is stored as JSON text; one nested past what Python can
    parse (a hostile file) is a `ConfigError` naming the row, not a `RecursionError`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    write_pool(path, [record(0, [{"input": "1\n", "output": "1\n"}])])
    table = pq.read_table(path)
    deep = pa.array(["[" * 100_000 + "]" * 100_000], type=table.schema.field("ground_truth").type)
    column = table.schema.get_field_index("ground_truth")
    pq.write_table(table.set_column(column, table.schema.field(column), deep), path)
    with pytest.raises(ConfigError, match=r"p\.parquet: row 0: ground_truth is not JSON \(nested"):
        list(read_pool(path))
