"""Episodes: M per (problem, epoch), and the same prompt text as inference."""

from __future__ import annotations

import pytest

from pacore.core.compaction import compact
from pacore.core.prompts import render_default, synthesis_messages
from pacore.errors import ConfigError
from pacore.train.episodes import draw_references, draw_size, episode, episode_messages
from pacore.train.records import PoolRecord
from pacore.types import Completion

POOL = PoolRecord(
    id="prob-1",
    conversation=(
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "What is 6*7?"},
    ),
    responses=tuple(f"<think>thinking {i}</think>The answer is \\boxed{{{i}}}." for i in range(24)),
    ground_truth="42",
)


def test_size_is_uniform_in_range_and_seeded() -> None:
    sizes = [draw_size(f"p{i}", 0) for i in range(400)]
    assert min(sizes) == 16
    assert max(sizes) == 24
    assert draw_size("p", 3) == draw_size("p", 3)
    assert {draw_size("p", 0, 4, 4, seed=s) for s in range(5)} == {4}
    with pytest.raises(ConfigError):
        draw_size("p", 0, 5, 4)
    with pytest.raises(ConfigError):
        draw_size("p", 0, 0, 4)


def test_same_m_within_a_group() -> None:
    # Every sample of one RL group builds its episode independently: all see the same M.
    group = [draw_references(POOL, epoch=2) for _ in range(64)]
    assert all(refs == group[0] for refs in group)
    assert 16 <= len(group[0]) <= 24
    assert len(set(group[0])) == len(group[0])  # drawn without replacement


def test_new_m_across_epochs_and_seeds() -> None:
    draws = {tuple(draw_references(POOL, epoch=e)) for e in range(10)}
    assert len(draws) == 10
    assert draw_references(POOL, 0, seed=1) != draw_references(POOL, 0, seed=2)


def test_size_capped_at_pool() -> None:
    small = PoolRecord("s", POOL.conversation, POOL.responses[:3], "1")
    assert sorted(draw_references(small, 0, lo=8, hi=16)) == sorted(small.responses)


def test_prompt_is_the_inference_prompt() -> None:
    refs = draw_references(POOL, epoch=0, lo=4, hi=4)
    got = episode_messages(POOL, refs)
    # What the engine sends: each trajectory compacted, then the template function.
    messages = [compact(Completion(text=r), "conclusion") for r in refs]
    assert got == synthesis_messages(POOL.conversation, messages, render_default)
    assert got[0] == {"role": "system", "content": "be brief"}
    text = got[1]["content"]
    assert text.startswith("You are given a problem and a list of reference responses.")
    assert "Original Problem:\nWhat is 6*7?\n" in text
    assert "thinking" not in text  # compacted: reasoning dropped
    assert "Reference 4:\nThe answer is" in text
    assert episode(POOL, 0, lo=4, hi=4) == got


def test_compaction_modes_and_blank_references() -> None:
    refs = ["<think>x</think>\\boxed{7}", "<think>only thinking</think>   "]
    answer = episode_messages(POOL, refs, compaction="answer")
    assert "Reference 1:\n7\n" in answer[1]["content"]
    assert "Reference 2" not in answer[1]["content"]  # blank after compaction: dropped
    full = episode_messages(POOL, refs, compaction="full")
    assert "only thinking" in full[1]["content"]
    assert episode_messages(POOL, ["<think>a</think>"]) == list(POOL.conversation)
    with pytest.raises(ConfigError, match="unknown compaction"):
        episode_messages(POOL, refs, compaction="summary")
