"""The evaluation runner: every (problem, method, run), graded, recorded and reported.

`Evaluation.run()` works through a bounded number of jobs at a time. Each job
runs one method once on one problem, grades its answer (and, for PaCoRe-style
methods, the messages of every round, for the analyses), and appends one line
to `results.jsonl` the moment it is done. A rerun skips every (id, method, run)
already there, and the trajectory store spares it any sampling that finished,
so an interrupted evaluation resumes and ends with the same numbers.

At the end every result line of the requested methods and runs is read back
and summarised into `summary.json`, `report.md` and the plots.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pacore.backends.base import Backend
from pacore.config import PacoreConfig
from pacore.errors import ConfigError
from pacore.eval import metrics
from pacore.eval.datasets import Sample
from pacore.eval.methods import Context, Method
from pacore.eval.pool import PooledSampling
from pacore.eval.report import MethodSummary, ReportFiles, write_report
from pacore.store import TrajectoryStore

RESULTS = "results.jsonl"
STORE = "trajectories.sqlite"


@dataclass(frozen=True)
class Verdict:
    """A grade as the runner records it."""

    score: float
    correct: bool | None
    extracted: str | None
    reason: str


class EvalGrader(Protocol):
    """What the runner needs from a grader (see `pacore.eval.graders`)."""

    name: str

    def grade_batch(self, items: Sequence[tuple[str, Sample]]) -> list[Verdict]:
        """Grade each (prediction text, sample); runs in a worker thread."""
        ...

    def extract(self, text: str) -> str | None:
        """The answer inside a message, for voting and the solipsism analysis."""
        ...

    def same(self, a: str, b: str) -> bool:
        """Whether two extracted answers are equivalent."""
        ...


class EvalProgress(Protocol):
    """Hooks for progress display; the CLI's `EvalBar` draws a bar with ETA and tokens/s."""

    def start(self, total: int, already_done: int) -> None: ...

    def tokens(self, count: int) -> None: ...

    def job_done(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class SilentProgress:
    """No progress display."""

    def start(self, total: int, already_done: int) -> None:
        return None

    def tokens(self, count: int) -> None:
        return None

    def job_done(self, record: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass
class Evaluation:
    """One evaluation: a dataset, methods, runs, a pool, a backend, a grader, an output folder."""

    samples: Sequence[Sample]
    methods: Sequence[Method]
    backend: Backend | None
    """None only to `report()` on results already written."""
    model: str
    config: PacoreConfig
    grader: EvalGrader
    out_dir: Path
    dataset_name: str
    runs: int = 4
    pool_size: int = 64
    seed: int = 0
    store_path: Path | None = None
    jobs_in_flight: int = 32
    progress: EvalProgress = field(default_factory=SilentProgress)
    plots: bool | None = None

    def __post_init__(self) -> None:
        check_plan(self.methods, runs=self.runs, pool_size=self.pool_size)

    @property
    def results_path(self) -> Path:
        return self.out_dir / RESULTS

    async def run(self) -> ReportFiles:
        from pacore.batch import completed_keys

        self.out_dir.mkdir(parents=True, exist_ok=True)
        # Failed runs (infrastructure) are dropped from the file and run again.
        done = completed_keys(self.results_path, ("id", "method", "run"), retry_failed=True)
        jobs = [
            (sample, method, run)
            for sample in self.samples
            for run in range(self.runs)
            for method in self.methods
            if (sample.id, method.name, str(run)) not in done
        ]
        total = len(self.samples) * self.runs * len(self.methods)
        self.progress.start(total, total - len(jobs))
        if self.backend is None:
            raise ConfigError("an evaluation needs a backend to run")
        store = TrajectoryStore(self.store_path or self.out_dir / STORE)
        shared = PooledSampling(
            self.backend,
            store,
            self.model,
            self.pool_size,
            seed=self.seed,
            on_tokens=self.progress.tokens,
        )
        ctx = Context(self.backend, self.config, shared, self.grader.extract, self.grader.same)
        try:
            with self.results_path.open("a", encoding="utf-8") as out:
                await self._work(jobs, ctx, out)
        finally:
            store.close()
            self.progress.close()
        return self.report()

    async def _work(self, jobs: list[tuple[Sample, Method, int]], ctx: Context, out: Any) -> None:
        slots = asyncio.Semaphore(self.jobs_in_flight)
        pending: set[asyncio.Task[dict[str, Any]]] = set()

        async def one(sample: Sample, method: Method, run: int) -> dict[str, Any]:
            async with slots:
                return await self._job(sample, method, run, ctx)

        try:
            for job in jobs:
                # Keep the job list lazy: at most a few batches of tasks exist at once.
                while len(pending) >= 4 * self.jobs_in_flight:
                    finished, pending = await asyncio.wait(
                        pending, return_when=asyncio.FIRST_COMPLETED
                    )
                    self._write(finished, out)
                pending.add(asyncio.ensure_future(one(*job)))
            while pending:
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                self._write(finished, out)
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    def _write(self, finished: set[asyncio.Task[dict[str, Any]]], out: Any) -> None:
        for task in finished:
            record = task.result()
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            self.progress.job_done(record)

    async def _job(self, sample: Sample, method: Method, run: int, ctx: Context) -> dict[str, Any]:
        started = time.perf_counter()
        outcome = await method.run(sample, run, ctx)
        # Only infrastructure failures are kept apart; a model that left nothing usable
        # (every sample truncated, say) gave no answer, which is graded as wrong.
        failed = outcome.status == "failed" and outcome.failure != "model"
        status = "failed" if failed else "no_answer" if outcome.status == "failed" else None
        # Grade the answer, and every message the analyses need, in one batch.
        texts = [outcome.answer]
        for messages in outcome.round_messages:
            texts.extend(messages)
        verdicts = await asyncio.to_thread(self.grader.grade_batch, [(t, sample) for t in texts])
        final, rest = verdicts[0], verdicts[1:]
        round_correct: list[list[bool | None]] = []
        for messages in outcome.round_messages:
            round_correct.append([v.correct for v in rest[: len(messages)]])
            rest = rest[len(messages) :]
        refs = outcome.references
        ref_correct = round_correct[-1] if refs and round_correct else []
        return {
            "id": sample.id,
            "method": method.name,
            "family": method.family,
            "run": run,
            "status": status or outcome.status,
            "error": outcome.error,
            "answer": outcome.answer,
            "extracted": final.extracted,
            "score": 0.0 if failed else final.score,
            "correct": None if failed else final.correct,
            "reason": outcome.error if outcome.status == "failed" else final.reason,
            "ttc_tokens": outcome.ttc_tokens,
            "max_prompt_tokens": outcome.max_prompt_tokens,
            "max_context_tokens": outcome.max_context_tokens,
            "requests": outcome.requests,
            "trajectories": outcome.trajectories,
            "round_correct": round_correct,
            "ref_correct": ref_correct,
            "ref_answers": [self.grader.extract(m) for m in refs],
            "votes": outcome.votes,
            "final_text": outcome.final_text if refs else None,
            "latency_s": round(time.perf_counter() - started, 3),
        }

    # -- summary -------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        wanted = {m.name for m in self.methods}
        ids = {s.id for s in self.samples}
        out = []
        with self.results_path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                r = json.loads(line)
                if r["method"] in wanted and r["id"] in ids and r["run"] < self.runs:
                    out.append(r)
        return out

    def summaries(self) -> list[MethodSummary]:
        by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in self.records():
            by_method[r["method"]].append(r)
        return [
            summarize(m, by_method.get(m.name, []), self.dataset_name, self.grader.same)
            for m in self.methods
        ]

    def report(self) -> ReportFiles:
        extra = {
            "model": self.model,
            "runs": self.runs,
            "pool": self.pool_size,
            "grader": self.grader.name,
            "problems": len(self.samples),
        }
        return write_report(self.out_dir, self.summaries(), extra=extra, plots=self.plots)


def check_plan(methods: Sequence[Method], *, runs: int, pool_size: int) -> None:
    """Refuse an evaluation that cannot run as asked, before anything is started."""
    if runs < 1:
        raise ConfigError("--runs must be at least 1")
    if pool_size < 1:
        raise ConfigError("--pool must be at least 1")
    if not methods:
        raise ConfigError("name at least one --method")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError("a method is named twice")
    for m in methods:
        if m.first_round > pool_size:
            raise ConfigError(
                f"method {m.name} draws {m.first_round} first-round trajectories but "
                f"--pool is {pool_size}; raise --pool"
            )


def summarize(
    method: Method,
    records: Sequence[dict[str, Any]],
    dataset: str,
    same: Callable[[str, str], bool],
) -> MethodSummary:
    """A method's summary from its result records (infrastructure failures kept apart)."""
    graded: dict[str, list[float]] = defaultdict(list)
    ttc: dict[str, list[float]] = defaultdict(list)
    prompt_tokens: list[int] = []
    outcomes = []
    for r in records:
        failed = r["status"] == "failed"
        outcomes.append(metrics.classify_outcome(r["correct"], failed=failed))
        if failed:
            continue
        ttc[r["id"]].append(float(r["ttc_tokens"]))
        prompt_tokens.append(int(r["max_prompt_tokens"]))
        if r["correct"] is not None:
            graded[r["id"]].append(float(r["score"]))
    ok = [r for r in records if r["status"] != "failed"]
    with_refs = [r for r in ok if r["ref_correct"]]
    widths = tuple(getattr(method, "widths", ()))
    return MethodSummary(
        name=method.name,
        family=method.family,
        trajectories=method.trajectories,
        dataset=dataset,
        pass_at_1=metrics.pass_at_1(graded) if graded else None,
        mean_ttc_tokens=metrics.mean_ttc(ttc) if ttc else None,
        max_context_tokens=metrics.largest_context(r["max_context_tokens"] for r in ok),
        mean_prompt_tokens=sum(prompt_tokens) / len(prompt_tokens) if prompt_tokens else None,
        max_prompt_tokens=max(prompt_tokens) if prompt_tokens else None,
        widths=widths,
        accuracy_per_round=metrics.accuracy_per_round(r["round_correct"] for r in ok),
        emergent=metrics.emergent_correctness((r["ref_correct"], r["correct"]) for r in with_refs)
        if with_refs
        else None,
        cross_check=metrics.cross_check_frequency(r["final_text"] or "" for r in with_refs)
        if with_refs
        else None,
        solipsism=metrics.solipsism_rate(
            ((r["extracted"], r["ref_answers"]) for r in with_refs), same=same
        )
        if with_refs
        else None,
        outcomes=metrics.count_outcomes(outcomes),
        extra={"results": len(records), "pass_at_k": pass_at_k_table(graded)},
    )


def pass_at_k_table(graded: dict[str, list[float]]) -> dict[str, float]:
    """Unbiased pass@k over the runs of each problem, for k = 1, 2, 4, ... up to the
    fewest runs any problem has (a run counts as passed when its score is 1)."""
    if not graded:
        return {}
    counts = {pid: (len(s), sum(1 for x in s if x >= 1.0)) for pid, s in graded.items()}
    fewest = min(n for n, _ in counts.values())
    table: dict[str, float] = {}
    k = 1
    while k <= fewest:
        table[f"pass@{k}"] = round(metrics.mean_pass_at_k(counts, k), 6)
        k *= 2
    return table
