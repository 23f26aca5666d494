"""PaCoRe's synthesis environment on TRL: GRPO on one machine.

TRL 1.16 has no PPO (removed in 1.13), so one machine trains with GRPO: no critic,
the advantage of a completion is its reward against its group's. That differs from
the paper's PPO with a critic and GAE (verl, `pacore.train.verl`); what is the same
is the environment: the episodes (`draw_references`, `episode_messages`) and the
rewards (`pacore.train.rewards`).

TRL fetches each dataset row once per generation round, so M cannot be drawn when a
row is read (one group would see several M). Instead the dataset holds one row per
(problem, epoch), each with the M that (problem, epoch) draws, and TRL runs one pass
over it: M is fixed within a group and new in every epoch.

The model is a Hugging Face folder, or a GGUF file loaded through `transformers`' GGUF
support (the `gguf` package), such as the SmolLM2-135M file the embedded backend uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pacore.config import check_settings, setting
from pacore.errors import ConfigError, one_line
from pacore.graders import grader_name
from pacore.io.atomic import atomic_write
from pacore.io.guard import check_output_folder
from pacore.train.episodes import draw_references, episode_messages, usable_pool
from pacore.train.records import PoolRecord
from pacore.train.rewards import check_golds, gold_text, reward, reward_kind

INSTALL_TRL = "pip install 'pacore[trl]'"
MARKER = "pacore-grpo.txt"
"""The file that says a folder holds a model `train_grpo` wrote (it may write there again)."""


@dataclass(frozen=True)
class GrpoSettings:
    """What a GRPO run does; every field has the default `pacore train grpo` uses."""

    epochs: int = setting(1, "epochs; each draws a new M per problem", minimum=1)
    max_steps: int = setting(
        -1, "stop after this many optimiser steps (-1: run every epoch)", minimum=-1
    )
    num_generations: int = setting(4, "completions per prompt: one GRPO group", minimum=2)
    batch_size: int = setting(
        4, "completions per optimiser step; a multiple of --num-generations", minimum=1
    )
    max_completion_length: int = setting(256, "tokens per completion", minimum=1)
    learning_rate: float = setting(1e-6, "AdamW's learning rate", above=0)
    temperature: float = setting(1.0, "sampling temperature of the rollouts", above=0)
    lo: int = 16
    """Smallest |M|."""
    hi: int = 24
    """Largest |M|."""
    seed: int = 0
    """Seed of the episode draws and of the trainer."""
    kind: str | None = None
    """The reward's grader: math (1 or 0) or code (pass rate); None: per problem, code
    for one with tests, math otherwise (as the verl export decides)."""
    compaction: str = "conclusion"
    """How references are compacted, as in inference."""
    use_cpu: bool = False
    """Train on the CPU (float32, no bf16)."""
    logging_steps: int = 1
    """Log (rewards included) every this many steps."""
    extra: dict[str, Any] = field(default_factory=dict)
    """More `GRPOConfig` fields, passed as they are."""

    def __post_init__(self) -> None:
        """Refuse a value out of its bounds (`pacore.config.setting`): a learning rate of
        NaN or -1 trained on, silently."""
        check_settings(self)


@dataclass(frozen=True)
class GrpoResult:
    """What a finished run did."""

    steps: int
    """Optimiser steps taken."""
    log_history: list[dict[str, Any]]
    """The trainer's log lines (`reward`, `loss`, ...), one per logging step."""


