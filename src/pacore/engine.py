"""The PaCoRe engine: rounds of parallel trajectories, compacted and synthesised.

`Engine.solve` runs one problem through every round; `Engine.solve_many` runs
a stream of problems with a bounded number in flight and yields each result
the moment it is done. Problems advance independently, so one problem's round
2 overlaps another's round 1 and the backend stays saturated.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from functools import partial
from typing import Literal

from pacore.aio import aiterate, bounded_as_completed
from pacore.backends.base import Backend, RequestCounter, TextCallback
from pacore.config import PacoreConfig, check_min_references
from pacore.core.compaction import classify, compact, full_text
from pacore.core.planning import problem_key, sample_seed, shuffle_references
from pacore.core.prompts import make_renderer, synthesis_messages
from pacore.errors import ConfigError, one_line
from pacore.types import (
    Completion,
    CutBy,
    Failure,
    Message,
    Problem,
    Result,
    RoundResult,
    SamplingParams,
    Trajectory,
)


class Progress:
    """Hooks the engine calls as work advances; subclass and override what you need."""

    def round_started(self, problem_id: str, round_index: int, width: int) -> None:
        """A round of `width` trajectories was sent (round_index counts from 1)."""

    def trajectories_done(
        self, problem_id: str, round_index: int, trajectories: Sequence[Trajectory]
    ) -> None:
        """Some trajectories of a round finished (sampled or failed)."""

    def tokens(self, count: int) -> None:
        """`count` more tokens were generated (streamed or counted per request)."""

    def final_text(self, problem_id: str) -> TextCallback | None:
        """Where the final round's text goes as it is generated, or None (the default:
        the final round is sampled like any other, streamed only if the config says)."""
        return None

    def problem_done(self, result: Result) -> None:
        """A problem finished."""


@dataclass(frozen=True)
class SampleRequest:
    """One call for samples: `n` trajectories of round `round_index` of a problem."""

    problem: Problem
    round_index: int
    attempt: int
    """0 for a round's first sampling, k for its k-th re-sampling of failed slots."""
    messages: list[Message]
    n: int
    params: SamplingParams
    affinity: str
    counter: RequestCounter
    on_text: TextCallback | None = None
    """For the final round, when `Progress.final_text` asks: the text as it streams."""


Sampler = Callable[[SampleRequest], Awaitable[list[Completion]]]
"""Where a round's samples come from. The default asks the backend; the evaluation
harness plugs in one that draws round 1 from a cached pool and records every sample."""


class ProblemFailed(Exception):
    """Internal: a round cannot go on under the failure policy."""

    def __init__(self, message: str, *, kind: Failure = "infrastructure") -> None:
        super().__init__(one_line(message, limit=1000))
        self.kind: Failure = kind
        """Why: requests failed (`infrastructure`), the model left nothing usable
        (`model`: every trajectory truncated or empty, no request failed), or the input
        can never fit the context window (`input`)."""


def make_problem(
    question: str | Sequence[Message] | Problem, *, problem_id: str | None = None
) -> Problem:
    """A `Problem` from a question string, a conversation or a `Problem`."""
    if isinstance(question, Problem):
        return question if problem_id is None else replace(question, id=problem_id)
    if isinstance(question, str):
        if not question.strip():
            raise ConfigError("the question is empty")
        messages: tuple[Message, ...] = ({"role": "user", "content": question},)
    else:
        messages = tuple(dict(m) for m in question)
        if not messages:
            raise ConfigError("the conversation is empty")
    return Problem(id=problem_id or problem_key(messages), messages=messages)


