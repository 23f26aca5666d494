"""`pacore eval` end to end against a simulated model with known accuracy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pacore.cli import main
from pacore.eval.traces import TraceReader
from tests.eval.sim_model import CORRECT, SimulatedModel
from tests.fake_server import FakeConfig, run_in_thread
from tests.helpers import wait_for_lines

ROOT = Path(__file__).resolve().parents[2]


def dataset(path: Path, problems: int) -> Path:
    with path.open("w") as fh:
        for i in range(problems):
            fh.write(json.dumps({"id": f"p{i}", "question": f"Problem {i}?", "answer": CORRECT}))
            fh.write("\n")
    return path


def test_accuracies_match_the_analytic_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = SimulatedModel(p=0.3, q_any=0.9, q_none=0.1)
    data = dataset(tmp_path / "d.jsonl", 60)
    out = tmp_path / "out"
    methods = ["single", "sc:8", "pacore:low", "pacore:8"]
    with run_in_thread(FakeConfig(responder=model, record_bodies=False)) as srv:
        argv = ["eval", "--dataset", str(data), "--out", str(out), "--backend", srv.url]
        argv += ["--runs", "4", "--pool", "16", "--seed", "7", "--quiet"]
        for m in methods:
            argv += ["--method", m]
        assert main(argv) == 0
        # Round 1 comes only from the pools: one n=16 request per problem, plus one
        # synthesis per pacore run.
        assert srv.stats.requests == 60 + 2 * 60 * 4
    summary = json.loads((out / "summary.json").read_text())["methods"]
    expected = {
        "single": model.single(),
        "sc:8": model.self_consistency(8),
        "pacore:low": model.pacore(4),
        "pacore:8": model.pacore(8),
    }
    for name, value in expected.items():
        got = summary[name]
        # pass@1 over 60 problems: within 4 standard errors (plus a floor for tiny SE)
        bound = 4 * got["stderr"] + 0.02
        assert abs(got["accuracy"] - value) <= bound, (name, got["accuracy"], value, bound)
        assert got["mean_ttc_tokens"] > 0
        assert got["failures"] == 0
    # Methods rank as the model says: synthesis beats a single sample.
    assert summary["pacore:8"]["accuracy"] > summary["single"]["accuracy"]
    emergent = summary["pacore:low"]["emergent_correctness"]
    assert emergent is not None
    assert emergent < 0.35
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 60 * 4 * len(methods)
    for key in ("id", "method", "run", "answer", "score", "correct", "ttc_tokens"):
        assert key in records[0]
    assert (out / "report.md").read_text().count("|") > 10
    assert "pacore:low" in capsys.readouterr().out


def _eval_cmd(data: Path, out: Path, url: str) -> list[str]:
    return [
        sys.executable, "-m", "pacore.cli", "eval", "--dataset", str(data), "--out", str(out),
        "--backend", url, "--method", "pacore:low", "--method", "sc:4", "--runs", "3",
        "--pool", "8", "--seed", "3", "--jobs", "2", "--quiet", "--no-plots",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("stop", "loop"),
    [(signal.SIGKILL, "uvloop"), (signal.SIGINT, "uvloop"), (signal.SIGINT, "asyncio")],
)
def test_a_stopped_eval_resumes_to_the_same_numbers(
    tmp_path: Path, stop: signal.Signals, loop: str
) -> None:
    """kill -9, or Ctrl-C on either event loop (exit 130 naming the folder): every line
    written has its trace, and the rerun asks only for what is missing and gives the
    uninterrupted evaluation's numbers."""
    data = dataset(tmp_path / "d.jsonl", 12)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PACORE_EVENT_LOOP": loop}
    config = FakeConfig(responder=SimulatedModel(), ttft_s=0.05, record_bodies=False)
    with run_in_thread(config) as srv:
        whole = subprocess.run(
            _eval_cmd(data, tmp_path / "whole", srv.url), env=env, capture_output=True, text=True
        )
        assert whole.returncode == 0, whole.stderr
        out = tmp_path / "stopped"
        proc = subprocess.Popen(
            _eval_cmd(data, out, srv.url), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        results = out / "results.jsonl"
        wait_for_lines(results, 10)
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
        if stop == signal.SIGINT:
            assert proc.returncode == 130, err
            last = err.decode().strip().splitlines()[-1]
            assert last == f"pacore: interrupted; finished results are in {out}, rerun to resume"
        else:
            assert proc.returncode == -signal.SIGKILL
        written = [json.loads(x) for x in results.read_text().splitlines()]
        assert 10 <= len(written) < 12 * 3 * 2
        traces = TraceReader(out / "traces.sqlite")
        try:
            assert all(traces.trace(r["id"], r["method"], r["run"]) for r in written)
        finally:
            traces.close()
        before = srv.stats.requests
        again = subprocess.run(
            _eval_cmd(data, out, srv.url), env=env, capture_output=True, text=True
        )
        assert again.returncode == 0, again.stderr
        resumed_requests = srv.stats.requests - before
    a = json.loads((tmp_path / "whole" / "summary.json").read_text())["methods"]
    b = json.loads((out / "summary.json").read_text())["methods"]
    for name in ("pacore:low", "sc:4"):
        assert a[name]["accuracy"] == b[name]["accuracy"]
        assert a[name]["mean_ttc_tokens"] == b[name]["mean_ttc_tokens"]
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert len({(r["id"], r["method"], r["run"]) for r in lines}) == len(lines) == 72
    # The resumed part asked only for what was missing: at most 12 pools + 36 syntheses.
    assert resumed_requests < 12 + 36


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "magic:3"], "unknown method 'magic:3'"),
        (["--method", "pacore:low", "--grader", "vibes"], "unknown grader 'vibes'"),
        (["--method", "pacore:high", "--pool", "8"], "draws 32 first-round trajectories"),
        (["--method", "pacore:low", "--runs", "0"], "--runs must be at least 1"),
    ],
)
def test_bad_eval_input_is_one_line_and_exit_2(
    tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = dataset(tmp_path / "d.jsonl", 2)
    code = main(["eval", "--dataset", str(data), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_malformed_dataset_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": 1, "question": "Q", "answer": "1"}\n{oops\n')
    code = main(
        ["eval", "--dataset", str(data), "--out", str(tmp_path / "o"), "--method", "single"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"{data}:2: invalid JSON" in err
    assert not (tmp_path / "o").exists()


def test_a_model_that_leaves_nothing_usable_is_wrong_not_failed(tmp_path: Path) -> None:
    """Every sample is cut before its answer: PaCoRe has nothing to pass on (no answer);
    self-consistency's samples are its answers, graded on what they hold (wrong)."""
    from tests.fake_server import fixed_length_responder

    data = dataset(tmp_path / "d.jsonl", 3)
    out = tmp_path / "out"
    config = FakeConfig(responder=fixed_length_responder(50), record_bodies=False)
    with run_in_thread(config) as srv:
        argv = ["eval", "--dataset", str(data), "--out", str(out), "--backend", srv.url]
        argv += ["--method", "pacore:low", "--method", "sc:4", "--runs", "2", "--pool", "4"]
        assert main([*argv, "--max-tokens", "5", "--quiet", "--no-plots"]) == 0
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    statuses = {(r["method"], r["status"]) for r in records}
    assert statuses == {("pacore:low", "no_answer"), ("sc:4", "truncated")}
    assert all(r["correct"] is False for r in records)
    assert all("truncated" in r["reason"] for r in records if r["method"] == "pacore:low")
    summary = json.loads((out / "summary.json").read_text())["methods"]
    for name in ("pacore:low", "sc:4"):
        assert summary[name]["accuracy"] == 0.0
        assert summary[name]["failures"] == 0


DATA = ROOT / "tests" / "data" / "shared"  # heads of ../shared/data files


def test_code_benchmark_end_to_end(tmp_path: Path) -> None:
    """HumanEval through `pacore eval`: a model that writes the canonical solution scores 1,
    and the grader is chosen from the data (records with tests mean code)."""
    records = [json.loads(x) for x in (DATA / "humaneval.jsonl").read_text().splitlines()[:3]]
    data = tmp_path / "he.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))

    def coder(messages: list[dict[str, object]], index: int, body: dict[str, object]) -> str:
        prompt = str(messages[-1]["content"])
        for r in records:
            if r["prompt"] in prompt:
                # Every other round-1 sample is broken; the synthesis writes the right one.
                if "Reference Responses:" not in prompt and index % 2:
                    return "```python\ndef nothing():\n    return None\n```"
                return f"```python\n{r['prompt']}{r['canonical_solution']}```"
        return "no idea"

    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=coder, record_bodies=False)) as srv:
        argv = ["eval", "--dataset", str(data), "--out", str(out), "--backend", srv.url]
        argv += ["--method", "pacore:low", "--method", "single", "--runs", "2", "--pool", "4"]
        assert main([*argv, "--quiet", "--no-plots"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grader"] == "code"
    assert summary["methods"]["pacore:low"]["accuracy"] == 1.0
    records_out = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    singles = [r for r in records_out if r["method"] == "single"]
    assert len(singles) == 6
    for r in singles:
        broken = "def nothing" in r["answer"]
        assert r["correct"] is (not broken)
        assert r["score"] == (0.0 if broken else 1.0)
    expected = sum("def nothing" not in r["answer"] for r in singles) / 6
    assert summary["methods"]["single"]["accuracy"] == pytest.approx(expected)


def test_report_only_rewrites_the_report_without_a_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = dataset(tmp_path / "d.jsonl", 4)
    out = tmp_path / "out"
    base = ["eval", "--dataset", str(data), "--out", str(out), "--method", "pacore:low"]
    base += ["--runs", "2", "--pool", "4", "--quiet", "--no-plots"]
    assert main([*base, "--report-only"]) == 2
    assert "no results to report on" in capsys.readouterr().err
    with run_in_thread(FakeConfig(responder=SimulatedModel(), record_bodies=False)) as srv:
        assert main([*base, "--backend", srv.url]) == 0
    before = json.loads((out / "summary.json").read_text())
    (out / "report.md").unlink()
    (out / "summary.json").unlink()
    # The server is gone: the report comes from results.jsonl alone.
    capsys.readouterr()
    assert main([*base, "--backend", srv.url, "--report-only"]) == 0
    after = json.loads((out / "summary.json").read_text())
    assert after["methods"] == before["methods"]
    assert (out / "report.md").exists()
    assert "not used" not in capsys.readouterr().err
    # Options that would have changed the results are said to be unused, not applied.
    assert main([*base, "--report-only", "--temperature", "0.3"]) == 0
    assert json.loads((out / "summary.json").read_text())["methods"] == before["methods"]
    err = capsys.readouterr().err
    assert "computed with temperature 1.0 (now 0.3)" in err
    assert "the options given now are not used" in err


def test_self_consistency_is_refused_for_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "code.jsonl"
    record = {"id": "c", "prompt": "def f():\n", "tests": [{"input": "", "output": "1"}]}
    data.write_text(json.dumps(record) + "\n")
    argv = ["eval", "--dataset", str(data), "--out", str(tmp_path / "o"), "--method", "sc:4"]
    assert main(argv) == 2
    assert "sc:4 votes over answers, and programs have none" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
