"""`pacore train export|verl-command|grpo`: the RL engines' side of `pacore train`.

    pacore train export --format verl --input KEPT.jsonl --out DATA.parquet [--tokenizer M]
    pacore train verl-command --data DATA.parquet [--model PATH] [--val-data AIME.parquet]
    pacore train verl-command --stage 2 --data DATA2.parquet --resume-from CKPT/global_step_250
    pacore train grpo --model PATH --input KEPT.jsonl --out DIR

`add_parsers(sub)` adds the three subcommands to `pacore train`'s subparsers; each
sets `rl_command` to the function that runs it (`args -> exit code`). verl, TRL and
torch are imported only when a command that needs them runs.
"""

from __future__ import annotations

import argparse
import math
import shlex
from pathlib import Path
from typing import Any

from pacore.cli.options import add_settings, settings_from
from pacore.cli.train import add_refs_option
from pacore.errors import ConfigError

EXPORT_FORMATS = ("verl",)


def _episode_options(parser: argparse.ArgumentParser) -> None:
    add_refs_option(parser, "|M| ~ U(LO, HI), drawn per (problem, epoch) (default 16..24)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episode draws")
    parser.add_argument(
        "--grader",
        help="the reward's grader for every row: math (1 or 0), code (pass rate), exact, "
        "numeric (default: per row, code for problems with tests, math otherwise)",
    )
    parser.add_argument(
        "--compaction",
        default="conclusion",
        help="how references are compacted, as in inference (default conclusion)",
    )


def add_parsers(sub: Any) -> None:
    """Add `export`, `verl-command` and `grpo` to `pacore train`'s subparsers."""
    export = sub.add_parser("export", help="write episodes for an RL engine (verl Parquet)")
    export.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    export.add_argument("--input", type=Path, required=True, help="a PaCoRe-Train pool file")
    export.add_argument("--out", type=Path, required=True, help="the Parquet file to write")
    export.add_argument(
        "--min-refs",
        type=int,
        help="the fewest references a prompt is cut down to when it must fit its budget "
        "(default min(LO, 8))",
    )
    export.add_argument(
        "--tokenizer",
        help="count prompt tokens with this model's tokenizer (a Hugging Face folder; "
        "default: an estimate of 3 characters a token)",
    )
    export.add_argument(
        "--unsafe-sandbox", action="store_true", help="grade code under the fallback sandbox"
    )
    _episode_options(export)
    export.set_defaults(rl_command=run_export)

    command = sub.add_parser(
        "verl-command", help="print the verl launch command with the paper's settings"
    )
    command.add_argument("--data", required=True, help="the exported Parquet file")
    command.add_argument(
        "--val-data",
        help="a validation Parquet file, e.g. AIME exported the same way (default: none, "
        "no validation)",
    )
    command.add_argument("--stage", type=int, choices=(1, 2), default=1)
    command.add_argument(
        "--resume-from", help="stage 2: the stage-1 checkpoint folder (.../global_step_N)"
    )
    command.add_argument(
        "--checkpoints", help="the checkpoint folder (default checkpoints/pacore/stageN)"
    )
    command.add_argument("--save-freq", type=int, default=50, help="steps between checkpoints")
    command.add_argument(
        "--test-freq", type=int, default=10, help="steps between validations (with --val-data)"
    )
    command.add_argument(
        "--max-prompt-length",
        type=int,
        help="the prompt budget in tokens (default: the export's longest prompt, from "
        "DATA.stats.json; else --max-refs x --reference-tokens + 2048)",
    )
    command.add_argument("--actor-lr", type=float, default=1e-6, help="default 1e-6 (ORZ)")
    command.add_argument("--critic-lr", type=float, default=5e-6, help="default 5e-6 (ORZ)")
    command.add_argument("--model", default="MODEL", help="the policy (a Hugging Face folder)")
    command.add_argument("--critic", help="the critic's initial model (default: --model)")
    command.add_argument("--nnodes", type=int, default=1)
    command.add_argument("--gpus-per-node", type=int, default=8)
    command.add_argument("--max-refs", type=int, default=24, help="the largest |M| (default 24)")
    command.add_argument(
        "--reference-tokens",
        type=int,
        default=1024,
        help="prompt room per compacted reference (default 1024)",
    )
    command.add_argument(
        "--steps", type=int, help="PPO iterations (default 250 for stage 1, 450 for stage 2)"
    )
    command.add_argument("--rollout", default="vllm", choices=("vllm", "sglang"))
    command.set_defaults(rl_command=run_verl_command)

    grpo = sub.add_parser("grpo", help="GRPO with TRL on one machine")
    grpo.add_argument("--model", required=True, help="a Hugging Face model folder or a .gguf file")
    grpo.add_argument("--input", type=Path, required=True, help="a PaCoRe-Train pool file")
    grpo.add_argument("--out", type=Path, required=True, help="the folder for the trained model")
    add_settings(grpo, _grpo_settings())
    grpo.add_argument("--cpu", action="store_true", help="train on the CPU")
    _episode_options(grpo)
    grpo.set_defaults(rl_command=run_grpo)