class TrajectoryMemo:
    """Trajectories already built from a completion, for engines that are handed the
    same completion objects again (the evaluation's round-1 pool: every run of every
    method draws from it, and a problem's methods with the same width draw alike).

    A trajectory is a pure function of its completion, slot, attempt, compaction and
    token cap, and only its `index` and `attempt` fields depend on the slot and the
    attempt: the memo keeps one trajectory per completion (by identity, held so its
    identity is not reused while the entry lives), compaction and token cap, and hands
    a copy with the asked slot and attempt to a draw that puts the completion in
    another slot (each run draws the pool in its own order). Bounded: `size` entries or
    `chars` characters of their texts (long reasoning traces), then it starts over.
    """

    def __init__(self, *, size: int = 4096, chars: int = 32_000_000) -> None:
        """Keep at most `size` trajectories, holding at most `chars` characters of text."""
        self.size = size
        self.chars = chars
        self._chars = 0
        self.hits = 0
        self._built: dict[tuple[int, str, int | None], tuple[Completion, Trajectory]] = {}

    def __len__(self) -> int:
        """Trajectories held."""
        return len(self._built)

    def get(
        self, completion: Completion, index: int, attempt: int, config: PacoreConfig
    ) -> Trajectory | None:
        """The trajectory built earlier from this very completion in these settings, in
        slot `index` of attempt `attempt`."""
        held = self._built.get((id(completion), config.compaction, config.max_tokens))
        if held is None or held[0] is not completion:
            return None
        self.hits += 1
        built = held[1]
        if built.index == index and built.attempt == attempt:
            return built
        return _placed(built, index, attempt)

    def put(self, completion: Completion, config: PacoreConfig, trajectory: Trajectory) -> None:
        """Keep `trajectory`, built from `completion` under `config`."""
        if len(self._built) >= self.size or self._chars > self.chars:
            self._built.clear()
            self._chars = 0
        self._chars += len(trajectory.text)
        key = (id(completion), config.compaction, config.max_tokens)
        self._built[key] = (completion, trajectory)


def _placed(trajectory: Trajectory, index: int, attempt: int) -> Trajectory:
    """`trajectory` in slot `index` of attempt `attempt`: a copy of its fields
    (`copy.copy`'s way; a frozen dataclass's constructor costs several times more)."""
    moved = object.__new__(Trajectory)
    fields = moved.__dict__
    fields.update(trajectory.__dict__)
    fields["index"], fields["attempt"] = index, attempt
    return moved


