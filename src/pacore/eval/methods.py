"""Test-time-compute methods, each naming its TTC: PaCoRe and the paper's baselines.

    pacore:<preset|widths>   PaCoRe, e.g. pacore:low, pacore:high, pacore:32,4
    sc:<N>                   self-consistency: majority over N answers, clustered by equivalence
    seq:<R>                  sequential scaling: R rounds of width 1
    nomp:<preset|widths>     no message passing: full trajectories instead of conclusions
    single                   one sample

Every method is a small object with one coroutine, `run(sample, run, ctx)`, returning
a `RunOutput`. They all run on the engine and draw round 1 from the shared pool, so they
are compared on the same first-round samples, as in the paper: PaCoRe, `nomp` and `seq`
are the engine with other widths or compaction; self-consistency is the engine's first
round at width N followed by the shared majority vote (`metrics.majority_vote`).

What is graded is the same for every method: the conclusion of the final trajectory
(its text after the last `</think>`), whatever the compaction. For PaCoRe, `nomp` and
`seq` that is the final synthesis; for `single` it is the sample; for self-consistency
it is the winning sample, and every sample votes. A final trajectory cut by `max_tokens`
is graded on what it holds (a cut trajectory often has its boxed answer already) and
the run is recorded with status `truncated`, so reports can count truncations; one with
an empty conclusion is graded (wrong) with status `empty`. `PacoreConfig.truncated`
(`--keep-truncated`) governs only what is passed from one round to the next: a run
whose intermediate round leaves nothing to pass on gave no answer (`no_answer`).

`parse_method` reads a name through a registry of `MethodForm`s (`METHOD_FORMS`: the
built-in `METHODS`, then `pacore.methods` entry points, each a `MethodForm` named by its
family): a new method is a new class and one more form, never a new branch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypedDict

from pacore.backends.base import Backend, RequestCounter
from pacore.config import PacoreConfig, choose_widths, parse_widths
from pacore.core.compaction import CompactionMode, conclusion
from pacore.engine import Engine, TrajectoryMemo, passes_on, usable_messages
from pacore.errors import ConfigError
from pacore.eval.datasets import Sample
from pacore.eval.metrics import Equivalence, majority_vote, vote_pairs
from pacore.eval.traces import Trace, build_trace
from pacore.graders.memo import SameMemo
from pacore.pool import Issued, PooledSampling
from pacore.registry import Registry
from pacore.types import Problem, Result

Extract = Callable[[str], str | None]
"""Pulls the final answer out of a message (None when there is none)."""


@dataclass(frozen=True)
class RunOutput:
    """What one run of one method produced, ready to grade."""

    answer: str
    """The text to grade: the conclusion of the final trajectory (see the module docstring)."""
    final_text: str
    status: str
    """`ok`, `truncated` (graded on what it holds), `empty` or `failed`."""
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
    """With `failed`: `infrastructure` (not counted as an answer), `model` (a round
    before the last left nothing to pass on, e.g. every trajectory truncated and
    `--keep-truncated` not given: graded as a wrong answer) or `input` (the prompt can
    never fit the context window: graded as a wrong answer too)."""
    trace: Trace | None = None
    """Every round's trajectories and prompt, for `pacore view` (`eval.traces`)."""


