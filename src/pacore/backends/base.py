"""The one protocol every model backend implements.

A backend samples `n` trajectories from one chat prompt. It owns connections,
concurrency limits and retries; the engine owns everything PaCoRe-specific.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from pacore.types import Completion, Message, SamplingParams

ProgressCallback = Callable[[int], None]
"""Called with the number of newly generated tokens as they stream in (best effort)."""

TextKind = Literal["content", "reasoning"]
TextCallback = Callable[[int, TextKind, str], None]
"""Called with `(choice index, kind, text)` for each piece of generated text as it
streams in: `content`, or the `reasoning` a server splits out. Asking for it makes the
request stream; pieces of an attempt that then fails are not taken back."""


@dataclass
class RequestCounter:
    """Counts the requests one caller made (attempts, retries included)."""

    requests: int = 0


@runtime_checkable
class Backend(Protocol):
    """Samples completions from a chat model.

    Open one, `await start()` it, call `complete()` as often as needed (concurrently
    too), then `await aclose()` it.
    """

    @property
    def name(self) -> str:
        """The model the completions come from (for a server, the one it serves: known
        for sure only after `start()`)."""
        ...

    async def start(self) -> None:
        """Get ready now, so that a bad setup fails before any work starts.

        A server backend checks that its servers answer and learns the model name
        (`ConnectionFailed` when none answers); the embedded backend loads its model
        (`ConfigError` when it cannot). `complete()` works without it.
        """
        ...

    async def complete(
        self,
        messages: Sequence[Message],
        n: int,
        params: SamplingParams,
        *,
        affinity: str | None = None,
        on_tokens: ProgressCallback | None = None,
        counter: RequestCounter | None = None,
        on_text: TextCallback | None = None,
    ) -> list[Completion]:
        """Return `n` independent completions of `messages`.

        `affinity` names a group of requests (one problem's round) that should
        go to the same server so its prefix cache is shared. Every request
        sent, retries included, is added to `counter`. `on_text` gets the text
        as it is generated (the request is streamed); None, the default, costs
        nothing.

        Always returns exactly `n` completions. A sample that could not be
        produced after the backend's own retries comes back as a completion
        with `error` and `error_type` set (see `Completion.failed`); request
        failures are never raised, so the successes of a partly failed group
        are not lost.
        """
        ...

    async def aclose(self) -> None:
        """Release connections, threads and models."""
        ...
