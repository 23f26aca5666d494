"""Dataset loading: the shared benchmark files, published formats, mappings and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pacore.errors import ConfigError
from pacore.eval.datasets import FieldMap, has_answers, load_dataset

DATA = Path(__file__).resolve().parents[1] / "data" / "shared"  # heads of ../shared/data files


@pytest.mark.parametrize(
    ("name", "count", "first_id", "answer"),
    [
        ("aime2025", 3, "aime2025-I-1", "70"),
        ("hmmt_feb2025", 3, "hmmt_feb2025-1", "103"),
        ("math500", 3, "test/precalculus/807.json", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ],
)
def test_shared_math_files_load_as_they_are(
    name: str, count: int, first_id: str, answer: str
) -> None:
    samples = load_dataset(DATA / f"{name}.jsonl")
    assert len(samples) == count
    assert samples[0].id == first_id
    assert samples[0].answer == answer
    assert samples[0].messages[0]["role"] == "user"
    assert not samples[0].is_code


def test_shared_code_files_load_as_code() -> None:
    humaneval = load_dataset(DATA / "humaneval.jsonl")
    assert len(humaneval) == 10
    assert all(s.is_code for s in humaneval)
    assert humaneval[0].entry_point == "has_close_elements"
    assert "def check(candidate)" in humaneval[0].tests
    contests = load_dataset(DATA / "codecontests_test.jsonl", limit=3)
    assert len(contests) == 1
    assert isinstance(contests[0].tests, list)
    assert {"input", "output"} <= set(contests[0].tests[0])


def test_published_sample_format(tmp_path: Path) -> None:
    f = tmp_path / "s.jsonl"
    record = {
        "id": "x",
        "messages": [{"role": "user", "content": "What is 1+1?"}],
        "ground_truth": {"answer": "2"},
    }
    f.write_text(json.dumps(record) + "\n")
    (s,) = load_dataset(f)
    assert s.answer == "2"
    assert s.messages == ({"role": "user", "content": "What is 1+1?"},)


def test_json_and_parquet(tmp_path: Path) -> None:
    rows = [{"problem": "P1", "final_answer": 3}, {"problem": "P2", "final_answer": 4}]
    (tmp_path / "d.json").write_text(json.dumps({"data": rows}))
    loaded = load_dataset(tmp_path / "d.json")
    assert [(s.id, s.question, s.answer) for s in loaded] == [("0", "P1", "3"), ("1", "P2", "4")]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    assert [s.answer for s in load_dataset(tmp_path / "d.parquet")] == ["3", "4"]


def test_field_mapping(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"uid": "u1", "q": "Q", "sol": {"final": "9"}}) + "\n")
    fields = FieldMap.parse("question=q,answer=sol.final,id=uid")
    (s,) = load_dataset(f, fields=fields)
    assert (s.id, s.question, s.answer) == ("u1", "Q", "9")
    with pytest.raises(ConfigError, match="bad field mapping"):
        FieldMap.parse("q=question")
    # A field mapped twice: which one was meant? (the last was taken, silently)
    with pytest.raises(ConfigError, match="question is mapped twice"):
        FieldMap.parse("question=question,question=answer")
    # A file has no splits: --split was ignored without a word.
    with pytest.raises(ConfigError, match="--split dev is for a hub dataset"):
        load_dataset(f, fields=fields, split="dev")


def test_dataset_without_answers_still_loads(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"id": 1, "question": "Q"}) + "\n")
    samples = load_dataset(f)
    assert samples[0].answer is None
    assert not has_answers(samples)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('{"id": 1, "question": "Q"}\n{"id": 2, "question": ', r"d\.jsonl:2: invalid JSON"),
        ('{"id": 1, "question": "Q"}\n{"id": 1, "question": "R"}\n', r"d\.jsonl:2: duplicate id"),
        ('{"id": 1, "text": "Q"}\n', r"d\.jsonl:1: no question field"),
        ('{"id": 1, "messages": []}\n', r"d\.jsonl:1: messages must be a non-empty list"),
        ("\n\n", "the dataset is empty"),
        # JSON's escape of a lone surrogate parses, then fails every hash and write
        ('{"id": 1, "question": "Q\\ud800"}\n', r"d\.jsonl:1: a lone surrogate"),
        ('{"id": 1, "question": "Q", "answer": ["\\udfff"]}\n', r"d\.jsonl:1: a lone surrogate"),
        # a gold no grader reads, and cases compared as text: ungraded or wrong in silence
        (
            '{"id": 1, "question": "Q", "answer": {"value": "5"}}\n',
            r"d\.jsonl:1: 'answer' holds an object, not an answer",
        ),
        (
            '{"id": 1, "question": "Q", "answer": [{"value": "5"}]}\n',
            r"d\.jsonl:1: 'answer' holds a list, not an answer",
        ),
        (
            '{"id": 1, "question": "Q", "tests": [{"input": [1], "output": "1"}]}\n',
            r"d\.jsonl:1: tests\[0\]\.input must be a text or a number, not a list",
        ),
        (
            '{"id": 1, "question": "Q", "tests": [{"input": "1\\n", "output": null}]}\n',
            r"d\.jsonl:1: tests\[0\]\.output must be a text or a number, not null",
        ),
        (
            '{"id": 1, "question": "Q", "tests": [{"input": "1\\n"}]}\n',
            r"d\.jsonl:1: tests\[0\]\.output must be a text or a number, not missing",
        ),
        (
            '{"id": 1, "question": "Q", "tests": [{"input": "1", "output": true}]}\n',
            r"d\.jsonl:1: tests\[0\]\.output must be a text or a number, not a boolean",
        ),
        (
            '{"id": 1, "question": "Q", "tests": ["1 -> 1"]}\n',
            r"d\.jsonl:1: tests\[0\] is a string, not an input/output case",
        ),
    ],
)
def test_malformed_datasets(tmp_path: Path, content: str, match: str) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_dataset(f)


def test_unknown_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such dataset file"):
        load_dataset(tmp_path / "nope.jsonl")
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match="unknown dataset format"):
        load_dataset(tmp_path / "d.csv")


def test_hub_dataset_without_the_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_datasets(name: str, *args: object, **kwargs: object) -> object:
        if name == "datasets":
            raise ImportError("no datasets here")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(ConfigError, match=r"pip install 'pacore\[hub\]'"):
        load_dataset("hf:openai/gsm8k")


@pytest.mark.parametrize("chunk", [1, 5, 64, 1 << 20])
@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_list_is_read_a_record_at_a_time(
    tmp_path: Path, chunk: int, indent: int | None
) -> None:
    """Records cut anywhere by the reads (strings with brackets, escapes, emoji, numbers
    at a read's end) come back exactly as `json.loads` reads the whole file."""
    from pacore.io.records import json_records

    records = [
        {"id": i, "question": "x" * (i * 37 % 300) + ' "q" [,] {} \\ \n é 😀', "n": i / 7,
         "l": [1, 2.5e10, None, True], "big": 12345678901234567890}
        for i in range(60)
    ]  # fmt: skip
    path = tmp_path / "d.json"
    path.write_text(json.dumps(records, indent=indent, ensure_ascii=False))
    assert [r for _, r in json_records(path, chunk)] == json.loads(path.read_text())
    assert [s.id for s in load_dataset(path)] == [str(i) for i in range(60)]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[1, 2", r"d\.json:1: invalid JSON \(unexpected end of file\)"),
        ("[1 2]", r"d\.json:1: invalid JSON \(expected ',' or '\]'\)"),
        ("[\n1,\n2,\n x]", r"d\.json:4: invalid JSON \(Expecting value\)"),
        ("[1,]", r"d\.json:1: invalid JSON"),
        ('[{"a": "open}]', r"d\.json:1: invalid JSON \(Unterminated string"),
        ("[1] x", r"d\.json:1: invalid JSON \(extra data after the list\)"),
        # Infinity spelt as a number (a gold of 1e999 was read as "inf" and graded).
        ('[{"answer": 1e999}]', r"d\.json:1: invalid JSON \(1e999 is out of the range"),
        ('{"data": [{"answer": -3E+400}]}', r"d\.json:1: invalid JSON \(-3E\+400 is out of"),
    ],
)
def test_a_broken_json_list_names_its_line(tmp_path: Path, text: str, match: str) -> None:
    from pacore.io.records import json_records

    path = tmp_path / "d.json"
    path.write_text(text)
    for chunk in (1, 3, 1 << 20):
        with pytest.raises(ConfigError, match=match):
            list(json_records(path, chunk))


