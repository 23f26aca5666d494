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
from pacore.train.budget import minimum_episode
from pacore.train.episodes import episode, episode_messages
from pacore.train.records import PoolRecord
from pacore.train.verl import compute_score, export_verl, read_stats, verl_command
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
    assert export_verl(_records(), out).rows == 3
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
    assert score(*args, extra_info=item["extra_info"])["score"] == 1.0
    wrong = score(item["data_source"], "so \\boxed{4}", truth, extra_info=item["extra_info"])
    assert wrong["score"] == 0.0
    assert score(item["data_source"], "\x00" * 1000, truth)["score"] == 0.0


def test_compute_score_reads_the_kind_from_the_data_source() -> None:
    assert compute_score("pacore/math", "\\boxed{12}", "12")["score"] == 1.0
    assert compute_score("something/else", "\\boxed{12}", "12")["score"] == 1.0  # math
    assert compute_score("pacore/math", "no answer", "12")["score"] == 0.0


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
        assert export_verl(records(), out, kind="exact").rows == 200  # a cheap grader
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


def _compose(argv: list[str]) -> Any:
    import verl
    from hydra import compose, initialize_config_dir

    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=argv[3:])


def test_the_command_checkpoints_and_sets_the_learning_rates() -> None:
    """Issue 19: no checkpoint was ever saved, the learning rates were verl's defaults,
    and validation ran on the training file."""
    cfg = _compose(verl_command("/d/train.parquet", model="/m", checkpoints="/ckpt/s1"))
    trainer = cfg.trainer
    assert trainer.save_freq == 50
    assert trainer.default_local_dir == "/ckpt/s1"
    assert trainer.resume_mode == "auto"  # a crashed stage 1 continues from its latest
    assert trainer.total_training_steps == 250
    optim = cfg.actor_rollout_ref.actor.optim
    assert (optim.lr, optim.lr_warmup_steps) == (1e-6, 50)
    assert (cfg.critic.optim.lr, cfg.critic.optim.lr_warmup_steps) == (5e-6, 50)
    assert trainer.test_freq == -1
    assert trainer.val_before_train is False
    assert "truncation" not in " ".join(verl_command("/d/train.parquet"))  # never read by verl

    cfg = _compose(verl_command("/d/train.parquet", val_data="/d/aime.parquet"))
    assert cfg.data.val_files == "/d/aime.parquet"
    assert (cfg.trainer.test_freq, cfg.trainer.val_before_train) == (10, True)


def test_stage_2_resumes_the_stage_1_checkpoint_in_verls_config() -> None:
    from pacore.errors import ConfigError

    argv = verl_command(
        "/d/stage2.parquet",
        model="/hf/stage1",
        stage=2,
        resume_from="/ckpt/s1/global_step_250",
        checkpoints="/ckpt/s2",
    )
    cfg = _compose(argv)
    assert cfg.trainer.resume_mode == "resume_path"
    assert cfg.trainer.resume_from_path == "/ckpt/s1/global_step_250"
    assert cfg.trainer.total_training_steps == 250 + 450
    assert cfg.trainer.default_local_dir == "/ckpt/s2"
    assert cfg.trainer.experiment_name == "stage2"
    assert cfg.data.train_files == "/d/stage2.parquet"
    with pytest.raises(ConfigError, match="--resume-from"):
        verl_command("/d/x.parquet", stage=2)
    with pytest.raises(ConfigError, match="global_step_N"):
        verl_command("/d/x.parquet", stage=2, resume_from="/ckpt/s1")
    with pytest.raises(ConfigError, match="no room"):
        verl_command("/d/x.parquet", max_prompt_length=131_000)


def _long_records(count: int = 4, pool: int = 24) -> list[PoolRecord]:
    return [
        PoolRecord(
            id=f"q{i}",
            conversation=({"role": "user", "content": f"Problem {i} 1 or 2 ?"},),
            responses=tuple(
                "the answer is " + "1 " * (3 + (7 * j) % 40) + f"\\boxed{{{1 + (i + j) % 2}}}"
                for j in range(pool)
            ),
            ground_truth=str(1 + i % 2),
        )
        for i in range(count)
    ]


