"""Progress lines on a non-terminal stream (what CI logs and pipes see)."""

from __future__ import annotations

import io

from pacore.progress import EvalBar, TerminalProgress
from pacore.types import Result, Trajectory, Usage


def result(rid: str, status: str = "ok") -> Result:
    return Result(rid, status, "a", "a", (), (4, 1), 10, 5, 9, 2, 0.1)  # type: ignore[arg-type]


def test_single_problem_prints_a_line_per_finished_round() -> None:
    out = io.StringIO()
    progress = TerminalProgress(stream=out)
    progress.round_started("p", 1, 2)
    traj = Trajectory(0, "t", "m", "ok", "stop", Usage(1, 3), 0.1)
    progress.tokens(6)
    progress.trajectories_done("p", 1, [traj, traj])
    assert out.getvalue().startswith("round 1: 2/2 trajectories, 6 tokens")


def test_batch_lines_count_problems_with_eta_and_failures() -> None:
    out = io.StringIO()
    progress = TerminalProgress(total_problems=4, stream=out)
    progress.problems_done = progress.resumed = 1  # one was already in the output file
    progress.problem_done(result("a"))
    progress.problem_done(result("b", "failed"))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("problems 2/4 done, ETA")
    assert lines[1].startswith("problems 3/4 done, 1 failed, ETA")


def test_eval_bar_reports_runs_accuracy_and_failures() -> None:
    out = io.StringIO()
    bar = EvalBar(stream=out)
    bar.start(total=2, already_done=0)
    bar.tokens(100)
    bar.job_done({"status": "ok", "correct": True})
    bar.job_done({"status": "failed", "correct": None})
    bar.close()
    last = out.getvalue().splitlines()[-1]
    assert "2/2 runs" in last and "acc 100.0%" in last and "1 failed" in last
