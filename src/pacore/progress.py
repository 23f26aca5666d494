"""Live progress on stderr: per round in single mode, per problem in batch mode."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

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
        return (
            f"problems {self.problems_done}{total} done{failed}, {active} rounds running, "
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
