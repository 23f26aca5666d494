"""`examples/reproduce.sh --dry-run`: every hand-off of the paper's two-stage training.

The real script serves checkpoints with vLLM and trains with verl's PPO on GPUs; the dry
run serves the embedded model and lets TRL GRPO stand in for verl (a few steps of a tiny
random model here, so it takes a minute or two). What it checks is what passes between
the steps: the files, their formats, and the flags, the verl commands included, which
are composed with verl's real hydra config.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pacore.train.records import read_pool
from tests.train.tiny_lm import tiny_model, tiny_tokenizer

pytestmark = pytest.mark.trl

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "reproduce.sh"


def _verl_args(script: Path) -> list[str]:
    argv = shlex.split(script.read_text().replace("\\\n", " "))
    assert argv[:3] == ["python", "-m", "verl.trainer.main_ppo"]
    return argv[3:]


def _compose(overrides: list[str]) -> Any:
    import verl
    from hydra import compose, initialize_config_dir

    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


def test_the_dry_run_passes_every_hand_off(tmp_path: Path) -> None:
    model = tmp_path / "base"
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer).save_pretrained(model)
    tokenizer.save_pretrained(model)
    work = tmp_path / "work"
    env = {
        **os.environ,
        "WORK": str(work),
        "MODEL": str(model),
        "PACORE": f"{sys.executable} -m pacore",
        "PYTHON": sys.executable,
        "PACORE_UNSAFE_SANDBOX": "1",
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "6/6" in done.stderr

    pool = list(read_pool(work / "pool.jsonl"))
    assert len(pool) == 4
    assert all(r.sampled == 4 for r in pool)  # truncated ones counted: stage 1's denominator
    assert (work / "stage1.jsonl.counts.json").exists()
    stats = json.loads((work / "stage1.parquet.stats.json").read_text())
    assert stats["rows"] >= 1
    assert stats["prompt_tokens"]["counted_with"] == f"tokenizer {model}"
    assert (work / "hf" / "stage1" / "config.json").exists()
    stage2 = json.loads((work / "stage2.jsonl.counts.json").read_text())
    assert stage2["settings"]["samples"] == 2
    assert (work / "stage2.parquet").exists()
    assert (work / "hf" / "stage2" / "model.safetensors").exists()

    first = _compose(_verl_args(work / "stage1.verl.sh"))
    assert first.data.train_files == str(work / "stage1.parquet")
    assert first.data.max_prompt_length == stats["budget"]
    assert first.trainer.default_local_dir == str(work / "ckpt" / "stage1")
    second = _compose(_verl_args(work / "stage2.verl.sh"))
    start = work / "ckpt" / "stage2-start" / "global_step_2"
    assert second.trainer.resume_mode == "resume_path"
    assert second.trainer.resume_from_path == str(start)
    assert second.trainer.total_training_steps == 2 + 1
    assert (start / "actor").resolve() == (work / "ckpt" / "stage1" / "global_step_2" / "actor")
    assert not (start / "data.pt").exists()