def test_a_large_json_pool_is_never_held_whole(tmp_path: Path) -> None:
    """A 48 MB JSON list of pool records streams through `read_pool`."""
    import tracemalloc

    from pacore.train.records import read_pool

    response = "r" * 20_000
    path = tmp_path / "pool.json"
    with path.open("w") as fh:
        fh.write("[\n")
        for i in range(100):
            record = {"id": f"p{i}", "question": f"q{i}", "responses": [response] * 24,
                      "ground_truth": "1"}  # fmt: skip
            fh.write(("," if i else "") + json.dumps(record) + "\n")
        fh.write("]\n")
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_pool(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100
    assert peak < 16_000_000  # ~6 MB: a few records, not the 48 MB file (was ~100 MB)


@pytest.mark.parametrize("raw", [b'[{"question": "\xff"}]', b'{"data": [{"question": "\xff"}]}'])
def test_a_json_file_that_is_not_utf8_is_one_line(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "d.json"
    path.write_bytes(raw)
    with pytest.raises(ConfigError, match=r"d\.json: not UTF-8 text"):
        load_dataset(path)


def test_numbers_and_a_missing_input_are_cases_the_grader_reads(tmp_path: Path) -> None:
    """A number for an input or an output is graded as its text, and a case without an
    input is a program that reads nothing: both load (a review found the first refusal
    too strict: the code grader passes the right program on them)."""
    f = tmp_path / "d.jsonl"
    f.write_text(
        '{"id": 1, "question": "Q", "tests": [{"input": 5, "output": 25}, {"output": "hi"}]}\n'
    )
    (sample,) = load_dataset(f)
    assert sample.tests == [{"input": 5, "output": 25}, {"output": "hi"}]