class Engine:
    """Runs PaCoRe with one backend and one config."""

    def __init__(
        self,
        backend: Backend,
        config: PacoreConfig | None = None,
        *,
        progress: Progress | None = None,
        sampler: Sampler | None = None,
        memo: TrajectoryMemo | None = None,
    ) -> None:
        """`memo` shares built trajectories with other engines given the same completions."""
        self.backend = backend
        self.config = config or PacoreConfig()
        self.progress = progress or Progress()
        self.sampler: Sampler = sampler or self._from_backend
        self.memo = memo
        self._render = make_renderer(self.config.template)

    async def solve(
        self, question: str | Sequence[Message] | Problem, *, problem_id: str | None = None
    ) -> Result:
        """Solve one problem through every round. Never raises for model failures:
        a problem that cannot be finished comes back with `status="failed"` and
        the reason in `error`. A config no synthesis could satisfy (`min_references`
        above a width) raises `InvalidSetting` before any request."""
        check_min_references(self.config.min_references, self.config.widths)
        problem = make_problem(question, problem_id=problem_id)
        counter = RequestCounter()
        started = time.perf_counter()
        rounds: list[RoundResult] = []
        error: str | None = None
        failure: Failure | None = None
        references: list[str] = []
        widths = self.config.all_widths
        try:
            for r, width in enumerate(widths, 1):
                rnd = await self._run_round(problem, r, width, references, counter)
                rounds.append(rnd)
                references = self._passed_on(rnd, r, width, is_last=r == len(widths))
        except ProblemFailed as exc:
            error = str(exc)
            failure = exc.kind
        result = self._result(problem, rounds, counter, time.perf_counter() - started, error)
        if failure is not None:
            result = replace(result, failure=failure)
        self.progress.problem_done(result)
        return result

    async def solve_many(
        self, problems: Iterable[Problem] | AsyncIterable[Problem]
    ) -> AsyncIterator[Result]:
        """Yield a result per problem, in completion order, with a bounded number in flight."""
        jobs = (partial(self.solve, problem) async for problem in aiterate(problems))
        async with aclosing(bounded_as_completed(jobs, self.config.problems_in_flight)) as results:
            async for result in results:
                yield result

    async def sample_round(
        self, problem: Problem, width: int, counter: RequestCounter | None = None
    ) -> RoundResult:
        """A first round of `width` trajectories alone, through the sampler and the failure
        policy, without synthesis: self-consistency's samples."""
        return await self._run_round(problem, 1, width, [], counter or RequestCounter())

    # -- one round -------------------------------------------------------------

    async def _run_round(
        self,
        problem: Problem,
        r: int,
        width: int,
        references: list[str],
        counter: RequestCounter,
    ) -> RoundResult:
        cfg = self.config
        if len(references) > 1:  # an order of none or one is that order: no generator
            references = shuffle_references(
                references, seed=cfg.seed, problem=problem.id, round_index=r
            )
        prompt = synthesis_messages(problem.messages, references, self._render)
        base = cfg.sampling()
        params = replace(base, seed=sample_seed(cfg.seed, problem.id, r, 0))
        affinity = f"{problem.id}:{r}"
        self.progress.round_started(problem.id, r, width)
        on_text = self.progress.final_text(problem.id) if r == len(cfg.all_widths) else None
        completions = await self.sampler(
            SampleRequest(problem, r, 0, prompt, width, params, affinity, counter, on_text)
        )
        slots = [self._trajectory(i, c, 0) for i, c in enumerate(completions)]
        history = list(slots)
        self.progress.trajectories_done(problem.id, r, slots)

        if cfg.on_failure == "resample":
            for attempt in range(1, cfg.max_resamples + 1):
                redo = [i for i, t in enumerate(slots) if _resamplable(t)]
                if not redo:
                    break
                seed = sample_seed(cfg.seed, problem.id, r, attempt * 1_000_003)
                again = await self.sampler(
                    SampleRequest(
                        problem, r, attempt, prompt, len(redo), replace(base, seed=seed),
                        affinity, counter, on_text,
                    )
                )  # fmt: skip
                fresh = [self._trajectory(i, c, attempt) for i, c in zip(redo, again, strict=True)]
                for t in fresh:
                    slots[t.index] = t
                history.extend(fresh)
                self.progress.trajectories_done(problem.id, r, fresh)

        # Every attempt is kept (failed ones too), final slots first in index order.
        replaced = [t for t in history if slots[t.index] is not t]
        prompt_tokens = max((t.usage.prompt_tokens for t in slots), default=0)
        return RoundResult(
            round=r,
            width=width,
            trajectories=tuple(slots) + tuple(replaced),
            references=len(references),
            prompt_tokens=prompt_tokens,
            prompt=tuple(prompt),
        )

    async def _from_backend(self, request: SampleRequest) -> list[Completion]:
        # Without a text listener the call is the protocol's plain one, as before.
        text = {} if request.on_text is None else {"on_text": request.on_text}
        return await self.backend.complete(
            request.messages,
            request.n,
            request.params,
            affinity=request.affinity,
            on_tokens=self.progress.tokens,
            counter=request.counter,
            **text,
        )

    def _trajectory(self, index: int, completion: Completion, attempt: int) -> Trajectory:
        memo = self.memo
        if memo is None:
            return self._build_trajectory(index, completion, attempt)
        built = memo.get(completion, index, attempt, self.config)
        if built is None:
            built = self._build_trajectory(index, completion, attempt)
            memo.put(completion, self.config, built)
        return built

    def _build_trajectory(self, index: int, completion: Completion, attempt: int) -> Trajectory:
        if completion.error is not None:
            message = ""
        else:
            message = compact(completion, self.config.compaction)
        return Trajectory(
            index=index,
            text=full_text(completion),
            message=message,
            status=classify(completion, message),
            finish_reason=completion.finish_reason,
            usage=completion.usage,
            latency_s=completion.latency_s,
            error=_error_line(completion),
            endpoint=completion.endpoint,
            attempt=attempt,
            retryable=completion.retryable,
            input_too_long=completion.input_too_long,
            cut_by=cut_by(completion, self.config.max_tokens),
            error_type=completion.error_type if completion.error is not None else None,
        )

    def _passed_on(self, rnd: RoundResult, r: int, width: int, *, is_last: bool) -> list[str]:
        """The messages round r hands to round r+1, after the failure policy."""
        final = rnd.trajectories[:width]
        failed = [t for t in final if t.status == "error"]
        too_long = [t for t in failed if t.input_too_long]
        if too_long and len(too_long) == len(failed):
            if r == 1:  # the question itself: it can never fit
                raise ProblemFailed(f"round {r}: {too_long[0].error}", kind="input")
            # A synthesis prompt: the question fits, its references did not (other
            # references, or shorter ones, may): the method failed, not the input.
            raise ProblemFailed(
                f"round {r}: the synthesis prompt (the question and {rnd.references} "
                f"references) does not fit the model's context window ({too_long[0].error}); "
                "lower the widths or --max-tokens",
                kind="model",
            )
        if is_last:
            if final[0].status == "error":
                raise ProblemFailed(f"round {r} (final): {final[0].error}")
            return []
        usable = usable_messages(final, self.config)
        if failed and self.config.on_failure == "fail":
            raise ProblemFailed(
                f"round {r}: {len(failed)} of {width} trajectories failed ({failed[0].error})"
            )
        if len(usable) < self.config.min_references:
            hint = ""
            if self.config.truncated == "drop":
                hint = truncation_hint([t for t in final if t.status == "truncated"])
            first = f"; the first error: {failed[0].error}" if failed else ""
            raise ProblemFailed(
                f"round {r}: only {len(usable)} of {width} trajectories usable "
                f"(need {self.config.min_references}; {_tally(final)}{first}){hint}",
                kind="infrastructure" if failed else "model",
            )
        return usable

    def _result(
        self,
        problem: Problem,
        rounds: list[RoundResult],
        counter: RequestCounter,
        latency_s: float,
        error: str | None,
    ) -> Result:
        everything = [t for rnd in rounds for t in rnd.trajectories]
        finished = error is None and len(rounds) == len(self.config.all_widths)
        final = rounds[-1].trajectories[0] if finished else None
        status: Literal["ok", "truncated", "empty", "failed"]
        if final is None:
            status = "failed"
        elif final.status == "ok":
            status = "ok"
        elif final.status == "truncated":
            status = "truncated"
        elif final.status == "empty":
            status = "empty"
        else:  # pragma: no cover - a failed final round raises ProblemFailed
            status = "failed"
        return Result(
            id=problem.id,
            status=status,
            answer=final.message if final else "",
            final_text=final.text if final else "",
            rounds=tuple(rounds),
            widths=self.config.all_widths,
            ttc_tokens=sum(t.usage.generated for t in everything),
            max_prompt_tokens=max((t.usage.prompt_tokens for t in everything), default=0),
            max_context_tokens=max(
                (t.usage.prompt_tokens + t.usage.completion_tokens for t in everything), default=0
            ),
            requests=counter.requests,
            latency_s=latency_s,
            error=error,
            metadata=dict(problem.metadata),
        )


