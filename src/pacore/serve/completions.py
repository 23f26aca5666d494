"""A PaCoRe chat completion: `n` independent engine runs, answered whole or streamed.

`usage` is counted exactly as the engine counts it: `completion_tokens` is the sum of
every choice's effective TTC (`Result.ttc_tokens`, discarded tokens included) and
`prompt_tokens` the sum of the prompt of every trajectory of every round.

What a request spent upstream is tallied as the engine finishes each trajectory
(`Spend`), so the log line and `/metrics` count it however the request ends: answered,
failed (a choice that fails cancels its siblings), or left by its client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pacore.backends.base import Backend, TextKind
from pacore.config import PacoreConfig
from pacore.core.compaction import THINK_END
from pacore.engine import Engine, Progress, make_problem
from pacore.serve.errors import ApiError
from pacore.serve.stream import (
    DONE,
    KEEPALIVE,
    THINK,
    StreamProgress,
    frame,
    next_items,
)
from pacore.types import Message, Problem, Result, Trajectory


@dataclass(frozen=True)
class Job:
    """One checked PaCoRe request: what to solve, how, and how to answer."""

    id: str
    model: str
    """The model as the client named it, echoed in the answer."""
    messages: tuple[Message, ...]
    n: int
    config: PacoreConfig
    include_usage: bool = False
    created: int = 0

    def problems(self) -> list[Problem]:
        """One problem per choice; each has its own id, so its own seeds."""
        first = make_problem(self.messages)
        return [first] + [
            make_problem(first, problem_id=f"{first.id}:{i}") for i in range(1, self.n)
        ]


Finish = Callable[[int, str | None], None]
"""Told once, when a request ends: its status (499: the client left) and the message of
the error event it ended with (None when it did not)."""


class Spend(Progress):
    """Every trajectory the engine finished for one request, all its choices and
    attempts: what the request spent upstream, known as it goes (a request cancelled
    part way still spent what its finished trajectories did)."""

    def __init__(self) -> None:
        """Nothing spent yet."""
        self.trajectories: list[Trajectory] = []

    def trajectories_done(
        self, problem_id: str, round_index: int, trajectories: Sequence[Trajectory]
    ) -> None:
        """Tally finished trajectories, failed ones included."""
        self.trajectories.extend(trajectories)

    def usage(self) -> dict[str, int]:
        """OpenAI's usage object over what was spent."""
        return _usage_of(self.trajectories)


async def solve(backend: Backend, job: Job, spend: Spend | None = None) -> list[Result]:
    """Every choice's result (`check` each before answering); `spend` tallies what the
    engine spent as it goes."""
    engine = Engine(backend, job.config, progress=spend)
    return list(await asyncio.gather(*(engine.solve(p) for p in job.problems())))


def check(result: Result) -> None:
    """`ApiError` for a problem that failed: its input (400), the upstream's refusals of
    every request (400 `upstream_refused`: its 4xx, such as an unknown model), a model
    that left nothing usable (422: not retried by clients, since the same request fails
    the same way), a timeout (504), or else 502."""
    if result.status != "failed":
        return
    error = result.error or "no answer"
    if result.failure == "input":
        raise ApiError(400, error, param="messages", code="context_length_exceeded")
    if timed_out(result):
        raise ApiError(504, f"the upstream did not answer in time: {error}")
    if refused(result):  # its 4xx: the same request fails the same way, so no 502
        raise ApiError(400, f"the upstream refused the request: {error}", code="upstream_refused")
    if result.failure == "model":
        raise ApiError(422, f"the model left nothing to synthesise: {error}", code="no_answer")
    raise ApiError(502, f"the upstream failed: {error}")


def refused(result: Result) -> bool:
    """Whether the round that failed `result` failed only for the upstream's refusals
    (its 4xx answers, as `RequestRejected`: an unknown model, a bad parameter), which a
    retry cannot change."""
    return _failed_alike(result, "RequestRejected")


def timed_out(result: Result) -> bool:
    """Whether the round that failed `result` failed for timeouts alone (by the errors'
    types, never their text: a server's message may say anything)."""
    return _failed_alike(result, "RequestTimeout")


def _failed_alike(result: Result, error_type: str) -> bool:
    """Whether every failed final slot of the last round failed with `error_type` (the
    errors' class names, never their text: a server's message may say anything)."""
    if not result.rounds:
        return False
    last = result.rounds[-1]
    failed = [t for t in last.trajectories[: last.width] if t.status == "error"]
    return bool(failed) and all(t.error_type == error_type for t in failed)


def answer_parts(result: Result) -> tuple[str, str | None, str]:
    """The final trajectory's conclusion (`content`), its reasoning and finish reason.

    As a stream splits it (`stream.ThinkSplitter`), where a stream can know: a text
    that opens `<think>` and never closes it (cut by `max_tokens`) is all reasoning and
    no content. A whole answer also splits a text that only closes it (a template
    that opened `<think>` in the prompt) at its last `</think>`, which a stream, sent
    as it comes, cannot: there such a text is all content."""
    final = result.rounds[-1].trajectories[0]
    head, sep, content = final.text.rpartition(THINK_END)
    if not sep:
        opened = final.text.lstrip()
        if opened.startswith(THINK):  # cut inside its reasoning: nothing concluded yet
            return "", opened[len(THINK) :], _finish(final.finish_reason)
        return final.text, None, _finish(final.finish_reason)
    reasoning = head.lstrip()
    reasoning = reasoning[len(THINK) :] if reasoning.startswith(THINK) else reasoning
    return content, reasoning, _finish(final.finish_reason)


