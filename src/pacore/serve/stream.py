"""Server-sent events: the frames, progress as reasoning, and a response that notices
a client leaving.

While the parallel rounds run, `StreamProgress` turns the engine's hooks into
`reasoning_content` lines (a round starting, each trajectory finishing with its
conclusion shortened); during the final round it takes the upstream's text as it
arrives, `ThinkSplitter` sending a leading `<think>...</think>` as reasoning and the
rest as `content`. Everything goes through one queue to the response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from pacore.backends.base import TextCallback, TextKind
from pacore.engine import Progress
from pacore.errors import one_line
from pacore.types import Trajectory

THINK, END_THINK = "<think>", "</think>"
KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
SHOWN_CHARS = 160
"""How much of a trajectory's conclusion a progress line shows."""


def frame(payload: dict[str, Any]) -> bytes:
    """One SSE event carrying `payload` as JSON."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class ThinkSplitter:
    """Splits streamed text into the reasoning of a leading `<think>` block and content.

    Fed the pieces as they arrive, it holds back only what may be the start of a
    tag, so the rest goes out at once.
    """

    def __init__(self) -> None:
        self._mode: TextKind | None = None  # None: not yet known whether it thinks
        self._pending = ""

    def feed(self, text: str) -> list[tuple[TextKind, str]]:
        """The (kind, text) pieces `text` completes."""
        buf, self._pending = self._pending + text, ""
        out: list[tuple[TextKind, str]] = []
        if self._mode is None:
            head = buf.lstrip()
            if len(head) < len(THINK) and THINK.startswith(head):
                self._pending = buf
                return out
            if head.startswith(THINK):
                self._mode, buf = "reasoning", head[len(THINK) :]
            else:
                self._mode = "content"
        if self._mode == "reasoning":
            end = buf.find(END_THINK)
            if end < 0:
                keep = _partial_tag(buf, END_THINK)
                buf, self._pending = buf[: len(buf) - keep], buf[len(buf) - keep :]
                return [("reasoning", buf)] if buf else out
            if end:
                out.append(("reasoning", buf[:end]))
            self._mode, buf = "content", buf[end + len(END_THINK) :]
        if buf:
            out.append(("content", buf))
        return out

    def flush(self) -> list[tuple[TextKind, str]]:
        """What was held back, at the end of the text."""
        pending, self._pending = self._pending, ""
        if not pending:
            return []
        return [("content" if self._mode is None else self._mode, pending)]


def _partial_tag(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag`."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


class StreamProgress(Progress):
    """One choice's engine hooks, as chunks (`reasoning_content`, `content`) on `emit`."""

    def __init__(
        self,
        index: int,
        rounds: int,
        emit: Callable[[int, TextKind, str], None],
        tally: Progress | None = None,
    ) -> None:
        """Emit choice `index`'s chunks of a `rounds`-round run; `tally` is told of every
        finished trajectory too (what the request spent)."""
        self.index = index
        self._tally = tally
        self._emit = emit
        self._widths: dict[int, int] = {}
        self._last = rounds
        self._splitter = ThinkSplitter()

    def round_started(self, problem_id: str, round_index: int, width: int) -> None:
        """A line saying what the round does."""
        self._widths[round_index] = width
        if round_index == self._last:
            self._emit(self.index, "reasoning", f"Round {round_index}: the final synthesis.\n\n")
        else:
            self._emit(
                self.index, "reasoning", f"Round {round_index}: {width} parallel trajectories.\n"
            )

    def trajectories_done(
        self, problem_id: str, round_index: int, trajectories: Sequence[Trajectory]
    ) -> None:
        """A line per finished trajectory of a parallel round, its conclusion shortened."""
        if self._tally is not None:
            self._tally.trajectories_done(problem_id, round_index, trajectories)
        width = self._widths.get(round_index, len(trajectories))
        if round_index == self._last:
            for t in trajectories:
                if t.status == "error":
                    self._emit(self.index, "reasoning", f"\n(the synthesis failed: {t.error})\n")
            return
        for t in trajectories:
            shown = one_line(t.message, SHOWN_CHARS) if t.status == "ok" else (t.error or "")
            self._emit(
                self.index,
                "reasoning",
                f"- round {round_index}, trajectory {t.index + 1}/{width} ({t.status}): {shown}\n",
            )

    def final_text(self, problem_id: str) -> TextCallback | None:
        """The final round's text, split into reasoning and content as it streams."""
        return self._final

    def _final(self, index: int, kind: TextKind, text: str) -> None:
        if kind == "reasoning":
            self._emit(self.index, "reasoning", text)
            return
        for piece_kind, piece in self._splitter.feed(text):
            self._emit(self.index, piece_kind, piece)

    def flush(self) -> None:
        """Send what the splitter held back."""
        for kind, piece in self._splitter.flush():
            self._emit(self.index, kind, piece)


class EventStream(StreamingResponse):
    """A streamed response that stops its body, whatever the ASGI version, as soon as
    the client disconnects: the body's generator is cancelled and cleans up."""

    def __init__(self, content: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the body while listening for the client going away."""
        async with anyio.create_task_group() as group:

            async def body() -> None:
                await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(body)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()


async def next_items(queue: asyncio.Queue[Any], keepalive: float) -> list[Any] | None:
    """Everything waiting in `queue` (at least one item), or None after `keepalive`
    seconds of silence."""
    try:
        async with asyncio.timeout(keepalive):
            first = await queue.get()
    except TimeoutError:
        return None
    items = [first]
    while not queue.empty():
        items.append(queue.get_nowait())
    return items