def _token_ids(tokenizer: Any, messages: Any) -> list[int]:
    from verl.utils.tokenizer import normalize_token_ids

    ids = tokenizer.apply_chat_template(
        [dict(m) for m in messages], add_generation_prompt=True, tokenize=True
    )
    return list(normalize_token_ids(ids))


def test_prompts_fit_the_budget_through_verls_loader_with_the_problem_whole(
    tmp_path: Path,
) -> None:
    """Issue 19: verl cut over-long prompts from the left, and the problem went first."""
    from verl.trainer.ppo.utils import create_rl_dataset

    records = _long_records()
    giant = PoolRecord(
        id="giant",
        conversation=({"role": "user", "content": "Problem " * 3000 + "1 or 2 ?"},),
        responses=records[0].responses,
        ground_truth="1",
    )
    out = tmp_path / "data.parquet"
    report = export_verl([*records, giant], out, min_refs=4)
    assert report.rows == 5
    tokenizer = tiny_tokenizer()
    budget = min(len(_token_ids(tokenizer, episode(r, e))) for r in records for e in range(3))
    budget -= 1  # every draw of every epoch is over it
    shortest = max(len(_token_ids(tokenizer, minimum_episode(r, 4, "conclusion"))) for r in records)
    assert shortest <= budget  # yet each problem fits with its 4 shortest references
    data_config = _config(
        cache_dir=str(tmp_path),
        max_prompt_length=budget,
        filter_overlong_prompts=True,
        custom_cls={"path": "pkg://pacore.train.verl", "name": "PacoreDataset"},
    )
    data = create_rl_dataset([str(out)], data_config, tokenizer, None)
    assert len(data) == 4  # the giant problem cannot fit at all: left out at load
    for _epoch in range(3):
        for index, record in enumerate(records):
            item = data[index]
            assert len(_token_ids(tokenizer, item["raw_prompt"])) <= budget
            assert item["raw_prompt"][-1]["content"].find(record.question) >= 0
            picks = item["extra_info"]["refs"]
            assert len(picks) >= 4
            assert all(record.responses[i].split()[-1] in str(item["raw_prompt"]) for i in picks)
    counts = data.fit_counts()
    assert counts["loads"] == 12
    assert counts["trimmed"] == 12
    assert counts["references_dropped"] > 12


def test_fit_episode_drops_whole_references_down_to_the_minimum() -> None:
    from pacore.train.budget import char_estimate, fit_episode

    record = _long_records(1)[0]
    picks = list(range(16))
    whole = fit_episode(record, picks, budget=10**6, min_refs=4, count=char_estimate)
    assert (whole.picks, whole.dropped, whole.fallback) == (picks, 0, False)
    tight = char_estimate(episode_messages(record, record.responses[:6])) + 1
    fitted = fit_episode(record, picks, budget=tight, min_refs=4, count=char_estimate)
    assert fitted.picks == picks[:6]  # the longest prefix that fits: draw order kept
    assert fitted.tokens <= tight
    floor = fit_episode(record, picks, budget=1, min_refs=4, count=char_estimate)
    assert floor.fallback
    assert len(floor.picks) == 4  # never below the minimum; the problem is never cut
    assert record.question in floor.messages[-1]["content"]


def test_one_export_mixes_math_and_code_and_skips_thin_pools(tmp_path: Path) -> None:
    """Issue 19: math and code needed separate files, and one thin pool aborted the export."""
    import json

    import pyarrow.parquet as pq

    from pacore.train.rewards import RewardModel
    from pacore.train.verl import stats_path

    cases = [{"input": "1 2\n", "output": "3\n"}]
    program = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    code = PoolRecord(
        id="c0",
        conversation=({"role": "user", "content": "Add two numbers."},),
        responses=(program,) * 16,
        ground_truth=cases,
    )
    blank = "<think>only thoughts</think>"  # nothing left once compacted: not usable
    thin = PoolRecord(
        id="thin",
        conversation=({"role": "user", "content": "1 or 2 ?"},),
        responses=(blank,) * 12 + ("\\boxed{1}",) * 12,
        ground_truth="1",
    )
    out = tmp_path / "mixed.parquet"
    with RewardModel(unsafe_sandbox=True) as model:
        report = export_verl([*_records(2), code, thin], out, model=model)
    assert (report.rows, report.skipped) == (3, 1)
    assert dict(report.kinds) == {"math": 2, "code": 1}
    rows = pq.read_table(out).to_pylist()
    assert [r["ability"] for r in rows] == ["math", "math", "code"]
    assert rows[2]["data_source"] == "pacore/code"
    assert rows[2]["extra_info"]["ref_scores"] == [1.0] * 16
    truth = rows[2]["reward_model"]["ground_truth"]
    result = compute_score("pacore/code", program, truth, extra_info=rows[2]["extra_info"])
    assert result["score"] == 1.0
    stats = json.loads(stats_path(out).read_text())
    assert stats["rows"] == 3
    assert stats["skipped"] == 1
    assert stats["kinds"] == {"code": 1, "math": 2}
    worst = stats["prompt_tokens"]["worst"]
    assert worst["count"] == 3
    assert worst["min"] <= worst["p50"] <= worst["max"]
    assert stats["budget"] % 256 == 0
    assert stats["budget"] >= worst["max"]


