"""Test-time-compute methods, each naming its TTC: PaCoRe and the paper's baselines.

    pacore:<preset|widths>   PaCoRe, e.g. pacore:low, pacore:high, pacore:32,4
    sc:<N>                   self-consistency: majority over N answers, clustered by equivalence
    seq:<R>                  sequential scaling: R rounds of width 1
    nomp:<preset|widths>     no message passing: full trajectories instead of conclusions
    single                   one sample

Every method is a small object with one coroutine, `run(sample, run, ctx)`. They all
draw round 1 from the shared pool, so they are compared on the same first-round
samples, as in the paper. New methods are new classes in `METHODS`, not branches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from pacore.backends.base import Backend, RequestCounter
from pacore.config import PRESETS, PacoreConfig, parse_widths
from pacore.core.compaction import CompactionMode, classify, compact, full_text
from pacore.core.planning import sample_seed
from pacore.engine import Engine, SampleRequest, usable_messages
from pacore.errors import ConfigError
from pacore.eval.datasets import Sample
from pacore.eval.metrics import majority_vote
from pacore.eval.pool import PooledSampling
from pacore.types import Problem, Result

Extract = Callable[[str], str | None]
"""Pulls the final answer out of a message (None when there is none)."""
Same = Callable[[str, str], bool]
"""Whether two extracted answers are equivalent."""


@dataclass(frozen=True)
class Outcome:
    """What one run of one method produced, ready to grade."""

    answer: str
    """The text to grade: the compacted final message."""
    final_text: str
    status: str
    """`ok`, `truncated`, `empty` or `failed`."""
    error: str | None
    ttc_tokens: int
    max_prompt_tokens: int
    max_context_tokens: int
    requests: int
    trajectories: int
    """Trajectories this run used (drawn from the pool or sampled)."""
    round_messages: list[list[str]] = field(default_factory=list)
    """The usable compacted messages of every round before the last (for per-round accuracy)."""
    references: list[str] = field(default_factory=list)
    """The messages the final synthesis saw (empty for methods without synthesis)."""
    votes: list[int] = field(default_factory=list)
    """Self-consistency: the size of each answer cluster."""
    failure: str | None = None
    """With `failed`: `infrastructure` (not counted as an answer) or `model` (the model
    left nothing usable, e.g. every sample truncated: graded as a wrong answer)."""


@dataclass
class Context:
    """What a method needs to run: the backend, the base config and the shared pool."""

    backend: Backend
    config: PacoreConfig
    sampling: PooledSampling
    extract: Extract
    same: Same


class Method(Protocol):
    name: str
    family: str

    @property
    def first_round(self) -> int:
        """How many round-1 samples a run draws from the pool."""
        ...

    @property
    def trajectories(self) -> int:
        """Trajectories per run, every round included."""
        ...

    async def run(self, sample: Sample, run: int, ctx: Context) -> Outcome: ...


def _problem(sample: Sample) -> Problem:
    return Problem(id=sample.id, messages=sample.messages)


def _widths(text: str, max_width: int) -> tuple[int, ...]:
    return PRESETS[text] if text in PRESETS else parse_widths(text, max_width=max_width)


@dataclass
class PacoreMethod:
    """PaCoRe with the given widths (and compaction, for the `nomp` ablation)."""

    name: str
    widths: tuple[int, ...]
    compaction: CompactionMode = "conclusion"
    family: str = "pacore"

    @property
    def first_round(self) -> int:
        return self.widths[0]

    @property
    def trajectories(self) -> int:
        return sum(self.widths) + 1

    async def run(self, sample: Sample, run: int, ctx: Context) -> Outcome:
        config = ctx.config.with_options(widths=self.widths, compaction=self.compaction)
        sampler = ctx.sampling.for_run(run, namespace=f"{self.name}/")
        engine = Engine(ctx.backend, config, sampler=sampler)
        return outcome_of(await engine.solve(_problem(sample)), config)


def outcome_of(result: Result, config: PacoreConfig) -> Outcome:
    finished = len(result.rounds) == len(result.widths)
    before_last = result.rounds[:-1] if finished else result.rounds
    # The same rule the engine used to pass messages on (each round's final slots).
    rounds = [usable_messages(rnd.trajectories[: rnd.width], config) for rnd in before_last]
    return Outcome(
        answer=result.answer,
        final_text=result.final_text,
        status=result.status,
        error=result.error,
        failure=result.failure,
        ttc_tokens=result.ttc_tokens,
        max_prompt_tokens=result.max_prompt_tokens,
        max_context_tokens=result.max_context_tokens,
        requests=result.requests,
        trajectories=sum(len(r.trajectories) for r in result.rounds),
        round_messages=rounds,
        references=rounds[-1] if finished and rounds else [],
    )


@dataclass
class SelfConsistency:
    """Majority vote over N compacted answers from the pool, clustered by equivalence."""

    name: str
    n: int
    family: str = "sc"

    @property
    def first_round(self) -> int:
        return self.n

    @property
    def trajectories(self) -> int:
        return self.n

    async def run(self, sample: Sample, run: int, ctx: Context) -> Outcome:
        cfg = ctx.config
        problem = _problem(sample)
        counter = RequestCounter()
        params = replace(cfg.sampling(), seed=sample_seed(cfg.seed, problem.id, 1, 0))
        request = SampleRequest(
            problem, 1, 0, list(problem.messages), self.n, params, f"{problem.id}:1", counter
        )
        completions = await ctx.sampling.for_run(run, namespace=f"{self.name}/")(request)
        messages: list[str] = []
        texts: list[str] = []
        failures: list[str] = []
        statuses: dict[str, int] = {}
        for c in completions:
            message = "" if c.error else compact(c, cfg.compaction)
            status = classify(c, message)
            statuses[status] = statuses.get(status, 0) + 1
            if status == "ok":
                messages.append(message)
                texts.append(full_text(c))
            elif c.error:
                failures.append(c.error)
        ttc = sum(c.usage.completion_tokens for c in completions)
        prompt = max((c.usage.prompt_tokens for c in completions), default=0)
        context = max(
            (c.usage.prompt_tokens + c.usage.completion_tokens for c in completions), default=0
        )

        spent = Outcome(
            answer="",
            final_text="",
            status="failed",
            error=None,
            ttc_tokens=ttc,
            max_prompt_tokens=prompt,
            max_context_tokens=context,
            requests=counter.requests,
            trajectories=len(completions),
        )
        if not messages:
            tally = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
            reason = failures[0] if failures else f"no usable sample ({tally})"
            return replace(
                spent,
                error=f"{self.name}: {reason}",
                failure="infrastructure" if failures else "model",
            )
        ballot = majority_vote([ctx.extract(m) for m in messages], ctx.same)
        winner = ballot.winner if ballot.winner is not None else 0
        return replace(
            spent,
            answer=messages[winner],
            final_text=texts[winner],
            status="ok",
            votes=list(ballot.sizes),
            round_messages=[messages],
        )


def parse_method(name: str, *, max_width: int = 1024) -> Method:
    """A method from its name; a bad name is a `ConfigError` naming the valid forms."""
    text = name.strip()
    family, _, arg = text.partition(":")
    try:
        if family == "pacore" and arg:
            return PacoreMethod(text, _widths(arg, max_width))
        if family == "nomp" and arg:
            return PacoreMethod(text, _widths(arg, max_width), "full", "nomp")
        if family == "sc" and arg:
            (n,) = parse_widths(arg, max_width=max_width)
            return SelfConsistency(text, n)
        if family == "seq" and arg:
            (r,) = parse_widths(arg, max_width=max_width)
            if r < 2:
                raise ConfigError("seq needs at least 2 rounds (seq:1 is `single`)")
            return PacoreMethod(text, (1,) * (r - 1), family="seq")
        if family == "single" and not arg:
            return SelfConsistency(text, 1, family="single")
    except ValueError as exc:  # ConfigError included: say which method was wrong
        raise ConfigError(f"method {name!r}: {exc}") from None
    raise ConfigError(
        f"unknown method {name!r}; use pacore:<low|medium|high|widths>, sc:<N>, seq:<R>, "
        "nomp:<low|medium|high|widths> or single"
    )
