"""verl glue, loaded the way verl's trainer loads it: its own dataset class and loaders.

verl's PPO trainer needs a GPU, so these tests stop at what its trainer does first on
the driver: read the Parquet, build the dataset from `data.custom_cls`, load the reward
from `reward.custom_reward_function`, and call both.
"""

from __future__ import annotations

import shlex
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from pacore.cli.train_rl import add_parsers
from pacore.train.episodes import episode
from pacore.train.records import PoolRecord
from pacore.train.verl import compute_score, export_verl, verl_command
from tests.train.tiny_lm import tiny_tokenizer

pytestmark = pytest.mark.verl


def _records(count: int = 3, pool: int = 24) -> list[PoolRecord]:
    return [
        PoolRecord(
            id=f"p{i}",
            conversation=({"role": "user", "content": f"What is {i} + 1?"},),
            responses=tuple(
                f"<think>try {j}</think>The answer is \\boxed{{{i + 1 + j % 3}}}."
                for j in range(pool)
            ),
            ground_truth=str(i + 1),
        )
        for i in range(count)
    ]


def _config(**data: Any) -> Any:
    from omegaconf import OmegaConf

    base = {"max_prompt_length": 100_000, "filter_overlong_prompts": False, "shuffle": False}
    return OmegaConf.create({**base, **data})


@pytest.fixture
def parquet(tmp_path: Path) -> Path:
    out = tmp_path / "data.parquet"
    assert export_verl(_records(), out) == 3
    return out


def test_verl_reads_the_export_with_its_own_dataset(parquet: Path, tmp_path: Path) -> None:
    from verl.utils.dataset.rl_dataset import RLHFDataset

    data = RLHFDataset(str(parquet), tiny_tokenizer(), _config(cache_dir=str(tmp_path)))
    assert len(data) == 3
    item = data[1]
    record = _records()[1]
    assert item["raw_prompt"] == episode(record, 0)
    assert item["data_source"] == "pacore/math"
    assert item["reward_model"] == {"style": "rule", "ground_truth": "2"}
    assert item["extra_info"]["responses"] == list(record.responses)
    assert item["index"] == 1


def test_the_dataset_class_and_reward_load_through_verls_loaders(
    parquet: Path, tmp_path: Path
) -> None:
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.trainer.ppo.utils import create_rl_dataset

    pkg = "pkg://pacore.train.verl"
    data_config = _config(
        cache_dir=str(tmp_path), custom_cls={"path": pkg, "name": "PacoreDataset"}
    )
    data = create_rl_dataset([str(parquet)], data_config, tiny_tokenizer(), None)
    assert type(data).__name__ == "PacoreDataset"
    record = _records()[0]
    epoch0, again0 = data[0]["raw_prompt"], data[0]["raw_prompt"]
    assert epoch0 == episode(record, 0)  # the first load is epoch 0: the exported prompt
    assert again0 == episode(record, 1)  # the second load of a row is its next epoch
    assert again0 != epoch0
    assert data[1]["raw_prompt"] == episode(_records()[1], 0)  # rows count separately

    config = OmegaConf.create(
        {"reward": {"custom_reward_function": {"path": pkg, "name": "compute_score"}}}
    )
    score = get_custom_reward_fn(config)
    assert score is not None
    item = data[2]
    truth = item["reward_model"]["ground_truth"]
    args = (item["data_source"], "so \\boxed{3}", truth)
    assert score(*args, extra_info=item["extra_info"]) == 1.0
    assert score(item["data_source"], "so \\boxed{4}", truth, extra_info=item["extra_info"]) == 0.0
    assert score(item["data_source"], "\x00" * 1000, truth) == 0.0


def test_compute_score_reads_the_kind_from_the_data_source() -> None:
    assert compute_score("pacore/math", "\\boxed{12}", "12") == 1.0
    assert compute_score("something/else", "\\boxed{12}", "12") == 1.0  # math by default
    assert compute_score("pacore/math", "no answer", "12") == 0.0


def test_export_streams_in_row_groups(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    big = "x" * 20_000  # 24 responses of 20 kB: 480 kB a problem, 96 MB for 200

    def records() -> Any:
        for i in range(200):
            yield PoolRecord(
                id=f"p{i}",
                conversation=({"role": "user", "content": "q"},),
                responses=tuple(f"{big}{j} \\boxed{{{j}}}" for j in range(24)),
                ground_truth="1",
            )

    out = tmp_path / "big.parquet"
    tracemalloc.start()
    try:
        assert export_verl(records(), out) == 200
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 60_000_000  # a few row groups at a time, never the whole 96 MB
    handle = pq.ParquetFile(out)
    assert handle.metadata.num_rows == 200
    assert handle.metadata.num_row_groups > 1
    assert set(handle.schema_arrow.names) == {
        "data_source",
        "prompt",
        "ability",
        "reward_model",
        "extra_info",
    }


def test_export_refuses_a_pool_smaller_than_an_episode(tmp_path: Path) -> None:
    from pacore.errors import ConfigError

    with pytest.raises(ConfigError, match="fewer than the 16"):
        export_verl(_records(pool=8), tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_the_command_composes_with_verls_config_and_has_the_papers_settings() -> None:
    import verl
    from hydra import compose, initialize_config_dir

    argv = verl_command("/data/train.parquet", model="/models/base", nnodes=4)
    assert argv[:3] == ["python", "-m", "verl.trainer.main_ppo"]
    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=argv[3:])
    assert cfg.algorithm.adv_estimator == "gae"
    assert (cfg.algorithm.gamma, cfg.algorithm.lam) == (1.0, 1.0)
    assert cfg.algorithm.use_kl_in_reward is False
    assert cfg.actor_rollout_ref.actor.use_kl_loss is False
    assert cfg.data.train_batch_size == 16
    assert cfg.actor_rollout_ref.actor.ppo_mini_batch_size == 16
    assert cfg.actor_rollout_ref.actor.ppo_epochs == 1
    rollout = cfg.actor_rollout_ref.rollout
    assert (rollout.n, rollout.temperature, rollout.top_p) == (64, 1.0, 1.0)
    assert cfg.data.max_prompt_length + cfg.data.max_response_length == 131_072
    assert cfg.data.max_prompt_length >= 24 * 1024
    assert cfg.data.custom_cls.name == "PacoreDataset"
    assert cfg.reward.custom_reward_function.path == "pkg://pacore.train.verl"
    assert cfg.critic.model.path == "/models/base"
    assert cfg.trainer.nnodes == 4


def test_cli_export_and_verl_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from pacore.train.records import write_pool

    pool = tmp_path / "kept.jsonl"
    write_pool(pool, _records())
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    out = tmp_path / "data.parquet"
    args = parser.parse_args(
        ["export", "--format", "verl", "--input", str(pool), "--out", str(out)]
    )
    assert args.rl_command(args) == 0
    assert out.exists()
    args = parser.parse_args(["verl-command", "--data", str(out)])
    assert args.rl_command(args) == 0
    printed = shlex.split(capsys.readouterr().out.replace("\\\n", " "))
    assert printed[-len(verl_command(str(out))) :] == verl_command(str(out))
