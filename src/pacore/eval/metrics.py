"""Metrics of an evaluation, as the paper reports them: pure functions over plain data.

Nothing here reads files or talks to a model; the eval runner turns graded results
into the plain numbers, lists and strings these functions take.

- `pass_at_1`: mean over problems of the mean score over runs, with a standard error
  and a seeded bootstrap interval (the paper's pass@1 over R runs per problem).
- `pass_at_k`: the unbiased estimator `1 - C(n-c, k) / C(n, k)`, in product form.
- `majority_vote` / `maj_at_k`: majority over answers clustered by a pluggable
  equivalence (self-consistency reuses `majority_vote`).
- `mean_ttc`, `largest_context`: compute and context cost.
- `accuracy_per_round`, `emergent_correctness`, `cross_check_frequency`,
  `solipsism_rate`: the paper's analyses (section 4 of PACORE.md).
- `classify_outcome` / `count_outcomes`: infrastructure failures kept apart from
  wrong answers.

Invalid arguments raise `ValueError`. Rates whose denominator can be zero are a
`Rate` (numerator, denominator) whose `value` is None for 0/0, never 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

A = TypeVar("A")

Equivalence = Callable[[Any, Any], bool]
"""An answer equivalence: `same(a, b)` is true when `a` and `b` are the same answer
(a grader's `same`)."""


def _equal(a: object, b: object) -> bool:
    return a == b


# --------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class Rate:
    """A proportion kept with its counts, so that 0/0 stays "no data" rather than 0."""

    numerator: int
    denominator: int

    @property
    def value(self) -> float | None:
        """`numerator / denominator`, or None when the denominator is 0."""
        return self.numerator / self.denominator if self.denominator else None

    def to_dict(self) -> dict[str, Any]:
        """The rate as JSON: value, numerator, denominator."""
        return {"value": self.value, "numerator": self.numerator, "denominator": self.denominator}


# ------------------------------------------------------------------------- pass@1


@dataclass(frozen=True)
class PassAt1:
    """pass@1 of one method on one dataset. Every number is a fraction from 0 to 1.

    `stderr` is the standard error of the mean over problems (sample standard deviation
    of the per-problem means, divided by the square root of the number of problems; 0.0
    with a single problem). `ci_low`/`ci_high` are a percentile bootstrap interval
    that resamples problems.
    """

    mean: float
    stderr: float
    ci_low: float
    ci_high: float
    n_problems: int
    n_runs: int
    """Runs per problem: the smallest count when problems had different numbers of runs."""
    n_scores: int
    """Scores in all: the sum of the runs of every problem."""
    confidence: float = 0.95
    """The coverage of `ci_low`..`ci_high`."""

    def to_dict(self) -> dict[str, Any]:
        """pass@1 as JSON."""
        return {
            "mean": self.mean,
            "stderr": self.stderr,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_problems": self.n_problems,
            "n_runs": self.n_runs,
            "n_scores": self.n_scores,
            "confidence": self.confidence,
        }


def _problem_means(values: Mapping[str, Sequence[float]], what: str) -> list[float]:
    """Per-problem means in sorted-id order, so results do not depend on insertion order."""
    if not values:
        raise ValueError(f"{what}: no problems")
    means = []
    for pid in sorted(values):
        runs = values[pid]
        if len(runs) == 0:
            raise ValueError(f"{what}: problem {pid!r} has no values")
        for v in runs:
            if not math.isfinite(v):
                raise ValueError(f"{what}: problem {pid!r} has a non-finite value {v!r}")
        means.append(math.fsum(runs) / len(runs))
    return means


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted data (numpy's default method)."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def bootstrap_interval(
    values: Sequence[float],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`, reproducible for a seed."""
    if not values:
        raise ValueError("bootstrap_interval: no values")
    if n_resamples < 1:
        raise ValueError(f"bootstrap_interval: n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"bootstrap_interval: confidence must be in (0, 1), got {confidence}")
    if min(values) == max(values):
        return values[0], values[0]
    stats = sorted(_resampled_means(values, n_resamples, seed))
    alpha = (1.0 - confidence) / 2.0
    return _quantile(stats, alpha), _quantile(stats, 1.0 - alpha)


BOOTSTRAP_BLOCK = 1 << 20
"""Indices drawn at once when resampling value by value (8 MiB): memory stays flat."""


def _resampled_means(values: Sequence[float], n_resamples: int, seed: int) -> list[float]:
    """The means of `n_resamples` resamples of `values` with replacement (numpy, seeded).

    A resample's mean depends only on how often it drew each distinct value, so with
    few distinct values (pass@1 over R runs takes at most R + 1) the counts are drawn
    from the multinomial at once: the same distribution as drawing value by value, in
    time independent of the number of problems. Otherwise the indices are drawn in
    blocks of `BOOTSTRAP_BLOCK`.
    """
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    n = len(data)
    generator = np.random.default_rng(seed)
    distinct, counts = np.unique(data, return_counts=True)
    if len(distinct) <= 64:
        draws = generator.multinomial(n, counts / n, size=n_resamples)
        return [float(x) for x in (draws @ distinct) / n]
    means: list[float] = []
    rows = max(1, BOOTSTRAP_BLOCK // n)
    for start in range(0, n_resamples, rows):
        picks = generator.integers(0, n, size=(min(rows, n_resamples - start), n))
        means.extend(float(x) for x in data[picks].mean(axis=1))
    return means


def pass_at_1(
    scores_per_problem: Mapping[str, Sequence[float]],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PassAt1:
    """pass@1: the mean over problems of each problem's mean score over its runs.

    `scores_per_problem` maps a problem id to its run scores (0..1; soft code scores
    allowed). Leave ungradable runs out before calling; a problem with no scores is an
    error. Problems are taken in sorted-id order, so the bootstrap interval depends only
    on the data and `seed`.
    """
    means = _problem_means(scores_per_problem, "pass_at_1")
    for pid, scores in scores_per_problem.items():
        for s in scores:
            if not 0.0 <= s <= 1.0:
                raise ValueError(f"pass_at_1: problem {pid!r} has a score {s!r} outside 0..1")
    n = len(means)
    mean = math.fsum(means) / n
    if n > 1:
        variance = math.fsum((m - mean) ** 2 for m in means) / (n - 1)
        stderr = math.sqrt(variance / n)
    else:
        stderr = 0.0
    low, high = bootstrap_interval(means, n_resamples=n_resamples, confidence=confidence, seed=seed)
    run_counts = [len(r) for r in scores_per_problem.values()]
    return PassAt1(
        mean=mean,
        stderr=stderr,
        ci_low=low,
        ci_high=high,
        n_problems=n,
        n_runs=min(run_counts),
        n_scores=sum(run_counts),
        confidence=confidence,
    )


# ------------------------------------------------------------------------- pass@k


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from `n` samples of which `c` are correct: `1 - C(n-c,k) / C(n,k)`.

    Computed as `1 - prod_{i=n-c+1}^{n} (1 - k/i)`, so no large binomial is formed.
    """
    for name, v in (("n", n), ("c", c), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"pass_at_k: {name} must be an int, got {v!r}")
    if n < 1:
        raise ValueError(f"pass_at_k: n must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c must be in 0..n={n}, got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k must be in 1..n={n}, got {k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(counts_per_problem: Mapping[str, tuple[int, int]], k: int) -> float:
    """The mean over problems of `pass_at_k(n, c, k)`; values are `(n, c)` per problem."""
    if not counts_per_problem:
        raise ValueError("mean_pass_at_k: no problems")
    return math.fsum(pass_at_k(n, c, k) for n, c in counts_per_problem.values()) / len(
        counts_per_problem
    )


# ------------------------------------------------------------------ majority vote


def is_abstention(answer: object) -> bool:
    """None, or a string that is empty once stripped: no answer was given."""
    return answer is None or (isinstance(answer, str) and not answer.strip())


@dataclass(frozen=True)
class Vote(Generic[A]):
    """The outcome of a majority vote over a list of answers.

    `clusters` lists the indices (into the voted list) of each cluster's members, in
    order of first appearance; a cluster's first member is its representative.
    """

    winner: int | None
    """Index of the winning cluster's representative; None when every answer abstained."""
    answer: A | None
    """The winning answer (the representative's), or None."""
    clusters: tuple[tuple[int, ...], ...]
    abstentions: int

    @property
    def sizes(self) -> tuple[int, ...]:
        """The size of each cluster, in order of first appearance."""
        return tuple(len(c) for c in self.clusters)

    @property
    def winner_cluster(self) -> int | None:
        """Index into `clusters` of the winning cluster."""
        if self.winner is None:
            return None
        return next(i for i, c in enumerate(self.clusters) if c[0] == self.winner)


def cluster_answers(answers: Sequence[A | None], same: Equivalence = _equal) -> list[list[int]]:
    """Greedy clustering: each answer joins the first cluster whose representative it matches.

    The representative is a cluster's first member. Answers equal under `==` are taken
    as the same without calling `same` (which must therefore be reflexive); abstentions
    join no cluster. `same(representative, answer)` is called in that order.
    """
    clusters: list[list[int]] = []
    for i, answer in enumerate(answers):
        if is_abstention(answer):
            continue
        for members in clusters:
            rep = answers[members[0]]
            if rep == answer or same(rep, answer):
                members.append(i)
                break
        else:
            clusters.append([i])
    return clusters


def vote_pairs(answers: Sequence[A | None]) -> list[tuple[A, A]]:
    """Every `(earlier, later)` pair of unequal answers (abstentions left out) that
    `cluster_answers` may pass to `same`, each once: a caller can compare them all in one
    batch before the vote."""
    voting = [a for a in answers if a is not None and not is_abstention(a)]
    pairs: dict[tuple[A, A], None] = {}
    for i, rep in enumerate(voting):
        for later in voting[i + 1 :]:
            if later != rep:
                pairs[(rep, later)] = None
    return list(pairs)


def majority_vote(answers: Sequence[A | None], same: Equivalence = _equal) -> Vote[A]:
    """The answer most of `answers` agree on, under the equivalence `same`.

    Abstentions (`is_abstention`) never win; when every answer abstains (or the list is
    empty) there is no winner. Ties go to the cluster that appeared first in `answers`
    (earliest-first, deterministic); shuffle `answers` beforehand for a random tie-break.
    """
    clusters = cluster_answers(answers, same)
    abstentions = len(answers) - sum(len(c) for c in clusters)
    if not clusters:
        return Vote(winner=None, answer=None, clusters=(), abstentions=abstentions)
    # max() keeps the first of equal keys, and clusters are in order of first appearance.
    best = max(clusters, key=len)
    return Vote(
        winner=best[0],
        answer=answers[best[0]],
        clusters=tuple(tuple(c) for c in clusters),
        abstentions=abstentions,
    )


def maj_at_k(
    samples: Sequence[tuple[A | None, bool | None]],
    *,
    same: Equivalence = _equal,
    k: int | None = None,
) -> bool | None:
    """Is the majority answer of the first `k` samples (all by default) correct?

    `samples` are `(answer, correct)` pairs, where `answer` may already be a cluster id.
    The winner's correctness is its representative's (the cluster's first member); a
    vote where everyone abstained counts as wrong. None when the winner is ungradable.
    """
    if k is not None:
        if not 1 <= k <= len(samples):
            raise ValueError(f"maj_at_k: k must be in 1..{len(samples)}, got {k}")
        samples = samples[:k]
    elif not samples:
        raise ValueError("maj_at_k: no samples")
    vote = majority_vote([a for a, _ in samples], same)
    if vote.winner is None:
        return False
    return samples[vote.winner][1]


# ------------------------------------------------------------------ compute, context


def mean_per_problem(values_per_problem: Mapping[str, Sequence[float]]) -> float:
    """The mean over problems of each problem's mean over its runs."""
    means = _problem_means(values_per_problem, "mean_per_problem")
    return math.fsum(means) / len(means)


def mean_ttc(ttc_per_problem: Mapping[str, Sequence[float]]) -> float:
    """Mean TTC per problem: the mean over problems of the mean tokens spent per run."""
    return mean_per_problem(ttc_per_problem)


def largest_context(context_per_result: Iterable[int]) -> int | None:
    """The largest single-call context over results; None when there are none."""
    return max(context_per_result, default=None)


# ----------------------------------------------------------------------- analyses


def accuracy_per_round(
    results: Iterable[Sequence[Sequence[bool | None]]],
) -> tuple[Rate, ...]:
    """Fraction of correct messages in each round, over every result.

    Each result is its rounds in order, each round the correctness of its messages
    (None: ungradable, left out). Results may have different numbers of rounds; entry
    `i` covers every result's round `i + 1`.
    """
    correct: list[int] = []
    total: list[int] = []
    for rounds in results:
        for i, messages in enumerate(rounds):
            if i == len(correct):
                correct.append(0)
                total.append(0)
            graded = [m for m in messages if m is not None]
            correct[i] += sum(1 for m in graded if m)
            total[i] += len(graded)
    return tuple(Rate(c, t) for c, t in zip(correct, total, strict=True))


def emergent_correctness(
    cases: Iterable[tuple[Sequence[bool | None], bool | None]],
) -> Rate:
    """P(final correct | every input message of the final synthesis was wrong).

    Each case is `(input_correct, final_correct)`. A case counts towards the
    denominator only when it had at least one input message, every input was graded
    wrong (an ungradable input leaves it out), and the final answer was graded.
    """
    numerator = denominator = 0
    for inputs, final in cases:
        if final is None or not inputs or any(m is not False for m in inputs):
            continue
        denominator += 1
        numerator += bool(final)
    return Rate(numerator, denominator)


CROSS_CHECK_MARKERS: tuple[str, ...] = ("reference", "参考", "Ref <n>", "ref <n>")
"""The cross-checking markers counted, as keys of `count_markers`."""

# "reference" is a case-insensitive word prefix: "Reference", "references", "referenced"
# count, "cross-reference" counts, "crossreference" does not.
_REFERENCE = re.compile(r"(?<![a-z])reference[a-z]*", re.IGNORECASE)
# "Ref 3", "ref 3", "Ref. 3", "ref #3", "Ref3"; never "reference" (a letter follows "ref").
# Split by the case of the "R": "REF 3" counts as "Ref <n>".
_REF_NUMBER = re.compile(r"(?<![a-z])(r)ef\.?[ \t\u00a0]*#?\d", re.IGNORECASE)
_CANKAO = "参考"


def count_markers(text: str) -> dict[str, int]:
    """Occurrences of each cross-checking marker in one solution.

    "参考" is counted as a substring (Chinese has no word boundaries), so "参考答案"
    counts once.

    Every English marker starts with the letters r, e, f in some case, so the patterns
    are tried only where `text.lower()` has "ref" (the patterns' own case-insensitive
    matching folds no other character to those three). When lowering kept every
    character one character, those places are the text's own, and each is matched
    there; the counts are the whole-text scan's (no match can hold another "ref": a
    letter before it rules it out). Else the whole text is scanned. A scan costs about
    12 ns a character; a long synthesis is tens of kilobytes, and the report counts
    the markers of every one.
    """
    reference = upper = lower = 0
    folded = text.lower()
    if "ref" in folded:
        if len(folded) == len(text):
            matches = [
                m
                for i in _places(folded, "ref")
                for m in (_REFERENCE.match(text, i), _REF_NUMBER.match(text, i))
                if m is not None
            ]
        else:  # a character lowered to several: places differ, scan it all
            matches = [*_REFERENCE.finditer(text), *_REF_NUMBER.finditer(text)]
        for m in matches:
            if m.re is _REFERENCE:
                reference += 1
            elif m.group(1) == "R":
                upper += 1
            else:
                lower += 1
    return {
        "reference": reference,
        "参考": text.count(_CANKAO),
        "Ref <n>": upper,
        "ref <n>": lower,
    }


def _places(text: str, part: str) -> Iterator[int]:
    """Where `part` starts in `text`, each place once."""
    at = text.find(part)
    while at >= 0:
        yield at
        at = text.find(part, at + 1)


@dataclass(frozen=True)
class MarkerStats:
    """Cross-checking markers over a set of final solutions."""

    totals: Mapping[str, int]
    """Occurrences of each marker (keys of `CROSS_CHECK_MARKERS`) over every solution."""
    n_solutions: int
    solutions_with_marker: int
    """Solutions with at least one marker of any kind."""

    @property
    def per_solution(self) -> float | None:
        """Mean number of markers (all kinds together) per solution; None with none."""
        if not self.n_solutions:
            return None
        return sum(self.totals.values()) / self.n_solutions

    def per_marker(self) -> dict[str, float | None]:
        """Mean occurrences of each marker per solution."""
        n = self.n_solutions
        return {key: (v / n if n else None) for key, v in self.totals.items()}

    def to_dict(self) -> dict[str, Any]:
        """The marker statistics as JSON."""
        return {
            "per_solution": self.per_solution,
            "totals": dict(self.totals),
            "per_marker": self.per_marker(),
            "n_solutions": self.n_solutions,
            "solutions_with_marker": self.solutions_with_marker,
        }


def cross_check_frequency(solutions: Iterable[str]) -> MarkerStats:
    """Count the cross-checking markers of every final solution (full text, reasoning too)."""
    return cross_check_counts(count_markers(text) for text in solutions)


def cross_check_counts(per_solution: Iterable[Mapping[str, int]]) -> MarkerStats:
    """`cross_check_frequency` from each solution's `count_markers`, counted already."""
    totals = dict.fromkeys(CROSS_CHECK_MARKERS, 0)
    n = with_marker = 0
    for counts in per_solution:
        n += 1
        for key, v in counts.items():
            totals[key] += v
        with_marker += any(counts.values())
    return MarkerStats(totals=totals, n_solutions=n, solutions_with_marker=with_marker)


def solipsism_pairs(cases: Iterable[tuple[A | None, Sequence[A | None]]]) -> list[tuple[A, A]]:
    """Every `(reference, final)` pair of unequal answers `solipsism_rate` may pass to
    `same`, each once (to compare them in one batch beforehand)."""
    pairs: dict[tuple[A, A], None] = {}
    for final, refs in cases:
        if final is None or is_abstention(final):
            continue
        for ref in refs:
            if ref is not None and not is_abstention(ref) and ref != final:
                pairs[(ref, final)] = None
    return list(pairs)


def solipsism_rate(
    cases: Iterable[tuple[A | None, Sequence[A | None]]],
    *,
    same: Equivalence = _equal,
) -> Rate:
    """How often the final answer matches none of the answers of its reference messages.

    Each case is `(final_answer, reference_answers)`. Cases with an abstaining final
    answer or without any non-abstaining reference answer are left out: there is
    nothing to compare. `same(reference, final)` decides equivalence.
    """
    numerator = denominator = 0
    for final, refs in cases:
        answered = [r for r in refs if not is_abstention(r)]
        if is_abstention(final) or not answered:
            continue
        denominator += 1
        if not any(r == final or same(r, final) for r in answered):
            numerator += 1
    return Rate(numerator, denominator)


# ---------------------------------------------------------------------- outcomes

Outcome = Literal["correct", "wrong", "ungradable", "failed"]


def classify_outcome(correct: bool | None, *, failed: bool = False) -> Outcome:
    """One result's outcome. An infrastructure failure (`failed`) wins over any grade."""
    if failed:
        return "failed"
    if correct is None:
        return "ungradable"
    return "correct" if correct else "wrong"


@dataclass(frozen=True)
class OutcomeCounts:
    """Results by outcome: infrastructure failures are kept apart from wrong answers."""

    correct: int = 0
    wrong: int = 0
    ungradable: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        """Every outcome counted."""
        return self.correct + self.wrong + self.ungradable + self.failed

    def to_dict(self) -> dict[str, int]:
        """The counts as JSON, with their total."""
        return {
            "correct": self.correct,
            "wrong": self.wrong,
            "ungradable": self.ungradable,
            "failed": self.failed,
            "total": self.total,
        }


def count_outcomes(outcomes: Iterable[Outcome]) -> OutcomeCounts:
    """Tally outcomes from `classify_outcome`."""
    counts = dict.fromkeys(("correct", "wrong", "ungradable", "failed"), 0)
    for outcome in outcomes:
        if outcome not in counts:
            raise ValueError(f"count_outcomes: unknown outcome {outcome!r}")
        counts[outcome] += 1
    return OutcomeCounts(**counts)
