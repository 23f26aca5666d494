"""PaCoRe's synthesis environment for verl: the Parquet export, the dataset class, the reward.

verl owns the distributed PPO (Ray, vLLM or SGLang rollouts, FSDP or Megatron); this
module owns what is PaCoRe-specific, wired in through verl's own config keys:

    data.custom_cls.path=pkg://pacore.train.verl          data.custom_cls.name=PacoreDataset
    reward.custom_reward_function.path=pkg://pacore.train.verl
    reward.custom_reward_function.name=compute_score

`export_verl` writes one row per problem with verl's columns (`data_source`, `prompt`,
`ability`, `reward_model`, `extra_info`); `extra_info` holds the problem, its pool
(the responses an episode can use: those left non-blank by compaction), each
response's grade and answer cluster (`pacore.train.analysis`), and the reward kind,
so math and code share one file. `PacoreDataset` draws a new message set M for every
(problem, epoch) with the same `draw_indices` and `episode_messages` as everywhere
else, and fits it to `data.max_prompt_length` by dropping whole references
(`pacore.train.budget`): verl never cuts a prompt, the problem is never touched. The
`prompt` column is epoch 0's episode, so verl's plain `RLHFDataset` also trains on the
file (with M fixed and no fitting).

Beside the Parquet file the export writes `<out>.stats.json`: rows written and
skipped, kinds, and the prompt-length distribution, from which `verl-command` sizes
`data.max_prompt_length`. `compute_score` returns verl's dict: the reward as `score`
and the analyses of `pacore.train.analysis` as the rollout's `reward_extra_info`.

verl and its dependencies (torch, transformers, datasets) are imported only by
`PacoreDataset`; the export needs pyarrow and the graders, the reward only the graders.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import multiprocessing
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pacore.errors import ConfigError
from pacore.graders import GRADER_NAMES, grader_name
from pacore.io.atomic import atomic_output, atomic_write
from pacore.io.formats import FORMAT_KEY, VERL
from pacore.io.guard import check_output, first_record_owned
from pacore.io.jsonl import loads
from pacore.io.records import PARQUET_SUFFIXES
from pacore.io.source import Source
from pacore.io.tables import batched, parquet_metadata, write_parquet
from pacore.train.analysis import episode_extras, grade_pool, majority_answer
from pacore.train.budget import (
    PromptLengths,
    TokenCounter,
    char_estimate,
    fit_episode,
    minimum_episode,
    tokenizer_counter,
    worst_episode,
)
from pacore.train.episodes import draw_indices, episode_messages, usable_pool
from pacore.train.records import PoolRecord, output_suffix
from pacore.train.rewards import RewardModel, check_golds, gold_text, reward, reward_kind

log = logging.getLogger(__name__)

INSTALL_VERL = "pip install 'pacore[verl]'"
DATA_SOURCE = "pacore"
"""`data_source` of exported rows; verl groups validation metrics by it."""
BATCH_ROWS = 16
"""Rows buffered before a Parquet row group is written: memory is bounded by this many
pools, whatever the number of problems."""
DEFAULT_MIN_REFS = 8
"""The fewest references a prompt is cut down to when it must fit its budget: the
smallest |M| of the paper's best message-set ablation, U(8, 16)."""
BUDGET_STEP = 256
"""The prompt budget is the longest prompt rounded up to a multiple of this."""


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
                        ("min_refs", pa.int64()),
                        ("seed", pa.int64()),
                        ("compaction", pa.string()),
                        ("ref_scores", pa.list_(pa.float64())),
                        ("ref_clusters", pa.list_(pa.int64())),
                        ("ref_answers", pa.list_(pa.string())),
                    ]
                ),
            ),
        ]
    )


def _text(message: Any) -> dict[str, str]:
    from pacore.core.prompts import message_text

    return {"role": str(message.get("role")), "content": message_text(message)}


def row_kind(record: PoolRecord, kind: str | None) -> str:
    """The reward kind of a row: `kind` when given, else code for tests, math otherwise."""
    return reward_kind(record.ground_truth, kind)


