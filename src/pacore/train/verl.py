"""PaCoRe's synthesis environment for verl: the Parquet export, the dataset class, the reward.

verl owns the distributed PPO (Ray, vLLM or SGLang rollouts, FSDP or Megatron); this
module owns what is PaCoRe-specific, wired in through verl's own config keys:

    data.custom_cls.path=pkg://pacore.train.verl          data.custom_cls.name=PacoreDataset
    reward.custom_reward_function.path=pkg://pacore.train.verl
    reward.custom_reward_function.name=compute_score

`export_verl` writes one row per problem with verl's columns (`data_source`, `prompt`,
`ability`, `reward_model`, `extra_info`); `extra_info` holds the problem and its whole
pool, so `PacoreDataset` can draw a new message set M for every (problem, epoch) with the
same `draw_references` and `episode_messages` as everywhere else. The `prompt` column is
epoch 0's episode, so verl's plain `RLHFDataset` also trains on the file (with M fixed).

verl and its dependencies (torch, transformers, datasets) are imported only by
`PacoreDataset`; the export needs pyarrow, the reward needs only the graders.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pacore.errors import ConfigError
from pacore.graders import GRADER_NAMES, grader_name
from pacore.io.atomic import atomic_output
from pacore.io.formats import VERL
from pacore.io.guard import check_output, first_record_owned
from pacore.io.tables import batched, parquet_metadata, write_parquet
from pacore.train.episodes import draw_references, episode_messages
from pacore.train.records import PoolRecord
from pacore.train.rewards import has_tests, reward

INSTALL_VERL = "pip install 'pacore[verl]'"
DATA_SOURCE = "pacore"
"""`data_source` of exported rows; verl groups validation metrics by it."""
BATCH_ROWS = 16
"""Rows buffered before a Parquet row group is written: memory is bounded by this many
pools, whatever the number of problems."""


def _schema() -> Any:
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema(
        [
            ("data_source", pa.string()),
            ("prompt", pa.list_(message)),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
            (
                "extra_info",
                pa.struct(
                    [
                        ("index", pa.int64()),
                        ("id", pa.string()),
                        ("kind", pa.string()),
                        ("conversation", pa.list_(message)),
                        ("responses", pa.list_(pa.string())),
                        ("lo", pa.int64()),
                        ("hi", pa.int64()),
                        ("seed", pa.int64()),
                        ("compaction", pa.string()),
                    ]
                ),
            ),
        ]
    )


def _text(message: Any) -> dict[str, str]:
    from pacore.core.prompts import message_text

    return {"role": str(message.get("role")), "content": message_text(message)}


def _ground_truth_text(truth: Any) -> str:
    """verl's `reward_model.ground_truth` is a string: a gold answer as is, anything else
    (code tests) as JSON, which `compute_score` decodes for code."""
    return truth if isinstance(truth, str) else json.dumps(truth, ensure_ascii=False)


def verl_row(
    record: PoolRecord,
    index: int,
    *,
    kind: str = "math",
    lo: int = 16,
    hi: int = 24,
    seed: int = 0,
    compaction: str = "conclusion",
) -> dict[str, Any]:
    """One problem as a row of verl's dataset format; `prompt` is epoch 0's episode."""
    references = draw_references(record, 0, lo=lo, hi=hi, seed=seed)
    prompt = episode_messages(record, references, compaction=compaction)
    return {
        "data_source": f"{DATA_SOURCE}/{kind}",
        "prompt": [_text(m) for m in prompt],
        "ability": kind,
        "reward_model": {"style": "rule", "ground_truth": _ground_truth_text(record.ground_truth)},
        "extra_info": {
            "index": index,
            "id": record.id,
            "kind": kind,
            "conversation": [_text(m) for m in record.conversation],
            "responses": list(record.responses),
            "lo": lo,
            "hi": hi,
            "seed": seed,
            "compaction": compaction,
        },
    }


def export_verl(
    records: Iterable[PoolRecord],
    out: str | Path,
    *,
    kind: str = "math",
    lo: int = 16,
    hi: int = 24,
    seed: int = 0,
    compaction: str = "conclusion",
) -> int:
    """Write `records` as verl's Parquet to `out`, streaming; the number of rows written.

    Rows are written in row groups of `BATCH_ROWS`, so memory stays flat for any number
    of problems (8,000 x 24 responses included). Problems whose pool is smaller than `lo`
    cannot be episodes and are a `ConfigError`, as is a `kind` no grader has.
    """
    kind = grader_name(kind, tests=False)
    if importlib.util.find_spec("pyarrow") is None:
        raise ConfigError("the verl export needs pyarrow: " + INSTALL_VERL)
    out = Path(out)
    check_output(out, owned=first_record_owned(VERL), what="export")
    schema = _schema().with_metadata(parquet_metadata(VERL))
    count = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal count
        for record in records:
            if len(record.responses) < lo:
                raise ConfigError(
                    f"problem {record.id!r} has {len(record.responses)} responses, "
                    f"fewer than the {lo} an episode draws"
                )
            yield verl_row(record, count, kind=kind, lo=lo, hi=hi, seed=seed, compaction=compaction)
            count += 1

    with atomic_output(out) as tmp:
        write_parquet(tmp, schema, batched(rows(), BATCH_ROWS))
    return count


def record_from_extra_info(extra_info: dict[str, Any], ground_truth: Any) -> PoolRecord:
    """The pool record an exported row carries in `extra_info`."""
    return PoolRecord(
        id=str(extra_info["id"]),
        conversation=tuple(dict(m) for m in extra_info["conversation"]),
        responses=tuple(extra_info["responses"]),
        ground_truth=ground_truth,
    )


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> float:
    """verl's custom reward: PaCoRe's reward in [0, 1] for one response.

    The grader comes from `extra_info` (`ConfigError` when no grader has that name),
    else from `data_source` when it ends in a built-in grader's name (`pacore/code`),
    else from the ground truth: code when it is tests, math otherwise (`grader_name`).
    Code tests arrive as JSON text, which the reward reads. Never raises on model
    output (verl calls this from worker threads).
    """
    kind = (extra_info or {}).get("kind")
    if not kind:  # a row pacore did not export
        source = str(data_source).rpartition("/")[2].strip().lower()
        kind = source if source in GRADER_NAMES else None
    kind = grader_name(kind, tests=kind is None and has_tests(ground_truth))
    return float(reward(solution_str, ground_truth, kind=kind))


def _load_counter(size: int) -> Any:
    """Per-row load counts shared by the DataLoader's worker processes (a shared-memory
    array handed to them when they start), so every worker agrees on each row's epoch."""
    return multiprocessing.get_context().Array("q", max(size, 1))


