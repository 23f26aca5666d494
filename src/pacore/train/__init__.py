"""Training PaCoRe's synthesis skill: the RL environment around verl and TRL.

What this package owns is everything PaCoRe-specific; the optimiser belongs to the
RL engine. Each module is one idea:

- `arith`: seeded large-integer arithmetic problems (the paper's synthetic math data);
- `records`: `PoolRecord`, the PaCoRe-Train format (`conversation`, `responses`,
  `ground_truth`, plus an `id`), read from and written to JSON, JSONL or Parquet;
- `pool`: message pools generated with the evaluation's pooled sampler into the
  trajectory store, so a killed run resumes;
- `curriculum`: the two filter stages (naive aggregation fails; synthesis neither
  always nor never right) and their counts tables;
- `episodes`: the message set M drawn per (problem, epoch) and the prompt P(x, M)
  built by the inference template function;
- `rewards`: the shared graders as rewards in [0, 1] that never raise on model output,
  never hang, and refuse loudly (`ConfigError`) when the grader cannot run;
- `budget`: prompts fitted to a token budget by dropping whole references;
- `analysis`: per-rollout training signals (emergent correctness, the references'
  accuracy, agreement with their majority).

The engines' glue (verl's dataset class and reward, TRL's GRPO) lives in its own
modules next to these and builds on them.
"""
