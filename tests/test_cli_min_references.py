"""`min_references` no larger than the width of any round a synthesis reads, checked
before anything is spent: by `pacore run` and `pacore eval` when they plan (exit 2, one
line, no file, the backend never contacted), by `pacore serve` per request (400), and
by the engine itself before its first request.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from pacore.cli import build_parser, main
from pacore.cli.eval import plan_eval
from pacore.cli.run import plan_run
from pacore.config import PacoreConfig
from pacore.engine import Engine
from pacore.errors import InvalidSetting
from tests.fake_server import FakeServer
from tests.serve_helpers import pacore_server

UNUSED_URL = "http://127.0.0.1:9/v1"
"""A backend that must never be contacted (the discard port: nothing answers there)."""
NEVER = ["--backend", UNUSED_URL, "--wait-ready", "0", "--retries", "0"]


def _dataset(folder: Path) -> Path:
    data = folder / "d.jsonl"
    data.write_text(json.dumps({"id": "p", "question": "Q?", "answer": "1"}) + "\n")
    return data


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.lstat().st_mtime_ns for p in folder.rglob("*")}


RUN_REFUSED = [
    (["--widths", "4", "--min-references", "5"], "--min-references 5 is above the width 4"),
    (["--widths", "32,4", "--min-references", "8"], "width 4 of a round (widths [32, 4])"),
    (["--min-references", "5"], "above the width 4"),  # the default preset, low = [4]
    (["--preset", "high", "--min-references", "5"], "above the width 4"),
]

EVAL_REFUSED = [
    (["--method", "pacore:16", "--method", "pacore:4"], "8", "width 4 of a round of pacore:4"),
    (["--method", "seq:3"], "2", "above the width 1 of a round of seq:3"),
    (["--method", "nomp:medium", "--method", "sc:32"], "17", "of nomp:medium"),
]


@pytest.mark.parametrize(("flags", "message"), RUN_REFUSED)
@pytest.mark.parametrize("batch", [False, True], ids=["question", "batch"])
def test_run_refuses_before_round_one(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
    batch: bool,
) -> None:
    question = ["Q?"] if not batch else []
    if batch:
        (tmp_path / "in.jsonl").write_text('{"id": "a", "question": "Q?"}\n')
        question = ["--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o.jsonl")]
    before = _snapshot(tmp_path)
    assert main(["run", *question, *flags, *NEVER]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert message in err
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(("methods", "value", "message"), EVAL_REFUSED)
def test_eval_refuses_a_method_too_narrow(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    methods: list[str],
    value: str,
    message: str,
) -> None:
    data = _dataset(tmp_path)
    before = _snapshot(tmp_path)
    argv = ["eval", "--dataset", str(data), "--out", str(tmp_path / "out"), *methods]
    assert main([*argv, "--min-references", value, "--no-plots", "--quiet", *NEVER]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert message in err
    assert _snapshot(tmp_path) == before


def test_widths_that_allow_it_are_accepted(tmp_path: Path) -> None:
    plan = plan_run(
        build_parser().parse_args(["run", "Q", "--preset", "high", "--min-references", "4"])
    )
    assert plan.config.min_references == 4
    argv = ["eval", "--dataset", str(_dataset(tmp_path)), "--out", str(tmp_path / "out")]
    argv += ["--method", "pacore:16", "--method", "sc:2", "--min-references", "16"]
    assert plan_eval(build_parser().parse_args([*argv, "--no-plots"])).config.min_references == 16


def test_serve_answers_400_to_a_request_whose_options_conflict() -> None:
    with pacore_server() as (url, upstream):
        for model, options in [
            ("pacore-low", {"min_references": 5}),
            ("x", {"widths": [8, 2], "min_references": 3}),
        ]:
            body = {"model": model, "messages": [{"role": "user", "content": "Q"}]}
            r = httpx.post(f"{url}/chat/completions", json={**body, "pacore": options})
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["param"] == "pacore.min_references"
            assert "pacore.min_references" in error["message"]
        ok = {"model": "pacore-medium", "messages": [{"role": "user", "content": "Q"}]}
        r = httpx.post(f"{url}/chat/completions", json={**ok, "pacore": {"min_references": 16}})
        assert r.status_code == 200, r.text
        assert upstream.stats.requests == 2  # only the good request: round 1, then synthesis


async def test_the_engine_refuses_before_its_first_request() -> None:
    async with FakeServer() as srv:
        from pacore.backends.openai_compat import OpenAIBackend

        backend = OpenAIBackend(srv.url, model="fake-model")
        engine = Engine(backend, PacoreConfig(widths=(2,), min_references=3))
        with pytest.raises(InvalidSetting, match="min_references 3 is above the width 2"):
            await engine.solve("Q")
        await backend.aclose()
        assert srv.stats.requests == 0
