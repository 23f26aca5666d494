"""`--report-only` runs no model code, so it needs no sandbox, even where only the
fallback one exists (no namespaces) and `--unsafe-sandbox` is not given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pacore.cli import main
from pacore.graders import sandbox
from tests.fake_server import FakeConfig, run_in_thread

DATA = Path(__file__).resolve().parents[1] / "data" / "code" / "humaneval_head.jsonl"


def test_report_only_needs_no_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox.Sandbox, "mode", property(lambda self: "fallback"))
    record = json.loads(DATA.read_text().splitlines()[0])
    data = tmp_path / "he.jsonl"
    data.write_text(json.dumps(record) + "\n")
    out = tmp_path / "out"
    base = ["eval", "--dataset", str(data), "--out", str(out), "--method", "single"]
    base += ["--runs", "1", "--pool", "1", "--quiet", "--no-plots"]
    answer = f"```python\n{record['prompt']}{record['canonical_solution']}```"
    with run_in_thread(FakeConfig(responder=lambda m, i, b: answer)) as srv:
        assert main([*base, "--backend", srv.url]) == 2  # model code: refused without the flag
        assert "--unsafe-sandbox" in capsys.readouterr().err
        assert main([*base, "--backend", srv.url, "--unsafe-sandbox"]) == 0
    before = json.loads((out / "summary.json").read_text())["methods"]
    (out / "summary.json").unlink()
    assert main([*base, "--report-only"]) == 0  # no flag, no backend: nothing runs
    assert json.loads((out / "summary.json").read_text())["methods"] == before
    capsys.readouterr()