def test_the_reward_reports_emergent_correctness_and_agreement(tmp_path: Path) -> None:
    """verl's reward_extra_info: the paper's Fig. 3 and Fig. 5 signals per rollout."""
    import pyarrow.parquet as pq

    from pacore.train.episodes import draw_indices

    record = PoolRecord(
        id="e",
        conversation=({"role": "user", "content": "1 or 2 ?"},),
        responses=("so \\boxed{7}",) * 20 + ("so \\boxed{5}",) * 4,
        ground_truth="5",
    )
    out = tmp_path / "e.parquet"
    export_verl([record], out, lo=16, hi=16)
    info = pq.read_table(out).to_pylist()[0]["extra_info"]
    picks = draw_indices(record, 0, lo=16, hi=16)
    right_refs = sum(i >= 20 for i in picks)
    right = compute_score("pacore/math", "\\boxed{5}", "5", extra_info=info)
    assert right == {
        "score": 1.0,
        "emergent": 1.0,  # right while the majority (7) is wrong
        "ref_accuracy": right_refs / 16,
        "majority_right": 0.0,
        "majority_agreement": 0.0,
    }
    copied = compute_score("pacore/math", "\\boxed{7}", "5", extra_info=info)
    assert (copied["score"], copied["emergent"], copied["majority_agreement"]) == (0.0, 0.0, 1.0)
    # the references the dataset recorded for this load are the ones analysed
    import numpy as np

    arrays = {k: np.array(v) if isinstance(v, list) else v for k, v in info.items()}
    assert compute_score("pacore/math", "\\boxed{5}", "5", extra_info=arrays) == right
    recorded = {**info, "refs": [20, 21]}
    minority = compute_score("pacore/math", "\\boxed{5}", "5", extra_info=recorded)
    assert (minority["emergent"], minority["ref_accuracy"], minority["majority_agreement"]) == (
        0.0,
        1.0,
        1.0,
    )


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
    assert "3 problems (3 math)" in capsys.readouterr().out
    args = parser.parse_args(["verl-command", "--data", str(out)])
    assert args.rl_command(args) == 0
    printed = shlex.split(capsys.readouterr().out.replace("\\\n", " "))
    stats = read_stats(out)
    assert stats is not None
    budget = stats["budget"]  # sized from the export's prompts
    assert f"data.max_prompt_length={budget}" in printed
    assert printed == verl_command(str(out), max_prompt_length=budget)
    args = parser.parse_args(["verl-command", "--data", str(out), "--max-prompt-length", "4096"])
    assert args.rl_command(args) == 0
    assert "data.max_prompt_length=4096" in capsys.readouterr().out
    argv = ["verl-command", "--data", str(out), "--stage", "2"]
    args = parser.parse_args([*argv, "--resume-from", "/c/global_step_250"])
    assert args.rl_command(args) == 0
    assert "trainer.resume_from_path=/c/global_step_250" in capsys.readouterr().out
    from pacore.errors import ConfigError

    bad = tmp_path / "bad.parquet"
    args = parser.parse_args(
        ["export", "--format", "verl", "--input", str(pool), "--out", str(bad), "--grader", "x"]
    )
    with pytest.raises(ConfigError, match="unknown grader"):  # checked against the registry
        args.rl_command(args)
    assert not bad.exists()
