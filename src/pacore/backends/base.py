"""The one protocol every model backend implements.

A backend samples `n` trajectories from one chat prompt. It owns connections,
concurrency limits and retries; the engine owns everything PaCoRe-specific.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pacore.types import Completion, Message, SamplingParams

ProgressCallback = Callable[[int], None]
"""Called with the number of newly generated tokens as they stream in (best effort)."""


@dataclass
class RequestCounter:
    """Counts the requests one caller made (attempts, retries included)."""

    requests: int = 0


@runtime_checkable
class Backend(Protocol):
    """Samples completions from a chat model."""

    async def complete(
        self,
        messages: Sequence[Message],
        n: int,
        params: SamplingParams,
        *,
        affinity: str | None = None,
        on_tokens: ProgressCallback | None = None,
        counter: RequestCounter | None = None,
    ) -> list[Completion]:
        """Return `n` independent completions of `messages`.

        `affinity` names a group of requests (one problem's round) that should
        go to the same server so its prefix cache is shared. Every request
        sent, retries included, is added to `counter`.

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
