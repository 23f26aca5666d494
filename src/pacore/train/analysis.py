"""Training-time analyses: what each rollout's synthesis did with its references.

The paper's Fig. 3 and Fig. 5 signals, per rollout, for the RL engine's logs:

- `emergent`: the synthesis is right while the majority answer of its references
  is wrong (emergent correctness: not copied from the crowd);
- `ref_accuracy`: the mean score of the references in its message set M;
- `majority_agreement`: its final answer equals the references' majority answer
  (math-like graders; code has no answer to vote on and reports 0).

Grading 24 references for each of 64 rollouts at every step would cost more than
the rollouts' own rewards, so the pool is graded once, at export (`grade_pool`):
each response's score and answer cluster (equivalent answers share a cluster, by
the grader's own `same`) travel in the row. At reward time `episode_extras` only
counts. Plain functions over plain data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pacore.train.records import PoolRecord

NO_ANSWER = -1
"""The cluster of a response with no answer to vote on."""


@dataclass(frozen=True)
class PoolGrades:
    """Each pooled response's score and answer cluster, and each cluster's answer."""

    scores: tuple[float, ...]
    clusters: tuple[int, ...]
    """Per response: its cluster's number, or `NO_ANSWER`."""
    answers: tuple[str, ...]
    """Per cluster: the answer its first member gave."""


def grade_pool(record: PoolRecord, kind: str, model: Any) -> PoolGrades:
    """Grade every response of `record` with `model` (a `RewardModel`) and cluster the
    answers; code responses are scored but not clustered."""
    from pacore.eval.metrics import cluster_answers, vote_pairs
    from pacore.graders.memo import SameMemo

    grades = model.grades([(r, record.ground_truth) for r in record.responses], kind=kind)
    scores = tuple(min(1.0, max(0.0, float(g.score))) for g in grades)
    if kind == "code":
        return PoolGrades(scores, (NO_ANSWER,) * len(scores), ())
    grader = model.grader(kind)
    extracted = [g.extracted if g.extracted else None for g in grades]
    same = SameMemo(grader)
    same.settle(vote_pairs(extracted))  # every pair the clustering may ask, in one batch
    clusters = cluster_answers(extracted, same)
    numbers = [NO_ANSWER] * len(scores)
    answers = []
    for number, members in enumerate(clusters):
        answers.append(str(extracted[members[0]]))
        for i in members:
            numbers[i] = number
    return PoolGrades(scores, tuple(numbers), tuple(answers))


def majority_cluster(clusters: Sequence[int]) -> int:
    """The most common cluster among `clusters` (ties: the first seen), or `NO_ANSWER`."""
    counts = Counter(c for c in clusters if c != NO_ANSWER)
    if not counts:
        return NO_ANSWER
    top = max(counts.values())
    return next(c for c in clusters if c != NO_ANSWER and counts[c] == top)


def episode_extras(
    score: float,
    picks: Sequence[int],
    scores: Sequence[float],
    clusters: Sequence[int],
    *,
    agrees: bool,
) -> dict[str, float]:
    """The analyses of one rollout whose message set is the responses `picks`.

    `agrees`: whether the rollout's answer equals the majority answer (the caller
    grades it against that answer). A reference is right when its score is 1; the
    majority is wrong when its cluster's members are wrong or no reference answered.
    """
    refs = [i for i in picks if 0 <= i < len(scores)]
    accuracy = sum(scores[i] for i in refs) / len(refs) if refs else 0.0
    winner = majority_cluster([clusters[i] for i in refs if i < len(clusters)])
    majority_right = winner != NO_ANSWER and any(
        scores[i] >= 1.0 for i in refs if i < len(clusters) and clusters[i] == winner
    )
    if winner == NO_ANSWER and refs and all(c == NO_ANSWER for c in clusters):
        # code: no answers to vote on; the "majority" is whether most references pass
        majority_right = sum(scores[i] >= 1.0 for i in refs) * 2 > len(refs)
    right = score >= 1.0
    return {
        "emergent": float(right and not majority_right),
        "ref_accuracy": accuracy,
        "majority_right": float(majority_right),
        "majority_agreement": float(agrees),
    }


def majority_answer(
    picks: Sequence[int], clusters: Sequence[int], answers: Sequence[str]
) -> str | None:
    """The majority answer's text among the responses `picks`, or None."""
    winner = majority_cluster([clusters[i] for i in picks if 0 <= i < len(clusters)])
    return answers[winner] if 0 <= winner < len(answers) else None
