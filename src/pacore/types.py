"""Plain values passed between the backends, the engine and the outside world.

Everything here is a frozen dataclass with a `to_dict` that yields JSON-ready data;
the batch output format and `--json` are exactly these dictionaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pacore.errors import BackendError, ContextLengthError, one_line

Message = dict[str, Any]
"""One chat message, as the OpenAI API spells it: {"role": ..., "content": ...}."""

Status = Literal["ok", "truncated", "error", "empty"]
Failure = Literal["infrastructure", "model", "input"]
"""Why a problem failed: requests that failed (a rerun may help), a model that left
nothing usable, or an input that can never fit the model's context window."""
CutBy = Literal["max_tokens", "context"]
"""What stopped a trajectory that ended by length: its token cap, or a full context window."""


@dataclass(frozen=True)
class Problem:
    """One problem: a conversation whose last user turn is the question."""

    id: str
    messages: tuple[Message, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    """Carried through to the result untouched (e.g. `ground_truth`)."""


@dataclass(frozen=True)
class Usage:
    """Token counts of one trajectory.

    `prompt_tokens` is the size of the input of the call that produced it.
    `completion_tokens` counts every generated token, reasoning included.
    `reasoning_tokens` is set only when the server reports it.
    `discarded_tokens` counts tokens the server generated for this sample in
    attempts that were then lost (a stream cut or timed out), counted from the
    stream as it arrived; they are part of the problem's TTC but of no text.
    `estimated` is true when a count is not the server's own count of this one
    sample: a whole request's usage split over its choices in proportion to their
    text (the request's total stays exact), text measured at ~4 characters a
    token (a server that reports no usage), or discarded tokens counted from a
    cut stream.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int | None = None
    estimated: bool = False
    discarded_tokens: int = 0

    @property
    def generated(self) -> int:
        """Every token generated for this sample: its text's and its lost attempts'."""
        return self.completion_tokens + self.discarded_tokens

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form, as batch output and `--json` write it."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "estimated": self.estimated,
            "discarded_tokens": self.discarded_tokens,
        }


@dataclass(frozen=True)
class Completion:
    """One sampled trajectory as a backend returns it, before compaction.

    `text` is what the server put in `content`; `reasoning` is its separate
    `reasoning_content` (or `reasoning`) field, when there is one.
    A sample that could not be produced has `error` set (a one-line reason),
    `error_type` (the name of the `pacore.errors` class, e.g. "ContextLengthError")
    and `retryable` (whether sampling it again could help).
    """

    text: str
    reasoning: str | None = None
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    endpoint: str | None = None
    error: str | None = None
    error_type: str | None = None
    retryable: bool = False
    """With `error`: whether sampling again could help (`BackendError.retryable`)."""
    input_too_long: bool = False
    """With `error`: the prompt can never fit the model's context window."""
    context_window: int | None = None
    """The context window of the model that produced it, when its server said."""

    @classmethod
    def failed(
        cls,
        exc: BaseException,
        *,
        latency_s: float = 0.0,
        endpoint: str | None = None,
        discarded_tokens: int = 0,
    ) -> Completion:
        """The completion of a sample that `exc` prevented.

        It is retryable when `exc` is (a `BackendError` says), or when `exc` is some
        other exception, which no backend has judged permanent. `discarded_tokens`
        are the tokens its failed attempts streamed before they were lost.
        """
        return cls(
            text="",
            usage=Usage(discarded_tokens=discarded_tokens, estimated=discarded_tokens > 0),
            error=one_line(exc.explain() if isinstance(exc, ContextLengthError) else str(exc))
            or type(exc).__name__,
            error_type=type(exc).__name__,
            latency_s=latency_s,
            endpoint=endpoint,
            retryable=exc.retryable if isinstance(exc, BackendError) else True,
            input_too_long=isinstance(exc, ContextLengthError),
        )


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings sent with every request (the published ones by default)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None
    seed: int | None = None
    stream: bool = False
    extra_body: dict[str, Any] = field(default_factory=dict)
    """Extra JSON fields merged into each request body (e.g. `top_k` for vLLM)."""


@dataclass(frozen=True)
class Trajectory:
    """One trajectory of one round, after compaction.

    `text` is the full generated text (reasoning included, joined as
    `<think>reasoning</think>content` when the server split them), `message`
    is what compaction kept for the next round, and `status` says whether it
    was passed on: only `ok` messages are (and `truncated` ones when the
    config keeps them).
    """

    index: int
    text: str
    message: str
    status: Status
    finish_reason: str | None
    usage: Usage
    latency_s: float
    error: str | None = None
    endpoint: str | None = None
    attempt: int = 0
    """0 for the first sample in this slot, k for its k-th re-sample."""
    retryable: bool = False
    """With status `error`: whether sampling this slot again could help (false for a
    refused request, e.g. a prompt too long for the context)."""
    input_too_long: bool = False
    """With status `error`: the prompt can never fit the model's context window."""
    cut_by: CutBy | None = None
    """With finish reason `length`: whether `max_tokens` or the context window stopped it."""
    error_type: str | None = None
    """With status `error`: the `pacore.errors` class that failed it (`RequestTimeout`)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form, as batch output and `--json` write it."""
        # Written out by hand: `asdict` deep-copies and is 30x slower on the batch path.
        return {
            "index": self.index,
            "text": self.text,
            "message": self.message,
            "status": self.status,
            "finish_reason": self.finish_reason,
            "usage": self.usage.to_dict(),
            "latency_s": self.latency_s,
            "error": self.error,
            "endpoint": self.endpoint,
            "attempt": self.attempt,
            "retryable": self.retryable,
            "input_too_long": self.input_too_long,
            "cut_by": self.cut_by,
            "error_type": self.error_type,
        }


@dataclass(frozen=True)
class RoundResult:
    """Every trajectory of one round, in sampling order."""

    round: int
    width: int
    trajectories: tuple[Trajectory, ...]
    references: int
    """How many messages of the previous round this round's prompt carried."""
    prompt_tokens: int
    prompt: tuple[Message, ...] = ()
    """The messages every call of this round was sent: the question for round 1, the
    synthesis prompt (the previous round's messages, in the order shown) after it."""

    @property
    def passed_on(self) -> int:
        """How many trajectories of this round were passed on to the next (status `ok`)."""
        return sum(1 for t in self.trajectories if t.status == "ok")


@dataclass(frozen=True)
class Result:
    """Everything about one problem solved with PaCoRe."""

    id: str
    status: Literal["ok", "truncated", "empty", "failed"]
    """`ok`; `truncated` or `empty` when the final trajectory was; `failed` with `error` set."""
    answer: str
    """The compacted message of the final round: the system's answer."""
    final_text: str
    """The full text of the final trajectory."""
    rounds: tuple[RoundResult, ...]
    widths: tuple[int, ...]
    """The widths actually run, final width-1 round included."""
    ttc_tokens: int
    """Effective test-time compute: completion tokens over every trajectory of every round."""
    max_prompt_tokens: int
    """The largest input of any single call."""
    max_context_tokens: int
    """The largest input plus output of any single trajectory: the context window needed."""
    requests: int
    """HTTP (or embedded) requests made, retries included."""
    latency_s: float
    error: str | None = None
    failure: Failure | None = None
    """With `status="failed"`: `infrastructure` (requests failed: rerunning may help) or
    `model` (every trajectory of a round truncated or empty: a wrong answer, in effect)."""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, *, include_text: bool = True) -> dict[str, Any]:
        """The JSON-ready form (one batch output line); `include_text=False` leaves out
        each trajectory's full text, the bulk of it, and the prompt of each round."""
        rounds = []
        for rnd in self.rounds:
            trajs = []
            for t in rnd.trajectories:
                d = t.to_dict()
                if not include_text:
                    d.pop("text")
                trajs.append(d)
            rounds.append(trajs)
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "error": self.error,
            "failure": self.failure,
            "answer": self.answer,
            "final_text": self.final_text,
            "widths": list(self.widths),
            "ttc_tokens": self.ttc_tokens,
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_context_tokens": self.max_context_tokens,
            "requests": self.requests,
            "latency_s": round(self.latency_s, 4),
            "rounds": rounds,
        }
        if include_text:
            out["prompts"] = [list(rnd.prompt) for rnd in self.rounds]
        if self.metadata:
            out["metadata"] = self.metadata
        return out