def episode_rows(
    records: Sequence[PoolRecord],
    *,
    epochs: int = 1,
    lo: int = 16,
    hi: int = 24,
    seed: int = 0,
    compaction: str = "conclusion",
    kind: str | None = None,
) -> list[dict[str, Any]]:
    """One row per (problem, epoch): `prompt` (chat messages), `ground_truth`, `kind`,
    `id`, `epoch`.

    Epoch by epoch, problems in order; the trainer shuffles. M is drawn from the
    responses an episode can pass on (`usable_pool`), as the verl export draws it. Each
    row's reward kind is `kind`, or its problem's (`rewards.reward_kind`: code for
    tests, math otherwise); its ground truth is the text that kind grades against
    (`rewards.gold_text`: the gold answer, or the tests as JSON). A math problem with
    no gold answer is refused (`rewards.check_golds`).
    """
    check_golds(records, kind)
    rows = []
    for epoch in range(epochs):
        for record in records:
            usable = usable_pool(record, compaction)
            refs = draw_references(usable, epoch, lo=lo, hi=hi, seed=seed)
            chosen = reward_kind(record.ground_truth, kind)
            rows.append(
                {
                    "prompt": episode_messages(usable, refs, compaction=compaction),
                    "ground_truth": gold_text(record.ground_truth, chosen),
                    "kind": chosen,
                    "id": record.id,
                    "epoch": epoch,
                }
            )
    return rows


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or chat messages (their contents joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    return str(completion)


def reward_function(kind: str | None = None) -> Any:
    """A TRL reward function: PaCoRe's reward for each completion, in [0, 1], by `kind`,
    or when None by each row's `kind` column (`episode_rows`; a row without one is
    judged by its ground truth, as `rewards.reward_kind` does)."""
    fixed = None if kind is None else grader_name(kind, tests=False)

    def pacore_reward(
        prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float]:
        truths = columns["ground_truth"]
        kinds = columns.get("kind") or [None] * len(truths)
        return [
            reward(completion_text(c), truth, kind=fixed or reward_kind(truth, row_kind))
            for c, truth, row_kind in zip(completions, truths, kinds, strict=True)
        ]

    pacore_reward.__name__ = f"pacore_{fixed or 'reward'}"
    return pacore_reward


def _fix_special_tokens(tokenizer: Any) -> None:
    # transformers before 5.11 reads a ChatML GGUF's eos as <|im_start|> and no pad:
    # generation would never stop at the end of a turn.
    vocab = tokenizer.get_vocab()
    if "<|im_end|>" in vocab and tokenizer.eos_token != "<|im_end|>":
        tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def load_model(path: str | Path) -> tuple[Any, Any]:
    """The model and tokenizer at `path`: a Hugging Face folder, or a `.gguf` file
    (dequantised to float32 by `transformers`, then trainable and savable)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ConfigError("GRPO needs TRL and torch: " + INSTALL_TRL) from None
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such model")
    kwargs: dict[str, Any] = {}
    folder = path
    if path.suffix.lower() == ".gguf":
        folder, kwargs = path.parent, {"gguf_file": path.name}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    except (OSError, ValueError, KeyError) as exc:  # not a model: say so, not a traceback
        raise ConfigError(f"{path}: cannot load the model ({one_line(str(exc))})") from None
    if kwargs:  # a dequantised GGUF: save it as a plain model
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    _fix_special_tokens(tokenizer)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def train_grpo(
    model: Any,
    records: Sequence[PoolRecord],
    out: str | Path,
    settings: GrpoSettings = GrpoSettings(),
    *,
    tokenizer: Any = None,
) -> GrpoResult:
    """GRPO on the episodes of `records`; the trained model and tokenizer go to `out`.

    `model` is a path (see `load_model`) or a loaded model, then with its `tokenizer`.
    """
    if not records:
        raise ConfigError("no problems to train on")
    if settings.batch_size % settings.num_generations:
        raise ConfigError("the batch size must be a multiple of the number of generations")
    # The output, the episodes and the settings first: refused before TRL or the model
    # loads (a folder of the user's, or the base model itself, is never written over).
    check_output_folder(out, marker=MARKER, inputs=[model] if isinstance(model, str | Path) else [])
    rows = episode_rows(
        records,
        epochs=settings.epochs,
        lo=settings.lo,
        hi=settings.hi,
        seed=settings.seed,
        compaction=settings.compaction,
        kind=settings.kind,
    )
    try:
        from datasets import Dataset
        from trl import GRPOConfig, GRPOTrainer
    except ImportError:
        raise ConfigError("GRPO needs TRL: " + INSTALL_TRL) from None
    if isinstance(model, str | Path):
        model, tokenizer = load_model(model)
    elif tokenizer is None:
        raise ConfigError("a loaded model needs its tokenizer")
    config = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=settings.batch_size,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length,
        learning_rate=settings.learning_rate,
        temperature=settings.temperature,
        top_p=1.0,
        num_train_epochs=1,
        max_steps=settings.max_steps,
        beta=0.0,
        seed=settings.seed,
        use_cpu=settings.use_cpu,
        logging_steps=settings.logging_steps,
        save_strategy="no",
        report_to="none",
        **({"bf16": False} if settings.use_cpu else {}),
        **settings.extra,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward_function(settings.kind)],
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    # Claimed before training writes: a run that fails part way leaves a folder this
    # command may reuse (nothing is written before every check has passed).
    atomic_write(Path(out) / MARKER, "a model trained by pacore train grpo\n")
    state = trainer.train()
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    atomic_write(
        Path(out) / MARKER, f"a model trained by pacore train grpo ({state.global_step} steps)\n"
    )
    return GrpoResult(steps=state.global_step, log_history=list(trainer.state.log_history))
