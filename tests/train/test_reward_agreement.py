"""The trainers agree on the environment: the same gold, the same reward kind and the
same message set, whether the curriculum, the verl export and reward, or TRL's rows and
reward function build it.

Labels come from the construction: a completion boxing the gold's value is right, one
boxing another value wrong; a program that computes the tests' outputs passes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pacore.errors import ConfigError
from pacore.train.episodes import draw_indices, episode, episode_messages, usable_pool
from pacore.train.records import PoolRecord
from pacore.train.rewards import RewardModel
from pacore.train.trl import episode_rows, reward_function
from pacore.train.verl import compute_score, export_verl

QUESTION = ({"role": "user", "content": "What is the value?"},)

# A gold of value 5 in every shape a pool may hold it, with what answers it.
GOLDS: list[tuple[str, Any]] = [
    ("text", "5"),
    ("number", 5),
    ("list", ["5"]),
    ("record answer", {"answer": "5"}),
    ("record ground_truth", {"ground_truth": "5"}),
]


@pytest.fixture(scope="module")
def model() -> Iterator[RewardModel]:
    pytest.importorskip("math_verify")
    with RewardModel() as m:
        yield m


def _pool(gold: Any, pid: str = "p") -> PoolRecord:
    responses = tuple(f"<think>try {j}</think>So \\boxed{{{5 + j % 2}}}." for j in range(16))
    return PoolRecord(id=pid, conversation=QUESTION, responses=responses, ground_truth=gold)


def _verl_rows(records: list[PoolRecord], tmp_path: Path, **kw: Any) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    out = tmp_path / "rows.parquet"
    export_verl(records, out, lo=4, hi=8, **kw)
    return list(pq.read_table(out).to_pylist())


@pytest.mark.parametrize(("shape", "gold"), GOLDS, ids=[s for s, _ in GOLDS])
def test_every_trainer_rewards_a_gold_of_any_shape_alike(
    shape: str, gold: Any, model: RewardModel, tmp_path: Path
) -> None:
    """A record gold (`{"answer": "5"}`) was exported as its JSON text, which the verl and
    TRL rewards then read as the answer: the curriculum graded `\\boxed{5}` right, both
    trainers 0."""
    record = _pool(gold)
    (row,) = _verl_rows([record], tmp_path)
    (trl_row,) = episode_rows([record], lo=4, hi=8)
    score = reward_function()
    for value, right in (("5", 1.0), ("6", 0.0)):
        completion = f"<think>x</think>So \\boxed{{{value}}}."
        curriculum = model.grades([(completion, gold)], kind="math")[0].score
        verl = compute_score(
            row["data_source"], completion, row["reward_model"]["ground_truth"], row["extra_info"]
        )["score"]
        trl = score(
            [trl_row["prompt"]],
            [completion],
            ground_truth=[trl_row["ground_truth"]],
            kind=[trl_row["kind"]],
        )[0]
        assert (curriculum, verl, trl) == (right, right, right), shape
    assert row["extra_info"]["ref_scores"][:2] == [1.0, 0.0]  # the analyses' grades agree


def test_a_problem_without_a_gold_is_refused_not_rewarded_for_null(tmp_path: Path) -> None:
    """A gold of None was exported as the text `null`, and `\\boxed{null}` earned 1."""
    record = _pool(None)
    with pytest.raises(ConfigError, match="no gold answer"):
        _verl_rows([record], tmp_path)
    assert not (tmp_path / "rows.parquet").exists()
    with pytest.raises(ConfigError, match="1 problem"):
        episode_rows([_pool("5", "ok"), record], lo=4, hi=8)


def test_grpo_rewards_code_problems_as_code() -> None:
    """`pacore train grpo` without `--grader` rewarded every row with the math grader: a
    right program scored 0. Each row now carries its problem's kind."""
    pytest.importorskip("math_verify")
    tests = [{"input": "3\n", "output": "9\n"}, {"input": "4\n", "output": "16\n"}]
    right = "```python\nn = int(input())\nprint(n * n)\n```"
    wrong = "```python\nn = int(input())\nprint(n + n)\n```"
    code = PoolRecord("c", QUESTION, tuple([right] * 4), tests)
    math = _pool("5", "m")
    rows = episode_rows([code, math], lo=4, hi=4)
    assert [r["kind"] for r in rows] == ["code", "math"]
    score = reward_function()
    columns = {"ground_truth": [r["ground_truth"] for r in rows], "kind": [r["kind"] for r in rows]}
    prompts = [r["prompt"] for r in rows]
    assert score(prompts, [right, "\\boxed{5}"], **columns) == [1.0, 1.0]
    assert score(prompts, [wrong, "\\boxed{6}"], **columns) == [0.0, 0.0]


def _references(messages: list[dict[str, str]]) -> list[str]:
    return re.findall(r"So \\boxed\{\d+\}\.", messages[-1]["content"])


def test_every_trainer_draws_m_from_the_responses_it_can_pass_on() -> None:
    """A pool of 24 with 4 responses blank once compacted: stage 2 and TRL drew M over all
    24 and dropped the blanks after, so |M| fell below its range and differed from the
    verl export's M (drawn over the 20 usable)."""
    responses = tuple(
        f"<think>r{j}</think>" + ("  " if j % 6 == 1 else f"So \\boxed{{{j}}}.") for j in range(24)
    )
    record = PoolRecord("x", QUESTION, responses, "0")
    usable = usable_pool(record)
    assert len(usable.responses) == 20
    rows = episode_rows([record], epochs=8, lo=16, hi=20)
    for epoch in range(8):
        verl = episode_messages(
            usable, [usable.responses[i] for i in draw_indices(usable, epoch, lo=16, hi=20)]
        )
        stage2 = episode(record, epoch, lo=16, hi=20)
        assert stage2 == verl == rows[epoch]["prompt"]
        assert 16 <= len(_references(stage2)) <= 20