def usable_messages(trajectories: Sequence[Trajectory], config: PacoreConfig) -> list[str]:
    """The messages of `trajectories` that are passed on: the `ok` ones, and truncated
    ones with text left when the config keeps truncated trajectories."""
    return [t.message for t in trajectories if passes_on(t, config)]


def passes_on(t: Trajectory, config: PacoreConfig) -> bool:
    """Whether `t`'s message is passed on (see `usable_messages`)."""
    keep_truncated = config.truncated == "keep"
    return t.status == "ok" or (
        t.status == "truncated" and keep_truncated and bool(t.message.strip())
    )


def _resamplable(t: Trajectory) -> bool:
    # A refused request (context too long, bad key) fails the same way when sampled again.
    return t.status == "error" and t.retryable


def _error_line(completion: Completion) -> str | None:
    if completion.error is None:
        return None
    return f"{completion.error_type or 'Error'}: {completion.error}"


def cut_by(completion: Completion, max_tokens: int | None) -> CutBy | None:
    """What stopped a trajectory that ended by length: `max_tokens`, or the context window.

    Exact counts tell them apart without the window: a trajectory cut short of its cap
    hit the window. A server that said its window settles it for estimated counts too.
    None when it did not end by length, or when nothing can tell (no cap, no window).
    """
    if completion.finish_reason != "length" or completion.error is not None:
        return None
    usage, window = completion.usage, completion.context_window
    if window is not None and usage.prompt_tokens + usage.completion_tokens >= window:
        return "context"
    if max_tokens is None:
        return None
    if not usage.estimated and usage.completion_tokens < max_tokens:
        return "context"
    return "max_tokens"


def truncation_hint(truncated: Sequence[Trajectory]) -> str:
    """How to fix a round that truncation emptied, naming what cut the trajectories."""
    if not truncated:
        return ""
    by_context = [t for t in truncated if t.cut_by == "context"]
    if by_context:
        t = max(by_context, key=lambda t: t.usage.prompt_tokens + t.usage.completion_tokens)
        used = t.usage.prompt_tokens + t.usage.completion_tokens
        return (
            f"; the model's context window was full (a {t.usage.prompt_tokens:,}-token prompt "
            f"+ {t.usage.completion_tokens:,} generated = {used:,} tokens), not max_tokens: "
            "shorten the input, pass fewer or shorter references, or serve a larger window"
        )
    if all(t.cut_by == "max_tokens" for t in truncated):
        return "; raise max_tokens, or keep truncated trajectories"
    return "; raise max_tokens (or the server's context window), or keep truncated trajectories"


def _tally(trajectories: Sequence[Trajectory]) -> str:
    counts: dict[str, int] = {}
    for t in trajectories:
        counts[t.status] = counts.get(t.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