def _rlhf_dataset() -> type[Any]:
    try:
        from verl.utils.dataset.rl_dataset import RLHFDataset
    except ImportError:
        raise ConfigError("the verl dataset class needs verl: " + INSTALL_VERL) from None
    cls: type[Any] = RLHFDataset
    return cls


def __getattr__(name: str) -> Any:
    # `PacoreDataset` subclasses verl's class, so it is built when first asked for:
    # importing this module (for the export or the reward) never imports verl or torch.
    if name == "PacoreDataset":
        cls = _make_dataset_class(_rlhf_dataset())
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _make_dataset_class(base: type[Any]) -> type[Any]:
    class PacoreDataset(base):  # type: ignore[misc]
        """verl's `RLHFDataset` over a PaCoRe export, with M re-drawn per (problem, epoch).

        The n-th load of a row is that row's epoch n (verl's sampler visits each row once
        per epoch), counted in shared memory so DataLoader workers agree. Every
        `rollout.n` response of a prompt shares one load, so one group sees one M. A
        resumed run counts from epoch 0 again. verl's config keys apply unchanged.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._loads = _load_counter(len(self))

        def epoch_of(self, item: int) -> int:
            """Count one more load of row `item`; the epoch this load belongs to."""
            with self._loads.get_lock():
                epoch = int(self._loads[item])
                self._loads[item] = epoch + 1
            return epoch

        def __getitem__(self, item: int) -> Any:
            self._epoch = self.epoch_of(item)
            return super().__getitem__(item)

        def _build_messages(self, example: dict[str, Any], key: str) -> Any:
            info = example.get("extra_info") or {}
            truth = (example.get("reward_model") or {}).get("ground_truth")
            if info.get("responses"):
                record = record_from_extra_info(info, truth)
                references = draw_references(
                    record,
                    getattr(self, "_epoch", 0),
                    lo=int(info["lo"]),
                    hi=int(info["hi"]),
                    seed=int(info["seed"]),
                )
                compaction = info.get("compaction") or "conclusion"
                example[key] = [
                    _text(m) for m in episode_messages(record, references, compaction=compaction)
                ]
            return super()._build_messages(example, key)

    PacoreDataset.__module__ = __name__
    PacoreDataset.__qualname__ = "PacoreDataset"
    return PacoreDataset


PAPER_STEPS = 250
"""Stage 1 of the paper's curriculum: 250 iterations (stage 2 adds 450)."""
MAX_TOKENS = 131_072
"""The paper's longest sequence, prompt and response together."""