def _gold(record: PoolRecord, kind: str) -> str:
    """verl's `reward_model.ground_truth` is a string: the gold answer for math, the tests
    as JSON for code (`rewards.gold_text`); a problem without one is refused
    (`rewards.check_golds`)."""
    check_golds([record], kind)
    text = gold_text(record.ground_truth, kind)
    assert text is not None  # checked
    return text


def verl_row(
    record: PoolRecord,
    index: int,
    *,
    kind: str = "math",
    lo: int = 16,
    hi: int = 24,
    min_refs: int | None = None,
    seed: int = 0,
    compaction: str = "conclusion",
    grades: Any = None,
) -> dict[str, Any]:
    """One problem as a row of verl's dataset format; `prompt` is epoch 0's episode.

    `grades` (`analysis.PoolGrades`) fill the reference columns of the analyses.
    """
    picks = draw_indices(record, 0, lo=lo, hi=hi, seed=seed)
    references = [record.responses[i] for i in picks]
    prompt = episode_messages(record, references, compaction=compaction)
    return {
        "data_source": f"{DATA_SOURCE}/{kind}",
        "prompt": [_text(m) for m in prompt],
        "ability": kind,
        "reward_model": {"style": "rule", "ground_truth": _gold(record, kind)},
        "extra_info": {
            "index": index,
            "id": record.id,
            "kind": kind,
            "conversation": [_text(m) for m in record.conversation],
            "responses": list(record.responses),
            "lo": lo,
            "hi": hi,
            "min_refs": min(lo, DEFAULT_MIN_REFS) if min_refs is None else min_refs,
            "seed": seed,
            "compaction": compaction,
            "ref_scores": list(grades.scores) if grades else [],
            "ref_clusters": list(grades.clusters) if grades else [],
            "ref_answers": list(grades.answers) if grades else [],
        },
    }


@dataclass
class ExportReport:
    """What an export wrote: rows, skips, kinds, and the prompt-length distribution."""

    rows: int = 0
    skipped: int = 0
    """Problems with fewer usable responses than the smallest |M| (`lo`)."""
    kinds: Counter[str] = field(default_factory=Counter)
    counted_with: str = "estimate"
    """`tokenizer PATH`, or `estimate` (characters / 3: see `pacore.train.budget`)."""
    episode: PromptLengths = field(default_factory=PromptLengths)
    """Epoch 0's prompt of each row."""
    worst: PromptLengths = field(default_factory=PromptLengths)
    """Each row's longest possible prompt: its `hi` longest references."""
    minimum: PromptLengths = field(default_factory=PromptLengths)
    """Each row's shortest prompt: its `min_refs` shortest references."""

    def budget(self) -> int | None:
        """The prompt budget that fits every row's longest prompt (None: no rows)."""
        if not self.worst.values:
            return None
        return math.ceil(max(self.worst.values) / BUDGET_STEP) * BUDGET_STEP

    def to_json(self) -> dict[str, Any]:
        """The stats file's content (without its format marker)."""
        return {
            "rows": self.rows,
            "skipped": self.skipped,
            "kinds": dict(sorted(self.kinds.items())),
            "prompt_tokens": {
                "counted_with": self.counted_with,
                "epoch0": self.episode.summary(),
                "worst": self.worst.summary(),
                "minimum": self.minimum.summary(),
            },
            "budget": self.budget(),
        }

    def summary(self) -> str:
        """Two lines for the terminal."""
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items())) or "none"
        skipped = f"; {self.skipped} skipped (too few usable responses)" if self.skipped else ""
        worst = self.worst.summary()
        lengths = (
            f"prompt tokens ({self.counted_with}): longest draw p50 {worst.get('p50')}, "
            f"p99 {worst.get('p99')}, max {worst.get('max')}; budget {self.budget()}"
        )
        return f"{self.rows} problems ({kinds}){skipped}\n{lengths}"


def stats_path(out: str | Path) -> Path:
    """Where the export's stats go: `<out>.stats.json`."""
    out = Path(out)
    return out.with_name(out.name + ".stats.json")