def _finish(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def usage(results: list[Result]) -> dict[str, int]:
    """OpenAI's usage object over every trajectory of every round of every choice."""
    return _usage_of([t for r in results for rnd in r.rounds for t in rnd.trajectories])


def _usage_of(trajectories: Sequence[Trajectory]) -> dict[str, int]:
    """OpenAI's usage object over some trajectories (each generated what `usage.generated`
    says: a result's `ttc_tokens` is the same sum)."""
    prompt = sum(t.usage.prompt_tokens for t in trajectories)
    completion = sum(t.usage.generated for t in trajectories)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def breakdown(job: Job, results: list[Result]) -> dict[str, Any]:
    """The `pacore` field: widths, and per choice each round's references, tokens, failures."""
    return {
        "widths": list(job.config.all_widths),
        "choices": [
            {
                "index": i,
                "status": r.status,
                "ttc_tokens": r.ttc_tokens,
                "requests": r.requests,
                "latency_s": round(r.latency_s, 4),
                "rounds": [
                    {
                        "round": rnd.round,
                        "width": rnd.width,
                        "references": rnd.references,
                        "passed_on": rnd.passed_on,
                        "prompt_tokens": sum(t.usage.prompt_tokens for t in rnd.trajectories),
                        "completion_tokens": sum(t.usage.generated for t in rnd.trajectories),
                        "failures": sum(1 for t in rnd.trajectories if t.status == "error"),
                        "truncated": sum(1 for t in rnd.trajectories if t.status == "truncated"),
                    }
                    for rnd in r.rounds
                ],
            }
            for i, r in enumerate(results)
        ],
    }


def whole_body(job: Job, results: list[Result]) -> dict[str, Any]:
    """The `chat.completion` object of finished results."""
    choices = []
    for i, result in enumerate(results):
        content, reasoning, finish = answer_parts(result)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reasoning is not None:
            message["reasoning_content"] = reasoning
        choices.append({"index": i, "message": message, "finish_reason": finish})
    return {
        "id": job.id,
        "object": "chat.completion",
        "created": job.created,
        "model": job.model,
        "choices": choices,
        "usage": usage(results),
        "pacore": breakdown(job, results),
    }


@dataclass(frozen=True)
class _Done:
    index: int
    result: Result | None
    error: BaseException | None = None


async def stream_body(
    backend: Backend, job: Job, keepalive: float, finish: Finish, spend: Spend | None = None
) -> AsyncIterator[bytes]:
    """The SSE body of a streamed PaCoRe completion. Its choices run as tasks; when the
    body stops early (the client left) they are cancelled, with their upstream requests.
    `spend` tallies what they spent as they go."""
    queue: asyncio.Queue[bytes | _Done] = asyncio.Queue()
    head = {"id": job.id, "object": "chat.completion.chunk", "created": job.created}
    head["model"] = job.model

    def emit(index: int, kind: TextKind, text: str) -> None:
        field = "content" if kind == "content" else "reasoning_content"
        choice = {"index": index, "delta": {field: text}, "finish_reason": None}
        queue.put_nowait(frame({**head, "choices": [choice]}))

    rounds = len(job.config.all_widths)
    progresses = [StreamProgress(i, rounds, emit, spend) for i in range(job.n)]

    async def run(i: int, problem: Problem, progress: StreamProgress) -> None:
        try:
            result = await Engine(backend, job.config, progress=progress).solve(problem)
        except Exception as exc:  # a bug: reported on the stream, never a traceback
            queue.put_nowait(_Done(i, None, exc))
            return
        progress.flush()
        queue.put_nowait(_Done(i, result))

    tasks = [asyncio.create_task(run(i, p, progresses[i])) for i, p in enumerate(job.problems())]
    results: dict[int, Result] = {}
    status = 499  # until the stream ends one way or the other
    failed: str | None = None
    try:
        yield b"".join(
            frame({**head, "choices": [_delta(i, {"role": "assistant", "content": ""})]})
            for i in range(job.n)
        )
        while len(results) < job.n:
            items = await next_items(queue, keepalive)
            if items is None:
                yield KEEPALIVE
                continue
            out: list[bytes] = []
            for item in items:
                if isinstance(item, bytes):
                    out.append(item)
                    continue
                error = _failure(item)
                if error is not None:
                    status, failed = error.status, error.message
                    yield b"".join(out) + frame(error.payload()) + DONE
                    return
                assert item.result is not None
                results[item.index] = item.result
                out.append(_finish_chunk(job, head, item.index, results))
            yield b"".join(out)
        status = 200
        ordered = [results[i] for i in range(job.n)]
        tail = frame({**head, "choices": [], "usage": usage(ordered)}) if job.include_usage else b""
        yield tail + DONE
    finally:
        for task in tasks:
            task.cancel()
        finish(status, failed)


def _delta(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "finish_reason": finish}


def _failure(done: _Done) -> ApiError | None:
    if done.error is not None:
        return ApiError(502, f"pacore failed on this request: {type(done.error).__name__}")
    assert done.result is not None
    try:
        check(done.result)
    except ApiError as exc:
        return exc
    return None


def _finish_chunk(job: Job, head: dict[str, Any], index: int, results: dict[int, Result]) -> bytes:
    """A choice's finishing chunk; the last one carries the `pacore` breakdown."""
    _, _, reason = answer_parts(results[index])
    chunk: dict[str, Any] = {**head, "choices": [_delta(index, {}, reason)]}
    if len(results) == job.n:
        chunk["pacore"] = breakdown(job, [results[i] for i in range(job.n)])
    return frame(chunk)


def now() -> int:
    """Seconds since the epoch, as `created` says it."""
    return int(time.time())
