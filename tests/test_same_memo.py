"""`SameMemo`: a vote's or a report's answer pairs compared in one batch, then every
`same` the vote and the analyses ask is found, with exactly the grader's answers.

The graders below decide equivalence by a rule the test knows (numbers equal modulo 3,
and asymmetric on purpose: `b` may not be "9"), so the expected clusters and rates come
from that rule, not from the code under test.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pacore.eval import metrics
from pacore.eval.methods import Context
from pacore.graders.base import GraderBase
from pacore.graders.math_grader import MathCheck, MathGrader
from pacore.graders.memo import SameMemo

DATA = Path(__file__).resolve().parent / "data"


def rule(a: str, b: str) -> bool:
    return int(a) % 3 == int(b) % 3 and b != "9"


class Batching(GraderBase):
    """`same` by `rule`; counts one-pair calls and batches; decides nothing at once."""

    name = "batching"

    def __init__(self) -> None:
        self.single = 0
        self.batches: list[int] = []

    def same(self, a: str, b: str) -> bool:
        self.single += 1
        return rule(a, b)

    def same_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        self.batches.append(len(pairs))
        return [rule(a, b) for a, b in pairs]

    def same_quick(self, pairs: Sequence[tuple[str, str]]) -> list[bool | None]:
        return [True if a == b else None for a, b in pairs]


def answers(rng: random.Random) -> list[str | None]:
    pool = [str(n) for n in range(12)] + [None, "", "  "]
    return [rng.choice(pool) for _ in range(rng.randint(0, 16))]


def test_a_settled_vote_asks_nothing_more_and_is_the_graders_vote() -> None:
    rng = random.Random(3)
    for _ in range(400):
        voted = answers(rng)
        grader = Batching()
        memo = SameMemo(grader)
        memo.settle(memo.unsettled(metrics.vote_pairs(voted)))
        assert len(grader.batches) <= 1
        settled = metrics.majority_vote(voted, memo)
        assert grader.single == 0  # every pair the vote asked was settled
        plain = metrics.majority_vote(voted, rule)
        assert settled == plain, voted


def test_the_solipsism_pairs_are_every_pair_the_rate_asks() -> None:
    rng = random.Random(4)
    for _ in range(200):
        cases = [(rng.choice(["1", "4", "9", None, ""]), answers(rng)) for _ in range(5)]
        grader = Batching()
        memo = SameMemo(grader)
        memo.settle(metrics.solipsism_pairs(cases))
        assert metrics.solipsism_rate(cases, same=memo) == metrics.solipsism_rate(cases, same=rule)
        assert grader.single == 0


def test_the_memo_is_the_graders_same_and_stays_bounded() -> None:
    grader = Batching()
    memo = SameMemo(grader, size=10)
    pairs = [(str(a), str(b)) for a in range(8) for b in range(8)]
    for a, b in pairs:
        assert memo(a, b) == rule(a, b)
        assert len(memo._known) <= 10
    assert grader.single == len(pairs)
    assert memo.unsettled([("5", "5"), ("5", "5"), ("1", "4")]) == [("1", "4")]
    memo.settle([("1", "4"), ("4", "1"), ("1", "4")])
    assert grader.batches == [2]  # distinct pairs, one batch
    grader.single = 0
    assert memo("1", "4")
    assert memo("4", "1")
    assert grader.single == 0


async def test_a_context_settles_in_a_thread_only_what_is_left() -> None:
    grader = Batching()
    ctx = Context(Any, Any, Any, str, SameMemo(grader))  # type: ignore[arg-type]
    await ctx.compare([("3", "3"), ("3", "6"), ("6", "9")])
    assert grader.batches == [2]
    await ctx.compare([("3", "6")])
    assert grader.batches == [2]  # known: no batch
    plain = Context(Any, Any, Any, str, rule)  # type: ignore[arg-type]
    await plain.compare([("3", "6")])  # a plain `same`: nothing to settle


def labelled_pairs() -> list[tuple[str, str]]:
    """(gold, restated answer) of the labelled cases, and each gold against another."""
    pairs = []
    golds = []
    for line in (DATA / "math_cases.jsonl").read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        golds.append(case["gold"])
        boxed = case["response"].rpartition("\\boxed{")[2].rpartition("}")[0]
        if boxed:
            pairs.append((case["gold"], boxed))
    pairs += list(zip(golds, golds[1:] + golds[:1], strict=True))
    return pairs[:400]


def test_the_math_graders_batch_is_its_same_with_one_pool_round_trip() -> None:
    pairs = labelled_pairs()
    with MathGrader(MathCheck(workers=2, timeout_s=5)) as grader:
        one_by_one = [grader.same(a, b) for a, b in pairs]
    with MathGrader(MathCheck(workers=2, timeout_s=5)) as grader:
        quick = grader.same_quick(pairs)
        assert [q for q in quick if q is not None] == [
            s for s, q in zip(one_by_one, quick, strict=True) if q is not None
        ]
        calls = 0
        check = grader._pool.check

        def counted(keys: list[Any]) -> Any:
            nonlocal calls
            calls += 1
            return check(keys)

        grader._pool.check = counted  # type: ignore[method-assign,assignment]
        assert grader.same_many(pairs) == one_by_one
        assert calls == 1
        assert any(q is None for q in quick)  # some pairs did need the pool
        assert sum(one_by_one) > 50


class PoolModel:
    """A reward model whose grades extract the given answers, and whose grader batches."""

    def __init__(self, voted: list[str | None], grader: Batching) -> None:
        self.voted, self._grader = voted, grader

    def grades(self, items: Any, *, kind: str) -> list[Any]:
        from pacore.graders.base import Grade

        return [Grade.decided(a == "3", a, "") for a in self.voted]

    def grader(self, kind: str) -> Batching:
        return self._grader


def test_a_training_pool_is_clustered_with_one_batch() -> None:
    """`train.analysis.grade_pool` clusters a pool's answers as the grader's own `same`
    would, asking its pairs in one batch."""
    from pacore.train.analysis import NO_ANSWER, grade_pool
    from pacore.train.records import PoolRecord

    rng = random.Random(5)
    for _ in range(50):
        voted = [rng.choice([str(n) for n in range(9)] + [None]) for _ in range(12)]
        grader = Batching()
        record = PoolRecord("p", ({"role": "user", "content": "Q?"},), tuple("x" * 12), "3")
        pooled = grade_pool(record, "math", PoolModel(voted, grader))
        expected = metrics.cluster_answers(voted, rule)
        numbers = [NO_ANSWER] * len(voted)
        for number, members in enumerate(expected):
            for i in members:
                numbers[i] = number
        assert list(pooled.clusters) == numbers
        assert grader.single == 0
        assert len(grader.batches) <= 1
