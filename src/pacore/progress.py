"""Live progress on stderr: per round in single mode, per problem in batch mode."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from pacore.engine import Progress
from pacore.types import Result, Trajectory


class TerminalProgress(Progress):
    """Redraws one status line on a terminal; prints plain lines otherwise."""

    def __init__(
        self,
        *,
        total_problems: int | None = None,
        stream: TextIO | None = None,
        interval: float = 0.1,
    ) -> None:
        self.out = stream or sys.stderr
        self.tty = self.out.isatty()
        self.total_problems = total_problems
        self.interval = interval
        self.started = time.monotonic()
        self.generated = 0
        self.problems_done = 0
        self.resumed = 0
        """Problems already done before this process started (a resumed batch)."""
        self.failed = 0
        self.rounds: dict[tuple[str, int], list[int]] = {}
        self._last_draw = 0.0
        self._current = ""

    # -- engine hooks ---------------------------------------------------------

    def round_started(self, problem_id: str, round_index: int, width: int) -> None:
        self.rounds[(problem_id, round_index)] = [0, width]
        self._redraw()

    def trajectories_done(
        self, problem_id: str, round_index: int, trajectories: Sequence[Trajectory]
    ) -> None:
        entry = self.rounds.get((problem_id, round_index))
        if entry is not None:
            entry[0] = min(entry[1], entry[0] + sum(1 for t in trajectories if t.attempt == 0))
        if self.total_problems is None and not self.tty and entry and entry[0] >= entry[1]:
            self._line(self._round_text(problem_id, round_index))
        self._redraw()

    def tokens(self, count: int) -> None:
        self.generated += count
        self._redraw()

    def problem_done(self, result: Result) -> None:
        self.problems_done += 1
        if result.status == "failed":
            self.failed += 1
        for key in [k for k in self.rounds if k[0] == result.id]:
            del self.rounds[key]
        if self.total_problems is not None and not self.tty:
            step = max(1, (self.total_problems or 1) // 20)
            if self.problems_done % step == 0 or self.problems_done == self.total_problems:
                self._line(self._batch_text())
        self._redraw(force=True)

    # -- drawing ----------------------------------------------------------------

    def _round_text(self, problem_id: str, round_index: int) -> str:
        done, width = self.rounds.get((problem_id, round_index), [0, 0])
        return (
            f"round {round_index}: {done}/{width} trajectories, "
            f"{self.generated:,} tokens, {self._rate()}"
        )

    def _batch_text(self) -> str:
        total = f"/{self.total_problems}" if self.total_problems is not None else ""
        active = sum(1 for d, w in self.rounds.values() if d < w)
        failed = f", {self.failed} failed" if self.failed else ""
        eta = ""
        new = self.problems_done - self.resumed
        if self.total_problems is not None and new > 0:
            left = self.total_problems - self.problems_done
            eta = f", ETA {left * (time.monotonic() - self.started) / new:,.0f}s"
        return (
            f"problems {self.problems_done}{total} done{failed}{eta}, {active} rounds running, "
            f"{self.generated:,} tokens, {self._rate()}"
        )

    def _rate(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return f"{self.generated / elapsed:,.0f} tok/s, {elapsed:.1f}s"

    def _redraw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        if self.total_problems is None and self.rounds:
            key = max(self.rounds, key=lambda k: k[1])
            text = self._round_text(*key)
        else:
            text = self._batch_text()
        self.out.write("\r\x1b[2K" + text)
        self.out.flush()
        self._current = text

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty and self._current:
            self.out.write("\r\x1b[2K")
            self.out.flush()


class EvalBar:
    """A progress bar for `pacore eval`: jobs done, ETA, live tokens/s, accuracy so far."""

    def __init__(self, *, stream: TextIO | None = None, interval: float = 0.2) -> None:
        self.out = stream or sys.stderr
        self.tty = self.out.isatty()
        self.interval = interval
        self.total = 0
        self.done = 0
        self.skipped = 0
        self.correct = 0
        self.graded = 0
        self.failed = 0
        self.generated = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def start(self, total: int, already_done: int) -> None:
        self.total, self.skipped, self.done = total, already_done, already_done
        self.started = time.monotonic()
        if already_done:
            self._line(f"resuming: {already_done} of {total} runs already done")
        self._draw(force=True)

    def tokens(self, count: int) -> None:
        self.generated += count
        self._draw()

    def job_done(self, record: dict[str, Any]) -> None:
        self.done += 1
        if record.get("status") == "failed":
            self.failed += 1
        elif record.get("correct") is not None:
            self.graded += 1
            self.correct += record.get("correct") is True
        self._draw(force=not self.tty and self._milestone())

    def close(self) -> None:
        if self.tty and self._drawn:
            self.out.write("\r\x1b[2K" + self._text() + "\n")
            self.out.flush()

    def _milestone(self) -> bool:
        step = max(1, (self.total - self.skipped) // 20)
        return (self.done - self.skipped) % step == 0 or self.done == self.total

    def _text(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        new = self.done - self.skipped
        remaining = self.total - self.done
        eta = f"{remaining * elapsed / new:,.0f}s" if new else "?"
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        acc = f", acc {self.correct / self.graded:.1%}" if self.graded else ""
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"[{bar}] {self.done}/{self.total} runs, ETA {eta}, "
            f"{self.generated / elapsed:,.0f} tok/s{acc}{failed}"
        )

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.tty:
            if force:
                self._line(self._text())
            return
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self._drawn = True
        self.out.write("\r\x1b[2K" + self._text())
        self.out.flush()

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
