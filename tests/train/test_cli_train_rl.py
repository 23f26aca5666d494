"""`pacore train export|verl-command` on bad input: one line and exit 2, never a traceback
or a launch command built from a value verl would choke on. Needs pyarrow, not verl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pacore.cli import main
from pacore.io.formats import FORMAT_KEY, VERL


def _stats(data: Path, budget: str) -> None:
    """The stats file an export leaves beside `data`, its budget as raw JSON text."""
    marker = json.dumps({FORMAT_KEY: VERL.tag})[:-1]
    data.with_name(data.name + ".stats.json").write_text(f'{marker}, "budget": {budget}}}\n')


@pytest.mark.parametrize("budget", ['"abc"', "[1]", "1e999", "-5", "0", "true", "4096.0"])
def test_a_bad_budget_in_the_stats_is_named_with_its_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], budget: str
) -> None:
    data = tmp_path / "data.parquet"
    _stats(data, budget)
    assert main(["train", "verl-command", "--data", str(data)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("pacore: error: ")
    assert f"{data}.stats.json: 'budget' must be a positive integer" in captured.err
    assert captured.err.count("\n") == 1


@pytest.mark.parametrize(("budget", "length"), [("8192", "8192"), ("null", "26624")])
def test_a_good_budget_sizes_the_prompt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], budget: str, length: str
) -> None:
    data = tmp_path / "data.parquet"
    _stats(data, budget)  # null: an export with no rows; the default 24 x 1024 + 2048
    assert main(["train", "verl-command", "--data", str(data)]) == 0
    assert f"data.max_prompt_length={length} " in capsys.readouterr().out