def check_export_path(out: str | Path, *, inputs: Iterable[Path | Source] = ()) -> None:
    """Refuse an export path that the output guard refuses for the export or its stats
    (a folder, one of `inputs`, a file pacore did not write), or that is not Parquet.
    The guard speaks first: "is a directory" says more than "unknown format"."""
    out = Path(out)
    owned = first_record_owned(VERL)
    check_output(out, inputs=inputs, owned=owned, what="export")
    check_output(stats_path(out), inputs=inputs, owned=owned, what="export stats")
    output_suffix(out, PARQUET_SUFFIXES, what="export")


def read_stats(data: str | Path) -> dict[str, Any] | None:
    """The stats an export wrote beside `data`, or None when there are none; a `budget`
    that is not a positive integer is a `ConfigError` naming the file."""
    path = stats_path(data)
    if not path.is_file():
        return None
    try:
        stats = loads(path.read_text(encoding="utf-8"), strict=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable export stats ({exc})") from None
    if not isinstance(stats, dict):
        raise ConfigError(f"{path}: not a pacore export stats file")
    VERL.version_of(stats.get(FORMAT_KEY), str(path))
    budget = stats.get("budget")
    if budget is not None and (
        not isinstance(budget, int) or isinstance(budget, bool) or budget < 1
    ):
        raise ConfigError(f"{path}: 'budget' must be a positive integer, got {json.dumps(budget)}")
    return stats


def export_verl(
    records: Iterable[PoolRecord],
    out: str | Path,
    *,
    kind: str | None = None,
    lo: int = 16,
    hi: int = 24,
    min_refs: int | None = None,
    seed: int = 0,
    compaction: str = "conclusion",
    count: TokenCounter | None = None,
    counted_with: str = "estimate",
    model: RewardModel | None = None,
) -> ExportReport:
    """Write `records` as verl's Parquet to `out` and its stats beside it, streaming.

    Each row's reward kind is `kind`, or from its data when None (code for tests,
    math otherwise), so one file mixes math and code. A problem with fewer usable
    responses than `lo` is skipped and counted. Every response is graded once here
    (`model`, or a `RewardModel` made and closed here) for the training analyses;
    prompt lengths are counted with `count` (default `char_estimate`). Rows are
    written in row groups of `BATCH_ROWS`, so memory stays flat for any number of
    problems. A kind no grader has, or no row to write (every problem skipped), is a
    `ConfigError`, and nothing is written.
    """
    if kind is not None:
        kind = grader_name(kind, tests=False)
    if lo < 1 or hi < lo:
        raise ConfigError(f"the message-set size range must satisfy 1 <= lo <= hi, got {lo}..{hi}")
    floor = min(lo, DEFAULT_MIN_REFS) if min_refs is None else min_refs
    if not 1 <= floor <= lo:
        raise ConfigError(f"the minimum |M| must be in 1..{lo}, got {floor}")
    if importlib.util.find_spec("pyarrow") is None:
        raise ConfigError("the verl export needs pyarrow: " + INSTALL_VERL)
    out = Path(out)
    check_export_path(out)
    schema = _schema().with_metadata(parquet_metadata(VERL))
    count = count or char_estimate
    report = ExportReport(counted_with=counted_with)
    owned = model is None
    grader = model or RewardModel()

    def rows() -> Iterator[dict[str, Any]]:
        for original in records:
            record = usable_pool(original, compaction)
            if len(record.responses) < lo:
                report.skipped += 1
                continue
            chosen = row_kind(record, kind)
            check_golds([record], chosen)  # before its pool is graded
            grades = grade_pool(record, chosen, grader)
            row = verl_row(
                record,
                report.rows,
                kind=chosen,
                lo=lo,
                hi=hi,
                min_refs=floor,
                seed=seed,
                compaction=compaction,
                grades=grades,
            )
            report.episode.add(count(row["prompt"]))
            report.worst.add(count(worst_episode(record, hi, compaction)))
            report.minimum.add(count(minimum_episode(record, floor, compaction)))
            report.kinds[chosen] += 1
            report.rows += 1
            yield row

    try:
        with atomic_output(out) as tmp:
            write_parquet(tmp, schema, batched(rows(), BATCH_ROWS))
            if not report.rows:  # verl cannot train on it: refused before it replaces `out`
                raise ConfigError(_nothing_to_export(report.skipped, lo))
    finally:
        if owned:
            grader.close()
    stats = {FORMAT_KEY: VERL.tag, **report.to_json()}
    atomic_write(stats_path(out), json.dumps(stats, indent=2) + "\n")
    return report


def _nothing_to_export(skipped: int, lo: int) -> str:
    if not skipped:
        return "no problems to export: the pool is empty"
    return (
        f"no problems to export: each of the {skipped} has fewer usable responses than "
        f"the smallest |M| ({lo}, the LO of --refs)"
    )


def record_from_extra_info(extra_info: dict[str, Any], ground_truth: Any) -> PoolRecord:
    """The pool record an exported row carries in `extra_info`."""
    return PoolRecord(
        id=str(extra_info["id"]),
        conversation=tuple(dict(m) for m in extra_info["conversation"]),
        responses=tuple(extra_info["responses"]),
        ground_truth=ground_truth,
    )


EXTRA_KEYS = ("emergent", "ref_accuracy", "majority_right", "majority_agreement")
"""The analyses `compute_score` returns next to `score` (see `pacore.train.analysis`)."""


def _listed(value: Any) -> list[Any]:
    """A list column's value as a list (verl may hand over arrays; None is empty)."""
    return [] if value is None else list(value)


def _row_picks(info: dict[str, Any], ground_truth: Any) -> list[int]:
    """The references of this rollout: as the dataset recorded them, else epoch 0's."""
    picks = info.get("refs")
    if picks is not None:
        return [int(i) for i in picks]
    if not _listed(info.get("responses")):
        return []
    record = record_from_extra_info(info, ground_truth)
    return draw_indices(
        record,
        0,
        lo=int(info.get("lo") or 16),
        hi=int(info.get("hi") or 24),
        seed=int(info.get("seed") or 0),
    )


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """verl's custom reward: PaCoRe's reward in [0, 1] as `score`, with the analyses.

    The grader comes from `extra_info` (`ConfigError` when no grader has that name),
    else from `data_source` when it ends in a built-in grader's name (`pacore/code`),
    else from the ground truth: code when it is tests, math otherwise (`grader_name`).
    Code tests arrive as JSON text, which the reward reads. Never raises on model
    output (verl calls this from worker threads); a grader that cannot run raises
    `ConfigError` at the first call. The other keys (`EXTRA_KEYS`) become verl's
    `reward_extra_info`: emergent correctness, the references' accuracy, whether
    their majority was right, and agreement with it (0 where a row has no grades).
    """
    info = dict(extra_info or {})
    kind = info.get("kind")
    if not kind:  # a row pacore did not export
        source = str(data_source).rpartition("/")[2].strip().lower()
        kind = source if source in GRADER_NAMES else None
    kind = reward_kind(ground_truth, kind)
    score = float(reward(solution_str, ground_truth, kind=kind))
    scores = [float(x) for x in _listed(info.get("ref_scores"))]
    clusters = [int(x) for x in _listed(info.get("ref_clusters"))]
    if not scores:
        return {"score": score, **dict.fromkeys(EXTRA_KEYS, 0.0)}
    picks = _row_picks(info, ground_truth)
    answers = [str(a) for a in _listed(info.get("ref_answers"))]
    majority = majority_answer(picks, clusters, answers) if kind != "code" else None
    agrees = majority is not None and reward(solution_str, majority, kind=kind) >= 1.0
    extras = episode_extras(score, picks, scores, clusters, agrees=agrees)
    return {"score": score, **extras}


def _shared_counter(size: int) -> Any:
    """Counts shared by the DataLoader's worker processes (a shared-memory array handed
    to them when they start), so every worker agrees on each row's epoch."""
    return multiprocessing.get_context().Array("q", max(size, 1))


FIT_COUNTS = ("loads", "trimmed", "references_dropped", "fallback")
"""What `PacoreDataset.fit_counts` reports: loads, loads whose draw was cut down to fit,
references dropped in all, and loads that needed the pool's shortest references."""


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


def _row_record(example: dict[str, Any]) -> tuple[PoolRecord, dict[str, Any]] | None:
    info = example.get("extra_info") or {}
    if not _listed(info.get("responses")):
        return None
    truth = (example.get("reward_model") or {}).get("ground_truth")
    return record_from_extra_info(info, truth), info


def _make_dataset_class(base: type[Any]) -> type[Any]:
    class PacoreDataset(base):  # type: ignore[misc]
        """verl's `RLHFDataset` over a PaCoRe export, with M re-drawn per (problem, epoch)
        and fitted to `data.max_prompt_length` by dropping whole references.

        The n-th load of a row is that row's epoch n (verl's sampler visits each row once
        per epoch), counted in shared memory so DataLoader workers agree. Every
        `rollout.n` response of a prompt shares one load, so one group sees one M. A
        resumed run counts from epoch 0 again. A draw whose prompt is over the budget
        keeps its first references that fit, never fewer than the row's `min_refs`
        (`pacore.train.budget.fit_episode`); `fit_counts()` says how often. With
        `data.filter_overlong_prompts` a row whose smallest prompt cannot fit is left
        out when the data loads. The references used go to `extra_info["refs"]` for
        the reward's analyses. verl's config keys apply unchanged.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._loads = _shared_counter(len(self))
            self._fits = _shared_counter(len(FIT_COUNTS))

        def _count(self) -> TokenCounter:
            return tokenizer_counter(self.tokenizer)

        def epoch_of(self, item: int) -> int:
            """Count one more load of row `item`; the epoch this load belongs to."""
            with self._loads.get_lock():
                epoch = int(self._loads[item])
                self._loads[item] = epoch + 1
            return epoch

        def fit_counts(self) -> dict[str, int]:
            """How often prompts were cut down to fit, over every worker (`FIT_COUNTS`)."""
            with self._fits.get_lock():
                return {name: int(self._fits[i]) for i, name in enumerate(FIT_COUNTS)}

        def _note_fit(self, dropped: int, fallback: bool) -> None:
            # no counts yet while verl's own __init__ runs
            _note_fit(getattr(self, "_fits", None), dropped, fallback, self.max_prompt_length)

        def __getitem__(self, item: int) -> Any:
            self._epoch = self.epoch_of(item)
            return super().__getitem__(item)

        def _build_messages(self, example: dict[str, Any], key: str) -> Any:
            epoch, budget = getattr(self, "_epoch", 0), int(self.max_prompt_length)
            fitted = _fit_row(example, epoch, budget, self._count())
            if fitted is not None:
                self._note_fit(fitted.dropped, fitted.fallback)
                example[key] = [_text(m) for m in fitted.messages]
            return super()._build_messages(example, key)

        def maybe_filter_out_long_prompts(self, dataframe: Any = None) -> Any:
            """Leave out rows whose smallest prompt (`min_refs` shortest references) is
            over the budget; other rows are fitted when loaded, never cut."""
            if not self.filter_overlong_prompts or dataframe is None:
                return dataframe
            budget, count, key = int(self.max_prompt_length), self._count(), self.prompt_key

            def fits(doc: dict[str, Any]) -> bool:
                return _fits_at_minimum(doc, key, budget, count)

            return _filter_rows(dataframe, fits, budget)

    PacoreDataset.__module__ = __name__
    PacoreDataset.__qualname__ = "PacoreDataset"
    return PacoreDataset


def _power_of_ten(n: int) -> bool:
    return n > 0 and str(n).rstrip("0") == "1"


def _note_fit(fits: Any, dropped: int, fallback: bool, budget: int) -> None:
    """Count one load in the shared `FIT_COUNTS`; warn at the 1st, 10th, 100th... cut."""
    if fits is None:
        return
    with fits.get_lock():
        fits[0] += 1
        if not (dropped or fallback):
            return
        fits[1] += 1
        fits[2] += dropped
        fits[3] += int(fallback)
        counts = {name: int(fits[i]) for i, name in enumerate(FIT_COUNTS)}
    if _power_of_ten(counts["trimmed"]):
        log.warning(
            "pacore: %d prompts cut down to max_prompt_length=%d by dropping whole references (%s)",
            counts["trimmed"],
            budget,
            counts,
        )


def _fit_row(example: dict[str, Any], epoch: int, budget: int, count: TokenCounter) -> Any:
    """The epoch's draw of an exported row fitted to `budget` (`budget.Fitted`), its
    references recorded in `extra_info["refs"]`; None for a row without a pool."""
    found = _row_record(example)
    if found is None:
        return None
    record, info = found
    picks = draw_indices(
        record, epoch, lo=int(info["lo"]), hi=int(info["hi"]), seed=int(info["seed"])
    )
    fitted = fit_episode(
        record,
        picks,
        budget=budget,
        min_refs=int(info.get("min_refs") or info["lo"]),
        count=count,
        compaction=info.get("compaction") or "conclusion",
    )
    info["refs"] = list(fitted.picks)
    return fitted


def _filter_rows(dataframe: Any, fits: Any, budget: int) -> Any:
    """The rows of `dataframe` that `fits`, with a warning naming how many were left out."""
    before = len(dataframe)
    dataframe = dataframe.filter(fits, desc=f"pacore: rows that fit {budget} tokens")
    if len(dataframe) < before:
        log.warning(
            "pacore: %d of %d rows left out: even their min_refs shortest references "
            "exceed max_prompt_length=%d",
            before - len(dataframe),
            before,
            budget,
        )
    return dataframe


def _fits_at_minimum(doc: dict[str, Any], key: str, budget: int, count: TokenCounter) -> bool:
    """Whether a row's smallest prompt (its `min_refs` shortest references) fits."""
    found = _row_record(doc)
    if found is None:
        return bool(count(doc[key]) <= budget)
    record, info = found
    floor = int(info.get("min_refs") or info["lo"])
    return count(minimum_episode(record, floor, info.get("compaction") or "conclusion")) <= budget


PAPER_STEPS = 250
"""Stage 1 of the paper's curriculum: 250 iterations."""
PAPER_STAGE2_STEPS = 450
"""Stage 2: 450 more iterations from the stage-1 checkpoint."""
MAX_TOKENS = 131_072
"""The paper's longest sequence, prompt and response together."""
ACTOR_LR = 1e-6
CRITIC_LR = 5e-6
WARMUP_STEPS = 50
"""Open-Reasoner-Zero's PPO set-up, which the paper follows: `actor_learning_rate`,
`critic_learning_rate` and `num_warmup_steps` of its `CommonPPOConfig` (config.py of
github.com/Open-Reasoner-Zero/Open-Reasoner-Zero)."""
SAVE_FREQ = 50
"""Steps between checkpoints (Open-Reasoner-Zero's `save_interval`)."""
TEST_FREQ = 10
"""Steps between validations when there is a validation set (its `eval_interval`)."""
_STEP_FOLDER = re.compile(r"global_step_(\d+)/*$")


def checkpoint_step(path: str) -> int:
    """The step of a verl checkpoint folder (`.../global_step_N`); `ConfigError` otherwise."""
    found = _STEP_FOLDER.search(str(path))
    if found is None:
        raise ConfigError(
            f"--resume-from must be a verl checkpoint folder named global_step_N, got {path!r}"
        )
    return int(found.group(1))


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
    max_prompt_length: int | None = None,
    steps: int | None = None,
    rollout: str = "vllm",
    stage: int = 1,
    resume_from: str | None = None,
    checkpoints: str | None = None,
    save_freq: int = SAVE_FREQ,
    test_freq: int = TEST_FREQ,
    actor_lr: float = ACTOR_LR,
    critic_lr: float = CRITIC_LR,
) -> list[str]:
    """The `python -m verl.trainer.main_ppo` argv with the paper's settings.

    PPO with a critic and GAE (lambda = gamma = 1); 16 problems x `rollout.n=64`;
    temperature and top-p 1.0; strictly on-policy (one PPO epoch, mini-batch = batch);
    no KL in the reward or the loss; Open-Reasoner-Zero's learning rates and warm-up;
    the prompt budget `max_prompt_length` (else `hi` compacted references of
    `reference_tokens` each plus the problem), the response for the rest of 131,072
    tokens; PaCoRe's dataset class and reward wired in through `pkg://`.

    Checkpoints every `save_freq` steps into `checkpoints`; a stage-1 run resumes from
    the latest one there. Stage 2 starts from the stage-1 checkpoint `resume_from`
    (a `global_step_N` folder: actor and critic) and runs `steps` more (450). Without
    `val_data` there is no validation (the training file is never validated on).
    """
    if stage not in (1, 2):
        raise ConfigError(f"--stage must be 1 or 2, got {stage}")
    if stage == 2 and not resume_from:
        raise ConfigError("stage 2 continues a stage-1 checkpoint: give --resume-from")
    if stage == 1 and resume_from:
        raise ConfigError("--resume-from is for stage 2 (stage 1 resumes from --checkpoints)")
    start = checkpoint_step(resume_from) if resume_from else 0
    steps = steps or (PAPER_STEPS if stage == 1 else PAPER_STAGE2_STEPS)
    prompt_tokens = max_prompt_length or hi * reference_tokens + 2048
    response_tokens = MAX_TOKENS - prompt_tokens
    if response_tokens < 1024:
        raise ConfigError(
            f"a prompt budget of {prompt_tokens} tokens leaves no room for a response "
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
        # verl builds a validation set from val_files whatever test_freq says; without
        # --val-data it is the training file, never run (test_freq -1, none before step 1)
        "data.val_files": val_data or data,
        "data.train_batch_size": str(batch),
        "data.max_prompt_length": str(prompt_tokens),
        "data.max_response_length": str(response_tokens),
        "data.filter_overlong_prompts": "True",
        "data.custom_cls.path": pkg,
        "data.custom_cls.name": "PacoreDataset",
        "reward.custom_reward_function.path": pkg,
        "reward.custom_reward_function.name": "compute_score",
        "actor_rollout_ref.model.path": model,
        "actor_rollout_ref.actor.optim.lr": f"{actor_lr:g}",
        "actor_rollout_ref.actor.optim.lr_warmup_steps": str(WARMUP_STEPS),
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
        "critic.optim.lr": f"{critic_lr:g}",
        "critic.optim.lr_warmup_steps": str(WARMUP_STEPS),
        "critic.ppo_epochs": "1",
        "critic.ppo_mini_batch_size": str(batch),
        "critic.use_dynamic_bsz": "True",
        "critic.ppo_max_token_len_per_gpu": str(MAX_TOKENS),
        "trainer.nnodes": str(nnodes),
        "trainer.n_gpus_per_node": str(gpus_per_node),
        "trainer.total_training_steps": str(start + steps),
        "trainer.critic_warmup": "0",
        "trainer.logger": "[console]",
        "trainer.project_name": "pacore",
        "trainer.experiment_name": f"stage{stage}",
        "trainer.default_local_dir": checkpoints or f"checkpoints/pacore/stage{stage}",
        "trainer.save_freq": str(save_freq),
        "trainer.test_freq": str(test_freq if val_data else -1),
        "trainer.val_before_train": str(bool(val_data)),
        "trainer.resume_mode": "resume_path" if resume_from else "auto",
    }
    if resume_from:
        args["trainer.resume_from_path"] = resume_from
    return ["python", "-m", "verl.trainer.main_ppo", *(f"{k}={v}" for k, v in args.items())]
