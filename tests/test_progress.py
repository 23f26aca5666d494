"""Progress output: plain lines on a pipe (CI logs), a live line on a terminal."""

from __future__ import annotations

import io
from dataclasses import dataclass

from pacore.progress import EvalDisplay, RunDisplay, StatusLine
from pacore.types import Result, Trajectory, Usage


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Record:
    """The two fields of a run record the display reads."""

    status: str
    correct: bool | None


def result(rid: str, status: str = "ok") -> Result:
    return Result(rid, status, "a", "a", (), (4, 1), 10, 5, 9, 2, 0.1)  # type: ignore[arg-type]


def traj(attempt: int = 0) -> Trajectory:
    return Trajectory(0, "t", "m", "ok", "stop", Usage(1, 3), 0.1, attempt=attempt)


def test_single_problem_prints_a_line_per_finished_round() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = RunDisplay(stream=out, clock=clock)
    progress.round_started("p", 1, 2)
    progress.tokens(6)
    clock.now += 2
    progress.trajectories_done("p", 1, [traj()])
    assert out.getvalue() == ""  # the round is not finished yet
    progress.trajectories_done("p", 1, [traj(), traj(attempt=1)])  # a resample is not counted
    assert out.getvalue() == "round 1: 2/2 trajectories, 6 tokens, 3 tok/s, 2.0s\n"
    progress.close()
    assert "\x1b" not in out.getvalue()


def test_batch_lines_count_problems_with_eta_and_failures() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = RunDisplay(total_problems=4, stream=out, clock=clock)
    progress.resume(1)  # one was already in the output file
    clock.now += 10
    progress.problem_done(result("a"))
    progress.problem_done(result("b", "failed"))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("problems 2/4 done, ETA 20s, 0 rounds running")
    assert lines[1].startswith("problems 3/4 done, 1 failed, ETA 5s")


def test_long_lines_are_never_wrapped_on_a_pipe() -> None:
    out = io.StringIO()
    StatusLine(out).line("x" * 500)
    assert out.getvalue() == "x" * 500 + "\n"


def test_terminal_redraws_one_line_in_place_and_clears_it() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = RunDisplay(stream=out, terminal=True, clock=clock)
    progress.round_started("p", 1, 4)
    clock.now += 1
    progress.tokens(50)
    drawn = out.getvalue()
    assert "round 1: 0/4 trajectories, 50 tokens" in drawn
    assert "\x1b[" in drawn
    assert "\n" not in drawn.rstrip("\n")
    clock.now += 1
    progress.trajectories_done("p", 1, [traj()] * 4)
    progress.close()
    text = out.getvalue()
    assert "4/4 trajectories" in text  # the finished round was drawn, not printed as a line
    assert text.endswith("\x1b[2K")  # and the live line is erased at the end


def test_terminal_redraws_are_throttled() -> None:
    out, clock = io.StringIO(), FakeClock()
    line = StatusLine(out, terminal=True, interval=0.5, clock=clock)
    line.show("first")
    line.show("second")  # too soon: skipped
    clock.now += 1
    line.show("third")
    line.close()
    text = out.getvalue()
    assert "first" in text
    assert "second" not in text
    assert "third" in text


def test_terminal_fits_the_line_to_its_width() -> None:
    out = io.StringIO()
    line = StatusLine(out, terminal=True)
    line.console.width = 30
    line.show("y" * 100, force=True)
    line.close()
    assert "y" * 30 not in out.getvalue()
    assert "y" * 20 in out.getvalue()


def test_eval_display_reports_runs_accuracy_and_failures() -> None:
    out, clock = io.StringIO(), FakeClock()
    bar = EvalDisplay(stream=out, clock=clock)
    bar.start(total=2, already_done=0)
    clock.now += 1
    bar.tokens(100)
    bar.job_done(Record("ok", True))
    bar.job_done(Record("failed", None))
    bar.close()
    last = out.getvalue().splitlines()[-1]
    assert last == "2/2 runs (100%), ETA 0s, 100 tok/s, acc 100.0%, 1 failed"


def test_eval_display_on_a_terminal_ends_with_the_final_line() -> None:
    out, clock = io.StringIO(), FakeClock()
    bar = EvalDisplay(stream=out, terminal=True, clock=clock)
    bar.start(total=3, already_done=1)
    clock.now += 2
    bar.job_done(Record("ok", False))
    bar.job_done(Record("ok", True))
    bar.close()
    text = out.getvalue()
    assert text.startswith("resuming: 1 of 3 runs already done\n")
    assert text.endswith("3/3 runs (100%), ETA 0s, 0 tok/s, acc 50.0%\n")