def _grpo_settings() -> type[Any]:
    """`GrpoSettings`, whose fields' bounds and defaults the options are built from
    (`pacore.train.trl` imports nothing heavy: TRL loads when training starts)."""
    from pacore.train.trl import GrpoSettings

    return GrpoSettings


def run_export(args: argparse.Namespace) -> int:
    """`pacore train export`: the pool as verl's Parquet, and its stats."""
    from pacore.graders import grader_name
    from pacore.train.records import read_pool
    from pacore.train.rewards import RewardModel
    from pacore.train.verl import check_export_path, export_verl, stats_path

    kind = None if args.grader is None else grader_name(args.grader, tests=False)
    check_export_path(args.out, inputs=[args.input])
    count, counted_with = None, "estimate"
    if args.tokenizer:
        count, counted_with = _tokenizer_count(args.tokenizer), f"tokenizer {args.tokenizer}"
    lo, hi = args.refs
    with RewardModel(unsafe_sandbox=args.unsafe_sandbox) as model:
        report = export_verl(
            read_pool(args.input),
            args.out,
            kind=kind,
            lo=lo,
            hi=hi,
            min_refs=args.min_refs,
            seed=args.seed,
            compaction=args.compaction,
            count=count,
            counted_with=counted_with,
            model=model,
        )
    print(f"wrote {report.summary()}\nto {args.out}; stats in {stats_path(args.out)}")
    return 0


def _tokenizer_count(path: str) -> Any:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ConfigError("--tokenizer needs transformers: pip install 'pacore[verl]'") from None
    from pacore.train.budget import tokenizer_counter

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--tokenizer {path}: {str(exc).splitlines()[0]}") from None
    return tokenizer_counter(tokenizer)


def run_verl_command(args: argparse.Namespace) -> int:
    """`pacore train verl-command`: print the launch command."""
    from pacore.train.verl import read_stats, verl_command

    names = ("nnodes", "gpus_per_node", "max_refs", "reference_tokens", "save_freq", "test_freq")
    for name in names:
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("steps", "max_prompt_length"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("actor_lr", "critic_lr"):
        if not 0 < getattr(args, name) < math.inf:  # NaN fails both
            raise ConfigError(
                f"--{name.replace('_', '-')} must be a positive finite number, "
                f"got {getattr(args, name)}"
            )
    budget = args.max_prompt_length
    stats = read_stats(args.data) if budget is None else None
    if stats is not None and stats.get("budget") is not None:
        budget = stats["budget"]  # a positive integer: `read_stats` checked it
    argv = verl_command(
        args.data,
        model=args.model,
        critic=args.critic,
        val_data=args.val_data,
        nnodes=args.nnodes,
        gpus_per_node=args.gpus_per_node,
        hi=args.max_refs,
        reference_tokens=args.reference_tokens,
        max_prompt_length=budget,
        steps=args.steps,
        rollout=args.rollout,
        stage=args.stage,
        resume_from=args.resume_from,
        checkpoints=args.checkpoints,
        save_freq=args.save_freq,
        test_freq=args.test_freq,
        actor_lr=args.actor_lr,
        critic_lr=args.critic_lr,
    )
    head, options = argv[:3], argv[3:]  # python -m verl.trainer.main_ppo
    print(" \\\n    ".join([" ".join(head), *(shlex.quote(a) for a in options)]))
    return 0


def run_grpo(args: argparse.Namespace) -> int:
    """`pacore train grpo`: GRPO with TRL on the pool's episodes."""
    from pacore.graders import grader_name
    from pacore.train.records import read_pool
    from pacore.train.trl import GrpoSettings, train_grpo

    # None: per problem, code for one with tests, math otherwise (refused before the model loads)
    kind = grader_name(args.grader, tests=False) if args.grader else None
    lo, hi = args.refs
    settings = settings_from(
        args,
        GrpoSettings,
        lo=lo,
        hi=hi,
        seed=args.seed,
        kind=kind,
        compaction=args.compaction,
        use_cpu=args.cpu,
    )
    result = train_grpo(args.model, list(read_pool(args.input)), args.out, settings)
    print(f"trained {result.steps} steps; model saved to {args.out}")
    return 0
