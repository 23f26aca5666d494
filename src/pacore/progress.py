"""Live progress on stderr for `pacore run` and `pacore eval`, drawn with rich.

`StatusLine` is the one renderer: on a terminal it redraws a single status line
in place (rich handles the terminal, its width and clearing the line); anywhere
else (a pipe, a CI log) it prints plain lines, one per finished round or one
per milestone, with no control codes. `RunDisplay` follows the engine's hooks,
`EvalDisplay` the evaluation runner's.

Progress is best effort: a stderr that cannot be written (closed, a full disk, a pipe
whose reader left) silences it, and never stops the work or loses a result.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from pacore.engine import Progress
from pacore.types import Result, Trajectory


class StatusLine:
    """A status line redrawn in place on a terminal; plain printed lines elsewhere."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        terminal: bool | None = None,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream or sys.stderr
        self.console: Any = None
        """rich's console; None when told it is no terminal (`--quiet`, or `terminal`
        False): plain lines need no rich, and a batch then starts without loading it."""
        if terminal is False:
            self.tty = False
        else:
            from rich.console import Console

            self.console = Console(
                file=self._stream,
                force_terminal=terminal,
                highlight=False,
                markup=False,
                emoji=False,
                soft_wrap=True,
            )
            self.tty = self.console.is_terminal
            # rich's own answer to a broken pipe is `SystemExit(1)`, with stdout pointed
            # at /dev/null: a batch would stop and the answer on stdout be lost.
            self.console.on_broken_pipe = self._silence
        self.interval = interval
        self.clock = clock
        self._live: Any = None
        self._last = float("-inf")
        self.silenced = False
        """Set once a write failed: progress is best effort, the work is not."""

    def show(self, text: str, *, force: bool = False) -> None:
        """Redraw the status line (terminals only), at most once per `interval`."""
        if not self.tty or self.silenced:
            return
        try:
            self._show(text, force=force)
        except (OSError, ValueError):  # ValueError: the stream was closed
            self._silence()

    def _show(self, text: str, *, force: bool) -> None:
        now = self.clock()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        from rich.live import Live
        from rich.text import Text

        line = Text(text, no_wrap=True, overflow="ellipsis")
        live = self._live  # a write that fails drops `self._live` (`_silence`)
        if live is None:
            live = self._live = Live(
                line,
                console=self.console,
                auto_refresh=False,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            live.start()
        if not self.silenced:
            live.update(line, refresh=True)

    def line(self, text: str) -> None:
        """Print a line that stays (above the status line on a terminal)."""
        if self.silenced:
            return
        try:
            if self.console is None:
                self._stream.write(text + "\n")
                self._stream.flush()
            else:
                self.console.print(text, overflow="ignore", crop=False)
        except (OSError, ValueError):
            self._silence()

    def close(self, final: str | None = None) -> None:
        """Clear the status line; print `final` as a line that stays."""
        if self._live is not None:
            live, self._live = self._live, None
            try:
                live.stop()
            except (OSError, ValueError):
                self._silence()
        if final is not None and self.tty:
            self.line(final)

    def _silence(self) -> None:
        """Stop drawing: the stream cannot be written (the work goes on)."""
        self.silenced = True
        self._live = None
        if self.console is not None:
            self.console.quiet = True  # rich drops what it would write from now on


def _rate(tokens: int, elapsed: float) -> str:
    return f"{tokens / max(elapsed, 1e-6):,.0f} tok/s, {elapsed:.1f}s"


class RunDisplay(Progress):
    """`pacore run`: one line per round for one problem; problems and ETA for a batch."""

    def __init__(
        self,
        *,
        total_problems: int | None = None,
        stream: TextIO | None = None,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.status = StatusLine(stream, terminal=terminal, clock=clock)
        self.clock = clock
        self.total_problems = total_problems
        self.started = clock()
        self.generated = 0
        self.problems_done = 0
        self.resumed = 0
        """Problems already done before this process started (a resumed batch)."""
        self.failed = 0
        self.rounds: dict[tuple[str, int], list[int]] = {}

    def resume(self, already_done: int) -> None:
        """Count `already_done` problems finished by an earlier process."""
        self.problems_done = self.resumed = already_done

    # -- engine hooks ---------------------------------------------------------

    def round_started(self, problem_id: str, round_index: int, width: int) -> None:
        """A round of `width` trajectories was sent."""
        self.rounds[(problem_id, round_index)] = [0, width]
        self._redraw()

    def trajectories_done(
        self, problem_id: str, round_index: int, trajectories: Sequence[Trajectory]
    ) -> None:
        """Count the finished first attempts; a round's line when it completes (no tty)."""
        entry = self.rounds.get((problem_id, round_index))
        if entry is not None:
            entry[0] = min(entry[1], entry[0] + sum(1 for t in trajectories if t.attempt == 0))
            if self.total_problems is None and not self.status.tty and entry[0] >= entry[1]:
                self.status.line(self._round_text(problem_id, round_index))
        self._redraw()

    def tokens(self, count: int) -> None:
        """Add newly generated tokens."""
        self.generated += count
        self._redraw()

    def problem_done(self, result: Result) -> None:
        """Count a finished problem; a milestone line every 5% in a batch (no tty)."""
        self.problems_done += 1
        self.failed += result.status == "failed"
        for key in [k for k in self.rounds if k[0] == result.id]:
            del self.rounds[key]
        if self.total_problems is not None and not self.status.tty:
            step = max(1, self.total_problems // 20)
            if self.problems_done % step == 0 or self.problems_done == self.total_problems:
                self.status.line(self._batch_text())
        self._redraw(force=True)

    def close(self) -> None:
        """Clear the live line."""
        self.status.close()

    # -- text -------------------------------------------------------------------

    def _round_text(self, problem_id: str, round_index: int) -> str:
        done, width = self.rounds.get((problem_id, round_index), [0, 0])
        elapsed = self.clock() - self.started
        return (
            f"round {round_index}: {done}/{width} trajectories, "
            f"{self.generated:,} tokens, {_rate(self.generated, elapsed)}"
        )

    def _batch_text(self) -> str:
        total = f"/{self.total_problems}" if self.total_problems is not None else ""
        active = sum(1 for d, w in self.rounds.values() if d < w)
        failed = f", {self.failed} failed" if self.failed else ""
        elapsed = self.clock() - self.started
        eta = ""
        new = self.problems_done - self.resumed
        if self.total_problems is not None and new > 0:
            eta = f", ETA {(self.total_problems - self.problems_done) * elapsed / new:,.0f}s"
        return (
            f"problems {self.problems_done}{total} done{failed}{eta}, {active} rounds running, "
            f"{self.generated:,} tokens, {_rate(self.generated, elapsed)}"
        )

    def _redraw(self, force: bool = False) -> None:
        if not self.status.tty:
            return
        if self.total_problems is None and self.rounds:
            text = self._round_text(*max(self.rounds, key=lambda k: k[1]))
        else:
            text = self._batch_text()
        self.status.show(text, force=force)


class EvalDisplay:
    """`pacore eval`: runs done of the total, ETA, tokens/s and the accuracy so far."""

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.status = StatusLine(stream, terminal=terminal, interval=0.2, clock=clock)
        self.clock = clock
        self.total = 0
        self.done = 0
        self.skipped = 0
        self.correct = 0
        self.graded = 0
        self.failed = 0
        self.generated = 0
        self.started = clock()

    def start(self, total: int, already_done: int) -> None:
        """The evaluation has `total` runs, `already_done` of them from an earlier process."""
        self.total, self.skipped, self.done = total, already_done, already_done
        self.started = self.clock()
        if already_done:
            self.status.line(f"resuming: {already_done} of {total} runs already done")
        self.status.show(self._text(), force=True)

    def tokens(self, count: int) -> None:
        """Add newly generated tokens."""
        self.generated += count
        self.status.show(self._text())

    def job_done(self, record: Any) -> None:
        """Count one finished run (a `RunRecord`: its `status` and `correct`)."""
        self.done += 1
        if record.status == "failed":
            self.failed += 1
        elif record.correct is not None:
            self.graded += 1
            self.correct += record.correct is True
        if self.status.tty:
            self.status.show(self._text(), force=self.done == self.total)
        elif self._milestone():
            self.status.line(self._text())

    def close(self) -> None:
        """Replace the live line with the final one (terminals)."""
        self.status.close(final=self._text() if self.total else None)

    def _milestone(self) -> bool:
        step = max(1, (self.total - self.skipped) // 20)
        return (self.done - self.skipped) % step == 0 or self.done == self.total

    def _text(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-6)
        new = self.done - self.skipped
        eta = f"{(self.total - self.done) * elapsed / new:,.0f}s" if new else "?"
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        acc = f", acc {self.correct / self.graded:.1%}" if self.graded else ""
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"{self.done}/{self.total} runs{share}, ETA {eta}, "
            f"{self.generated / elapsed:,.0f} tok/s{acc}{failed}"
        )
