"""Methods side by side: PaCoRe's SC partner, two runs compared, a problem's per-method summary.

**Pairs.** A PaCoRe run and a self-consistency run of the same problem and run number
whose first-round widths are equal (`pacore:low` and `sc:4`, `pacore:16` and `sc:16`)
drew the same round-1 samples from the eval's pool (`pacore.pool.draw` depends on the
problem, the run and K_1 only): the SC vote and the synthesis saw the same answers.
`pair_rows` pairs them so; the problem list's "PaCoRe right, SC wrong" filter and its
reverse use these pairs, and the compare view opens on one (any two methods can be
picked there).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pacore.errors import ConfigError
from pacore.view.answers import MARKS, AnswerGroup, Mark, group_answers
from pacore.view.data import RoundView, Row, RunView

PACORE, SC = "pacore", "sc"


def first_width(method: str) -> int | None:
    """K_1 of a method named as `pacore eval --method` takes it; None when it is not one."""
    from pacore.eval.methods import parse_method

    try:
        return parse_method(method).first_round
    except ConfigError:
        return None


def pair_rows(rows: Sequence[Row]) -> dict[int, int]:
    """Each PaCoRe row's index mapped to its SC partner's (see the module docstring)."""
    widths = {m: first_width(m) for m in {r.method for r in rows if r.family in (PACORE, SC)}}
    sc = {
        (r.id, r.run, widths[r.method]): r.index
        for r in rows
        if r.family == SC and not r.failed and widths[r.method] is not None
    }
    pairs = {}
    for r in rows:
        if r.family == PACORE and (found := sc.get((r.id, r.run, widths[r.method]))) is not None:
            pairs[r.index] = found
    return pairs


def partner_methods(rows: Sequence[Row], pairs: Mapping[int, int]) -> dict[str, str]:
    """Each PaCoRe method's SC partner method (`pair_rows`; the first pair found)."""
    found: dict[str, str] = {}
    for pacore, sc in pairs.items():
        found.setdefault(rows[pacore].method, rows[sc].method)
    return found


# ------------------------------------------------------------------------- one problem


@dataclass(frozen=True)
class MethodSummary:
    """One method on one problem, over its runs."""

    method: str
    runs: int
    right: int
    graded: int
    mean_ttc: float
    answers: list[AnswerGroup]
    """The final answers, grouped and counted (`answers.group_answers`)."""
    marks: dict[Mark, int]
    """How many runs' final synthesis has each mark (empty: none has one)."""

    @property
    def accuracy(self) -> float | None:
        """Right over graded runs; None when none was graded."""
        return self.right / self.graded if self.graded else None


def method_summaries(runs: Sequence[RunView]) -> list[MethodSummary]:
    """A problem's runs summed up per method, in order of first appearance."""
    by_method: dict[str, list[RunView]] = {}
    for v in runs:
        by_method.setdefault(v.row.method, []).append(v)
    found = []
    for method, views in by_method.items():
        graded = [v.final_correct for v in views if v.final_correct is not None]
        marks = Counter(v.mark for v in views if v.mark is not None)
        found.append(
            MethodSummary(
                method,
                len(views),
                sum(graded),
                len(graded),
                sum(v.row.ttc_tokens for v in views) / len(views),
                group_answers([v.final for v in views], [v.final_correct for v in views]),
                {m: marks[m] for m in MARKS if marks[m]},
            )
        )
    return found


@dataclass(frozen=True)
class Side:
    """One method's run in the compare view."""

    view: RunView
    pool: RoundView | None
    """Round 1: the samples drawn from the pool (None: no rounds known)."""
    later: list[RoundView]
    """The rounds after the first: the syntheses (none for self-consistency)."""
    shared: frozenset[int]
    """The positions of round-1 cards whose sample the other side drew too."""

    @property
    def vote(self) -> list[AnswerGroup]:
        """Round 1's answers grouped and counted: SC's vote, PaCoRe's first references."""
        return self.pool.groups if self.pool else []


@dataclass(frozen=True)
class Comparison:
    """Two methods' runs of one problem, side by side."""

    id: str
    run: int
    a: Side
    b: Side

    @property
    def shared(self) -> int:
        """How many round-1 samples both sides drew."""
        return len(self.a.shared)


def _samples(view: RunView) -> dict[str, int]:
    pool = view.rounds[0].slots if view.rounds else []
    return {c.sample: c.position for c in pool if c.sample}


def compare(a: RunView, b: RunView) -> Comparison:
    """`a` and `b` side by side, the round-1 samples both drew marked on each."""
    samples_a, samples_b = _samples(a), _samples(b)
    both = samples_a.keys() & samples_b.keys()

    def side(view: RunView, samples: Mapping[str, int]) -> Side:
        pool = view.rounds[0] if view.rounds else None
        return Side(view, pool, view.rounds[1:], frozenset(samples[s] for s in both))

    return Comparison(a.row.id, a.row.run, side(a, samples_a), side(b, samples_b))