@dataclass
class Context:
    """What a method needs to run: the backend, the base config and the shared pool."""

    backend: Backend
    config: PacoreConfig
    sampling: PooledSampling
    extract: Extract
    """The grader's `extract`: the answer inside a message."""
    same: Equivalence
    """The grader's `same`: answer equivalence, for clustering votes."""
    trajectories: TrajectoryMemo = field(default_factory=lambda: TrajectoryMemo(size=1024))
    """Round-1 trajectories built once per pool completion, shared by a problem's jobs."""
    _configs: dict[tuple[tuple[int, ...], CompactionMode], PacoreConfig] = field(
        default_factory=dict, init=False, repr=False
    )

    async def compare(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Settle `same` for `pairs` before a vote asks for them, when `same` is a
        `SameMemo`: what the grader decides at once here, the rest in one batch in a
        thread (the math grader asks its worker processes, and the loop goes on)."""
        memo = self.same
        if not pairs or not isinstance(memo, SameMemo):
            return
        rest = memo.unsettled(pairs)
        if rest:
            await asyncio.to_thread(memo.settle, rest)

    def config_with(self, widths: tuple[int, ...], compaction: CompactionMode) -> PacoreConfig:
        """The base config with these widths and this compaction, validated once per
        evaluation (a method asks for the same one in every run)."""
        key = (widths, compaction)
        config = self._configs.get(key)
        if config is None:
            config = self._configs[key] = self.config.with_options(
                widths=widths, compaction=compaction
            )
        return config


class Method(Protocol):
    """A test-time-compute method the eval runner calls once per (problem, run)."""

    name: str
    family: str

    @property
    def first_round(self) -> int:
        """How many round-1 samples a run draws from the pool."""
        ...

    @property
    def passes_messages(self) -> bool:
        """Whether messages go from round to round, so the compaction, the synthesis
        template, `truncated` and `min_references` apply."""
        ...

    @property
    def trajectories(self) -> int:
        """Trajectories per run, every round included."""
        ...

    async def run(self, sample: Sample, run: int, ctx: Context) -> RunOutput:
        """Run once on `sample` (`run` picks the pool draw and the store keys)."""
        ...


def _problem(sample: Sample) -> Problem:
    return Problem(id=sample.id, messages=sample.messages)


def _issued(sampler: object) -> Mapping[tuple[int, int], Issued]:
    """Where the sampler's answers live in the store (none for a sampler that does not say)."""
    issued = getattr(sampler, "issued", None)
    return issued if isinstance(issued, Mapping) else {}


def _widths(text: str, max_width: int) -> tuple[int, ...]:
    widths = choose_widths(text, max_width=max_width)
    assert widths is not None  # a text is never None
    return widths


@dataclass
class PacoreMethod:
    """PaCoRe with the given widths; `compaction` fixes the compaction (`nomp`'s is
    `full`, its definition), None takes the config's (`--compaction`)."""

    name: str
    widths: tuple[int, ...]
    compaction: CompactionMode | None = None
    family: str = "pacore"

    @property
    def first_round(self) -> int:
        """Round 1's width."""
        return self.widths[0]

    @property
    def passes_messages(self) -> bool:
        """True: every round passes its messages to the next."""
        return True

    @property
    def trajectories(self) -> int:
        """Every round's width plus the final synthesis."""
        return sum(self.widths) + 1

    async def run(self, sample: Sample, run: int, ctx: Context) -> RunOutput:
        """Solve through every round with this method's widths and compaction."""
        compaction = self.compaction or ctx.config.compaction
        config = ctx.config_with(self.widths, compaction)
        sampler = ctx.sampling.for_run(run, namespace=f"{self.name}/")
        engine = Engine(ctx.backend, config, sampler=sampler, memo=ctx.trajectories)
        result = await engine.solve(_problem(sample))
        finished = len(result.rounds) == len(result.widths)
        trace = build_trace(
            result.rounds,
            _issued(sampler),
            lambda rnd: [t for t in rnd.trajectories[: rnd.width] if passes_on(t, config)],
            final=(len(result.rounds), 0) if finished else None,
        )
        return run_output(result, config, trace)


def run_output(result: Result, config: PacoreConfig, trace: Trace | None = None) -> RunOutput:
    """What the runner grades of an engine result: the answer and the messages of each
    round (with the run's `trace`)."""
    finished = len(result.rounds) == len(result.widths)
    before_last = result.rounds[:-1] if finished else result.rounds
    # The same rule the engine used to pass messages on (each round's final slots).
    rounds = [usable_messages(rnd.trajectories[: rnd.width], config) for rnd in before_last]
    answer, status = graded(result.final_text, result.status)
    return RunOutput(
        answer=answer,
        final_text=result.final_text,
        status=status,
        error=result.error,
        failure=result.failure,
        ttc_tokens=result.ttc_tokens,
        max_prompt_tokens=result.max_prompt_tokens,
        max_context_tokens=result.max_context_tokens,
        requests=result.requests,
        trajectories=sum(len(r.trajectories) for r in result.rounds),
        round_messages=rounds,
        references=rounds[-1] if finished and rounds else [],
        trace=trace,
    )


def graded(text: str, status: str) -> tuple[str, str]:
    """The answer to grade in a final trajectory's whole text, and the run's status.

    The answer is the conclusion, whatever the compaction (`answer` compaction would
    leave only a boxed expression, and none at all of a program). A truncated or failed
    status stays; otherwise the run is `ok`, or `empty` when the conclusion is blank.
    """
    answer = conclusion(text)
    if status in ("truncated", "failed"):
        return answer, status
    return answer, "ok" if answer.strip() else "empty"


@dataclass
class SelfConsistency:
    """Majority vote over N compacted answers from the pool, clustered by equivalence.

    The engine's first round at width N (the same sampler, request and failure policy
    as PaCoRe's round 1), then the shared majority vote instead of a synthesis.
    """

    name: str
    n: int
    family: str = "sc"

    @property
    def first_round(self) -> int:
        """N: every vote comes from round 1."""
        return self.n

    @property
    def passes_messages(self) -> bool:
        """False: the samples are the answers, nothing is passed on."""
        return False

    @property
    def trajectories(self) -> int:
        """N."""
        return self.n

    async def run(self, sample: Sample, run: int, ctx: Context) -> RunOutput:
        """Sample N answers through the engine and return the winner of the vote."""
        counter = RequestCounter()
        sampler = ctx.sampling.for_run(run, namespace=f"{self.name}/")
        engine = Engine(ctx.backend, ctx.config, sampler=sampler, memo=ctx.trajectories)
        rnd = await engine.sample_round(_problem(sample), self.n, counter)
        everything, final = rnd.trajectories, rnd.trajectories[: rnd.width]
        # What the run spent, voted or not (one constructor call: `replace` costs three).
        usages = [t.usage for t in everything]
        spent = _Spent(
            ttc_tokens=sum(u.generated for u in usages),
            max_prompt_tokens=max((u.prompt_tokens for u in usages), default=0),
            max_context_tokens=max(
                (u.prompt_tokens + u.completion_tokens for u in usages), default=0
            ),
            requests=counter.requests,
            trajectories=len(everything),
        )
        answered = [t for t in final if t.status != "error"]
        failed = [t for t in final if t.error]
        if failed and (not answered or ctx.config.on_failure == "fail"):
            reason = f"{len(failed)} of {len(final)} samples failed ({failed[0].error})"
            kind = "input" if all(t.input_too_long for t in failed) else "infrastructure"
            # The trace of a failed vote grades nothing (built here only: a trace is
            # tens of cards, and most runs vote).
            return RunOutput(
                answer="",
                final_text="",
                status="failed",
                error=f"{self.name}: {reason}",
                **spent,
                failure=kind,
                trace=build_trace([rnd], _issued(sampler), lambda _: []),
            )
        # Every sample is a final answer: graded (and voting) on what it holds, cut or not.
        answers = [(*graded(t.text, t.status), t) for t in answered]
        voters = [a for a in answers if a[0].strip()] or answers[:1]
        messages = [answer for answer, _, _ in voters]
        extracted = [ctx.extract(m) for m in messages]
        await ctx.compare(vote_pairs(extracted))  # diverse answers: one batch, not a pair at a time
        ballot = majority_vote(extracted, ctx.same)
        answer, status, winner = voters[ballot.winner if ballot.winner is not None else 0]
        trace = build_trace(
            [rnd],
            _issued(sampler),
            lambda _: [t for _, _, t in voters],
            final=(1, next(i for i, t in enumerate(rnd.trajectories) if t is winner)),
        )
        return RunOutput(
            answer=answer,
            final_text=winner.text,
            status=status,
            error=None,
            **spent,
            votes=list(ballot.sizes),
            round_messages=[messages],
            trace=trace,
        )


class _Spent(TypedDict):
    """What a run spent, as `RunOutput` names it."""

    ttc_tokens: int
    max_prompt_tokens: int
    max_context_tokens: int
    requests: int
    trajectories: int


# ----------------------------------------------------------------------- registry

MethodFactory = Callable[[str, str, int], Method]
"""Builds a method from its full name, the text after `family:` and the largest width."""


@dataclass(frozen=True)
class MethodForm:
    """One way to name a method: `family:<argument>` (or the bare family)."""

    family: str
    usage: str
    """How the form is written, for error messages: `sc:<N>`."""
    build: MethodFactory
    takes_argument: bool = True


def _pacore(name: str, arg: str, max_width: int) -> Method:
    return PacoreMethod(name, _widths(arg, max_width))


def _nomp(name: str, arg: str, max_width: int) -> Method:
    return PacoreMethod(name, _widths(arg, max_width), "full", "nomp")  # nomp is `full`


def _sc(name: str, arg: str, max_width: int) -> Method:
    (n,) = parse_widths(arg, max_width=max_width)
    return SelfConsistency(name, n)


def _seq(name: str, arg: str, max_width: int) -> Method:
    (rounds,) = parse_widths(arg, max_width=max_width)
    if rounds < 2:
        raise ConfigError("seq needs at least 2 rounds (seq:1 is `single`)")
    return PacoreMethod(name, (1,) * (rounds - 1), family="seq")


def _single(name: str, arg: str, max_width: int) -> Method:
    return SelfConsistency(name, 1, family="single")


METHODS: tuple[MethodForm, ...] = (
    MethodForm("pacore", "pacore:<low|medium|high|widths>", _pacore),
    MethodForm("sc", "sc:<N>", _sc),
    MethodForm("seq", "seq:<R>", _seq),
    MethodForm("nomp", "nomp:<low|medium|high|widths>", _nomp),
    MethodForm("single", "single", _single, takes_argument=False),
)
"""The built-in methods, in the order error messages list them."""

METHOD_FORMS: Registry[MethodForm] = Registry(
    "method",
    "pacore.methods",
    {form.family: form for form in METHODS},
    accepts=lambda found: isinstance(found, MethodForm),
)
"""Every method family: the built-ins, then `pacore.methods` entry points (`MethodForm`s)."""


def _find_form(family: str, forms: Sequence[MethodForm] | None) -> MethodForm | None:
    if forms is not None:
        return next((f for f in forms if f.family == family), None)
    return METHOD_FORMS.get(family) if family and family in METHOD_FORMS else None


def parse_method(
    name: str, *, max_width: int = 1024, forms: Sequence[MethodForm] | None = None
) -> Method:
    """A method from its name; a bad name is a `ConfigError` naming the valid forms.

    `forms` replaces the registry (`METHOD_FORMS`: built-ins, then plugins) when given.
    """
    text = name.strip()
    family, _, arg = text.partition(":")
    form = _find_form(family, forms)
    if form is None or bool(arg) != form.takes_argument:
        usages = [f.usage for f in forms] if forms is not None else _registry_usages()
        listed = ", ".join(usages[:-1]) + f" or {usages[-1]}" if len(usages) > 1 else usages[0]
        raise ConfigError(f"unknown method {name!r}; use {listed}")
    if form in METHODS and arg:  # a built-in has one name a method: `pacore: 4, 2` is `pacore:4,2`
        arg = ",".join(part.strip() for part in arg.split(","))
        text = f"{family}:{arg}"
    try:
        return form.build(text, arg, max_width)
    except ValueError as exc:  # ConfigError included: say which method was wrong
        raise ConfigError(f"method {name!r}: {exc}") from None


def _registry_usages() -> list[str]:
    """How every registered method is written: built-ins' usages, then plugins' families."""
    return [*(f.usage for f in METHODS), *METHOD_FORMS.plugin_names()]