def verl_command(
    data: str,
    *,
    model: str = "MODEL",
    critic: str | None = None,
    val_data: str | None = None,
    nnodes: int = 1,
    gpus_per_node: int = 8,
    hi: int = 24,
    reference_tokens: int = 1024,
    steps: int = PAPER_STEPS,
    rollout: str = "vllm",
) -> list[str]:
    """The `python -m verl.trainer.main_ppo` argv with the paper's settings.

    PPO with a critic and GAE (lambda = gamma = 1); 16 problems x `rollout.n=64`;
    temperature and top-p 1.0; strictly on-policy (one PPO epoch, mini-batch = batch);
    no KL in the reward or the loss; the prompt sized for `hi` compacted references of
    `reference_tokens` each plus the problem, the response for the rest of 131,072
    tokens; PaCoRe's dataset class and reward wired in through `pkg://`.
    """
    prompt_tokens = hi * reference_tokens + 2048
    response_tokens = MAX_TOKENS - prompt_tokens
    if response_tokens < 1024:
        raise ConfigError(
            f"{hi} references of {reference_tokens} tokens leave no room for a response "
            f"within {MAX_TOKENS} tokens"
        )
    batch = 16
    pkg = "pkg://pacore.train.verl"
    args = {
        "algorithm.adv_estimator": "gae",
        "algorithm.gamma": "1.0",
        "algorithm.lam": "1.0",
        "algorithm.use_kl_in_reward": "False",
        "data.train_files": data,
        "data.val_files": val_data or data,
        "data.train_batch_size": str(batch),
        "data.max_prompt_length": str(prompt_tokens),
        "data.max_response_length": str(response_tokens),
        "data.filter_overlong_prompts": "True",
        "data.truncation": "error",
        "data.custom_cls.path": pkg,
        "data.custom_cls.name": "PacoreDataset",
        "reward.custom_reward_function.path": pkg,
        "reward.custom_reward_function.name": "compute_score",
        "actor_rollout_ref.model.path": model,
        "actor_rollout_ref.actor.ppo_epochs": "1",
        "actor_rollout_ref.actor.ppo_mini_batch_size": str(batch),
        "actor_rollout_ref.actor.use_kl_loss": "False",
        "actor_rollout_ref.actor.entropy_coeff": "0",
        "actor_rollout_ref.actor.use_dynamic_bsz": "True",
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu": str(MAX_TOKENS),
        "actor_rollout_ref.rollout.name": rollout,
        "actor_rollout_ref.rollout.n": "64",
        "actor_rollout_ref.rollout.temperature": "1.0",
        "actor_rollout_ref.rollout.top_p": "1.0",
        "actor_rollout_ref.rollout.max_model_len": str(MAX_TOKENS),
        "critic.model.path": critic or model,
        "critic.ppo_epochs": "1",
        "critic.ppo_mini_batch_size": str(batch),
        "critic.use_dynamic_bsz": "True",
        "critic.ppo_max_token_len_per_gpu": str(MAX_TOKENS),
        "trainer.nnodes": str(nnodes),
        "trainer.n_gpus_per_node": str(gpus_per_node),
        "trainer.total_training_steps": str(steps),
        "trainer.critic_warmup": "0",
        "trainer.logger": "[console]",
        "trainer.project_name": "pacore",
    }
    return ["python", "-m", "verl.trainer.main_ppo", *(f"{k}={v}" for k, v in args.items())]
