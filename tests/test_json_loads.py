"""`pacore.io.jsonl.loads`, the one JSON reader for files: the standard library's
values and verdicts (the reference here, not the code under test) at orjson's speed,
and JSON nested past what Python can parse is bad input, not a `RecursionError`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pacore.cli import main
from pacore.errors import ConfigError
from pacore.io.jsonl import loads, parse_line

DEEP = "[" * 100_000 + "]" * 100_000

EDGES = [
    '{"a":1}', '\ufeff{"a":1}', '{"a":1}\u00a0', ' {"a":1}\r\n', '{"a":1,"a":2}', "1e400",
    "-1e400", "[1e-400]", "123456789012345678901234567890", "-9223372036854775809",
    "-9223372036854775808", "9223372036854775807", "18446744073709551615",
    "18446744073709551616", '{"id": 123456789012345678901234567890}',
    '{"id": "123456789012345678901234567890"}', '"\\ud800"', '"\\udfff\\ud800"',
    '"\\ud83d\\ude00"', '"\x01"', '"\t"', "NaN", "-Infinity", "Infinity", "[1,]",
    "{'a':1}", '{"a":1}//', "-0", "-0.0", "0.1e1", "1.", ".5", "01", "+1", "1E5", "1e+5",
    "true", "null", "[]", "{}", '"\\u0000"', '"é"', "[" * 600 + "]" * 600, '"\\/"', "\x00",
    "1 2", "", " ", '{"\\ud800":1}', "0.30000000000000004", "1.7976931348623157e308",
    "5e-324", "2.4703282292062327e-324", "9007199254740993", "123.456e-789",
]  # fmt: skip


def generated(n: int, seed: int) -> list[str]:
    """Short strings over JSON's alphabet: mostly invalid, some valid, many near-misses."""
    rng = random.Random(seed)
    alphabet = list('{}[]",:0123456789.eE+- truefalsn\\u\t\n')
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14))) for _ in range(n)]


def refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def finite(text: str) -> float:
    """A number too large for a float (1e400) is an infinity by another name."""
    value = float(text)
    if abs(value) == float("inf"):
        raise ValueError(f"{text} is not finite")
    return value


def verdict(read: Any, text: str | bytes) -> tuple[str, str]:
    """('ok', repr of the value) or ('error', '')."""
    try:
        return "ok", repr(read(text))
    except ValueError:
        return "error", ""


@pytest.mark.parametrize("strict", [True, False])
def test_same_values_and_verdicts_as_the_standard_library(strict: bool) -> None:
    def stdlib(text: str | bytes) -> Any:
        """Strict: the text (bytes read as UTF-8) without NaN or infinities; else
        `json.loads` as it is (bytes with their encoding detected, a BOM dropped)."""
        if strict:
            decoded = text if isinstance(text, str) else text.decode("utf-8")
            return json.loads(decoded, parse_constant=refuse, parse_float=finite)
        return json.loads(text)

    def ours(text: str | bytes) -> Any:
        return loads(text, strict=strict)

    checked = 0
    for text in EDGES + generated(20_000, seed=7):
        for form in (text, text.encode("utf-8", "surrogatepass")):
            try:
                expected = verdict(stdlib, form)
            except RecursionError:  # nested too deeply for the standard library
                expected = ("error", "")
            assert verdict(ours, form) == expected, form
            checked += expected[0] == "ok"
    assert checked > 500  # the generated strings are not all invalid


def test_integers_past_64_bits_stay_integers() -> None:
    assert loads('{"id": 123456789012345678901234567890}') == {"id": 123456789012345678901234567890}
    assert loads(b"[18446744073709551616, 1.5]") == [18446744073709551616, 1.5]


@pytest.mark.parametrize("strict", [True, False])
def test_nesting_past_the_parser_is_a_value_error(strict: bool) -> None:
    with pytest.raises(json.JSONDecodeError, match="nested too deeply"):
        loads(DEEP, strict=strict)
    with pytest.raises(ConfigError, match=r"^f\.jsonl:3: invalid JSON \(nested too deeply"):
        parse_line("f.jsonl:3", DEEP)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("in.jsonl", DEEP + "\n"),
        ("in.json", '{"data": ' + DEEP + "}"),
        ("in.json", "[" + DEEP + "]"),
        ("in.json", '[{"id": "a", "question": "q"}, NaN]'),
    ],
)
def test_run_and_eval_refuse_a_hostile_input_in_one_line(
    tmp_path: Path, name: str, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / name
    src.write_text(content, encoding="utf-8")
    before = src.read_bytes()
    for argv in (
        ["run", "--input", str(src), "--output", str(tmp_path / "out.jsonl"),
         "--backend", "http://127.0.0.1:9/v1"],
        ["eval", "--dataset", str(src), "--method", "single", "--out", str(tmp_path / "ev"),
         "--backend", "http://127.0.0.1:9/v1"],
    ):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith(f"pacore: error: {src}")
        assert "invalid JSON" in err[0]
    assert src.read_bytes() == before
    assert not (tmp_path / "out.jsonl").exists()
    assert not (tmp_path / "ev").exists()


def test_outputs_nested_too_deeply_are_refused_untouched(tmp_path: Path) -> None:
    """A results file, a run output and a fingerprint that are one deep line: one line
    each, in a fresh interpreter (a `RecursionError` would be a traceback), bytes kept."""
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": "a", "question": "q", "answer": "1"}\n', encoding="utf-8")
    folder = tmp_path / "ev"
    folder.mkdir()
    (folder / "results.jsonl").write_text(DEEP + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text(DEEP + "\n", encoding="utf-8")
    fingerprinted = tmp_path / "ev2"
    fingerprinted.mkdir()
    (fingerprinted / "fingerprint.json").write_text(DEEP, encoding="utf-8")
    backend = ["--backend", "http://127.0.0.1:9/v1"]
    cases = [
        (["run", "--input", str(data), "--output", str(out), *backend], out),
        (["eval", "--dataset", str(data), "--method", "single", "--out", str(folder), *backend],
         folder / "results.jsonl"),
        (["eval", "--dataset", str(data), "--method", "single", "--out", str(fingerprinted),
          *backend], fingerprinted / "fingerprint.json"),
    ]  # fmt: skip
    for argv, kept in cases:
        before = kept.read_bytes()
        done = subprocess.run(
            [sys.executable, "-m", "pacore.cli", *argv], capture_output=True, text=True, timeout=60
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, done.stderr[-500:]
        assert len(lines) == 1, done.stderr[-500:]
        assert lines[0].startswith("pacore: error: ")
        assert kept.read_bytes() == before
