"""The evaluation runner: every (problem, method, run), graded, recorded and reported.

`Evaluation.run()` works through a bounded number of jobs at a time
(`aio.bounded_as_completed`). Each job runs one method once on one problem, grades its
answer (and, for PaCoRe-style methods, the messages of every round, for the analyses)
with the grader itself (`graders.base.Grader`), and appends its `RunRecord` as one line
of `results.jsonl` the moment it is done (`results_file`). A rerun skips every
(id, method, run) already there, and the trajectory store spares it any sampling that
finished, so an interrupted evaluation resumes and ends with the same numbers.

Before anything is written, the folder is checked: `results.jsonl` must hold only
result records, and `fingerprint.json` must say its results were computed on the same
problems, model and settings (`fingerprint`). The CLI holds the folder's lock
(`locks.OutputLock`) around all of it.

Each job's trace (every round's trajectories and prompts, for `pacore view`) goes to
`traces.sqlite` just before its results line (`traces`).

At the end every result line of the requested methods and runs is read back
(`read_records`), one per (id, method, run), and summarised (`summarize`) into
`summary.json`, `report.md` and the plots.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pacore.aio import bounded_as_completed
from pacore.backends.base import Backend
from pacore.config import EvalSettings, PacoreConfig
from pacore.errors import ConfigError, StorageError
from pacore.eval import metrics
from pacore.eval.datasets import Sample
from pacore.eval.fingerprint import (
    Fingerprint,
    check_fingerprint,
    protocol_settings,
    read_fingerprint,
    write_fingerprint,
)
from pacore.eval.methods import Context, Method, RunOutput
from pacore.eval.metrics import Equivalence
from pacore.eval.problems_file import StoredProblem, read_problems, store_problems
from pacore.eval.records import RunRecord
from pacore.eval.report import ReportFiles, check_report_outputs, write_report
from pacore.eval.results_file import (
    Held,
    Key,
    ResultsAppender,
    inspect_results,
    one_per_key,
    prepare_resume,
    read_records,
)
from pacore.eval.summary import MethodSummary
from pacore.eval.traces import TRACES, Trace, TraceFile, check_traces
from pacore.graders.base import Grade, Grader
from pacore.graders.memo import GradeMemo, SameMemo, TextMemo
from pacore.pool import PooledSampling
from pacore.store import TrajectoryStore

RESULTS = "results.jsonl"
STORE = "trajectories.sqlite"

Job = tuple[Sample, Method, int]
"""One (problem, method, run) to evaluate."""
_JobFactory = Callable[[], Awaitable[tuple[RunRecord, Trace | None]]]


class EvalProgress(Protocol):
    """Hooks for progress display; the CLI's `EvalBar` draws a bar with ETA and tokens/s."""

    def start(self, total: int, already_done: int) -> None:
        """The evaluation has `total` jobs, `already_done` of them from an earlier run."""
        ...

    def tokens(self, count: int) -> None:
        """`count` more tokens were generated."""
        ...

    def job_done(self, record: RunRecord) -> None:
        """One job finished and was written."""
        ...

    def close(self) -> None:
        """The evaluation is over."""
        ...


class SilentProgress:
    """No progress display."""

    def start(self, total: int, already_done: int) -> None:
        """Nothing to show."""

    def tokens(self, count: int) -> None:
        """Nothing to show."""

    def job_done(self, record: RunRecord) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class Evaluation:
    """One evaluation: a dataset, methods, runs, a pool, a backend, a grader, an output folder."""

    samples: Sequence[Sample]
    methods: Sequence[Method]
    backend: Backend | None
    """None only to `report()` on results already written."""
    model: str
    config: PacoreConfig
    grader: Grader
    out_dir: Path
    dataset_name: str
    runs: int = EvalSettings.runs
    pool_size: int = EvalSettings.pool
    seed: int = 0
    store_path: Path | None = None
    jobs_in_flight: int = EvalSettings.jobs
    progress: EvalProgress = field(default_factory=SilentProgress)
    plots: bool | None = None
    _grades: GradeMemo = field(init=False, repr=False)
    """The grader behind a memo: each distinct (text, gold) is graded once per evaluation."""
    _extract: TextMemo[str | None] = field(init=False, repr=False)
    """The grader's `extract` behind a memo: each distinct message is read once."""
    _same: SameMemo = field(init=False, repr=False)
    """The grader's `same` behind a memo: each pair of answers compared once, the pairs
    of a vote or of the report settled in one batch."""
    reported: list[MethodSummary] | None = field(default=None, init=False)
    """The summaries the last report was written from (a caller reads them instead of
    summarising `results.jsonl` again: the bootstrap intervals are the costly part)."""

    def __post_init__(self) -> None:
        """Refuse a plan that cannot run (see `check_plan`)."""
        check_plan(self.methods, runs=self.runs, pool_size=self.pool_size)
        self._grades = GradeMemo(self.grader)
        self._extract = TextMemo(self.grader.extract)
        self._same = SameMemo(self.grader)

    @property
    def results_path(self) -> Path:
        """`results.jsonl` in the output folder."""
        return self.out_dir / RESULTS

    async def run(self) -> ReportFiles:
        """Run every job not already in `results.jsonl`, then write the report.

        The folder is checked first (its results file, its fingerprint); only then is
        anything created, repaired or written.
        """
        if self.backend is None:
            raise ConfigError("an evaluation needs a backend to run")
        state = inspect_results(self.results_path)
        stored = read_problems(self.out_dir)
        fingerprint = check_fingerprint(
            self.out_dir, self.fingerprint(), _ids(state.records), stored=_hashes(stored)
        )
        check_traces(self.out_dir / TRACES)  # a file that is not ours: refused untouched
        check_report_outputs(self.out_dir)  # and a report or summary of the user's own
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{self.out_dir}: cannot create ({exc.strerror})") from None
        # What was evaluated, before any other write (a foreign problems.jsonl is refused).
        store_problems(self.out_dir, self.samples, fingerprint, self.dataset_name, stored)
        # A torn last line and failed runs (infrastructure) are dropped and run again.
        prepare_resume(self.results_path, state)
        write_fingerprint(self.out_dir, fingerprint)
        done = state.done  # a property: computed once, not once a job (quadratic)
        # Listed as they start, not all at once: runs x problems x methods may be large.
        jobs = (
            (sample, method, run)
            for sample in self.samples
            for run in range(self.runs)
            for method in self.methods
            if (sample.id, method.name, str(run)) not in done
        )
        total = len(self.samples) * self.runs * len(self.methods)
        self.progress.start(total, self._planned_done(done))
        store_path = self.store_path or self.out_dir / STORE
        store = TrajectoryStore(store_path)
        shared = PooledSampling(
            self.backend,
            store,
            self.model,
            self.pool_size,
            seed=self.seed,
            on_tokens=self.progress.tokens,
        )
        ctx = Context(self.backend, self.config, shared, self._extract, self._same)
        traces = TraceFile(self.out_dir / TRACES, store_path)
        out = ResultsAppender(self.results_path)
        try:
            await self._work(jobs, ctx, out, traces)
        finally:
            out.close()
            traces.close()
            store.close()
            self.progress.close()
        return self.report()

    def _planned_done(self, done: frozenset[Key]) -> int:
        """How many of this evaluation's jobs `done` holds (a folder may hold others)."""
        ids = {s.id for s in self.samples}
        names = {m.name for m in self.methods}
        runs = {str(r) for r in range(self.runs)}  # keys name runs as `str(run)`
        return sum(1 for pid, method, run in done if pid in ids and method in names and run in runs)

    def rewrite_report(self) -> ReportFiles:
        """Check the folder's fingerprint (all but the model), then rewrite the report
        from `results.jsonl` (`--report-only`)."""
        state = inspect_results(self.results_path)
        held = _ids(state.records)
        stored = read_problems(self.out_dir)
        self._check_reported_problems(held, stored)
        fingerprint = check_fingerprint(
            self.out_dir, self.fingerprint(), held, only_problems=True, stored=_hashes(stored)
        )
        check_report_outputs(self.out_dir)
        store_problems(self.out_dir, self.samples, fingerprint, self.dataset_name, stored)
        return self.report()

    def _check_reported_problems(
        self, held: frozenset[str], stored: Mapping[str, StoredProblem]
    ) -> None:
        """`--report-only` reports problems this folder evaluated: a dataset with others
        (another benchmark under the folder's name) would replace its report with an
        empty one and add problems it never ran to `problems.jsonl`."""
        earlier = read_fingerprint(self.out_dir)
        known = set(earlier.problems) if earlier is not None else set(stored) or set(held)
        foreign = [s.id for s in self.samples if s.id not in known]
        if foreign:
            raise ConfigError(
                f"{len(foreign)} of the dataset's {len(self.samples)} problems were never part "
                f"of the evaluation in {self.out_dir} (first: {foreign[0]!r}); --report-only "
                "reports the problems it was run on: name that dataset (--limit for fewer)"
            )

    def unused_settings(self, given: Collection[str] | None = None) -> str | None:
        """With `--report-only`: a result-changing setting given now (of `given`, when
        named: the defaults a report takes are no setting) that differs from the one the
        results were computed with (the report uses neither: it describes the results as
        they were run), as part of a sentence; None when none does."""
        earlier = read_fingerprint(self.out_dir)
        if earlier is None:
            return None
        return self.fingerprint().setting_difference(earlier, given)

    def fingerprint(self) -> Fingerprint:
        """What this evaluation's results are computed on (`fingerprint.json`)."""
        settings = protocol_settings(
            self.config, seed=self.seed, pool=self.pool_size, grader=self.grader.name
        )
        return Fingerprint.of(self.samples, self.model, settings)

    async def _work(
        self, jobs: Iterable[Job], ctx: Context, out: ResultsAppender, traces: TraceFile
    ) -> None:
        """Run the jobs, `jobs_in_flight` at a time, writing each record as it finishes
        (`Recorder`: traces a batch per transaction, then their results lines)."""
        started = (self._starter(sample, method, run, ctx) for sample, method, run in jobs)
        recorder = Recorder(out, traces, self.progress)
        flusher = asyncio.create_task(recorder.flush_every(RECORD_DELAY_S))
        try:
            async for record, trace in bounded_as_completed(started, self.jobs_in_flight):
                if flusher.done():
                    flusher.result()  # a write that failed (a full disk) stops the run
                recorder.add(record, trace)
            if flusher.done():
                flusher.result()
        finally:
            flusher.cancel()
            if not recorder.failed:  # finished runs are written, Ctrl-C included
                recorder.flush()

    def _starter(self, sample: Sample, method: Method, run: int, ctx: Context) -> _JobFactory:
        return lambda: self._job(sample, method, run, ctx)

    async def _job(
        self, sample: Sample, method: Method, run: int, ctx: Context
    ) -> tuple[RunRecord, Trace | None]:
        started = time.perf_counter()
        output = await method.run(sample, run, ctx)
        # Grade the answer, and every message the analyses need, in one batch.
        texts = [output.answer]
        for messages in output.round_messages:
            texts.extend(messages)
        gold = sample.grade_input()
        items = [(t, gold) for t in texts]
        # Graded before, or decided without waiting (no worker, no sandbox): here, in the
        # loop (a thread hop costs more than most grades); else the grader may be slow.
        grades = self._grades.known(items)
        if grades is None:
            grades = await asyncio.to_thread(self._grades.grade_many, items)
        record = self._record(sample, method, run, output, grades, time.perf_counter() - started)
        if output.trace is None:
            return record, None
        # In the loop: a trace's answers are a few regex scans, cheaper than a thread hop.
        trace = output.trace.graded(record.round_correct, record.correct, self._extract)
        return record, trace

    def _record(
        self,
        sample: Sample,
        method: Method,
        run: int,
        output: RunOutput,
        grades: Sequence[Grade],
        latency_s: float,
    ) -> RunRecord:
        # Only infrastructure failures are kept apart; a model that left nothing usable
        # (every sample truncated, say) gave no answer, and an input that can never fit
        # the context window gave none either: both are graded as wrong.
        failed = output.status == "failed" and output.failure not in ("model", "input")
        status = None
        if output.status == "failed" and not failed:
            status = "input_too_long" if output.failure == "input" else "no_answer"
        final, rest = grades[0], list(grades[1:])
        round_correct: list[tuple[bool | None, ...]] = []
        for messages in output.round_messages:
            round_correct.append(tuple(g.correct for g in rest[: len(messages)]))
            rest = rest[len(messages) :]
        refs = output.references
        return RunRecord(
            id=sample.id,
            method=method.name,
            family=method.family,
            run=run,
            status=status or output.status,
            error=output.error,
            answer=output.answer,
            extracted=final.extracted,
            score=0.0 if failed else final.score,
            correct=None if failed else final.correct,
            reason=output.error if output.status == "failed" else final.reason,
            ttc_tokens=output.ttc_tokens,
            max_prompt_tokens=output.max_prompt_tokens,
            max_context_tokens=output.max_context_tokens,
            requests=output.requests,
            trajectories=output.trajectories,
            round_correct=tuple(round_correct),
            ref_correct=round_correct[-1] if refs and round_correct else (),
            ref_answers=tuple(self._extract(m) for m in refs),
            votes=tuple(output.votes),
            final_text=output.final_text if refs else None,
            latency_s=round(latency_s, 3),
        )

    # -- summary -------------------------------------------------------------

    def records(self, *, texts: bool = True) -> list[RunRecord]:
        """The results of the requested methods, problems and runs in `results.jsonl`,
        one per (id, method, run) (`results_file.one_per_key`).

        `texts=False` leaves each final text out as it is read, keeping its
        cross-checking markers (`RunRecord.markers`) instead: a summary needs no more,
        and the report's memory then does not grow with the length of the syntheses.
        """
        wanted = {m.name for m in self.methods}
        ids = {s.id for s in self.samples}
        read = read_records(self.results_path)
        if not texts:
            shared: dict[Any, Any] = {}  # equal grades and answers held once
            read = (r.without_text(shared) for r in read)
        return [
            r for r in one_per_key(read) if r.method in wanted and r.id in ids and r.run < self.runs
        ]

    def summaries(self) -> list[MethodSummary]:
        """One summary per method, from the records in `results.jsonl`."""
        by_method: dict[str, list[RunRecord]] = defaultdict(list)
        for r in self.records(texts=False):
            by_method[r.method].append(r)
        return [
            summarize(m, by_method.get(m.name, []), self.dataset_name, self._same)
            for m in self.methods
        ]

    def report(self) -> ReportFiles:
        """Write `summary.json`, `report.md` and the plots from `results.jsonl`."""
        extra = {
            "model": self.model,
            "runs": self.runs,
            "pool": self.pool_size,
            "grader": self.grader.name,
            "problems": len(self.samples),
        }
        self.reported = self.summaries()
        try:
            return write_report(self.out_dir, self.reported, extra=extra, plots=self.plots)
        except OSError as exc:
            raise StorageError(
                f"{self.out_dir}: cannot write the report ({exc.strerror}); "
                "rerun with --report-only once there is room"
            ) from None


RECORD_BATCH = 64
"""Finished runs written together: their traces in one transaction, then their lines."""
RECORD_DELAY_S = 0.1
"""The longest a finished run waits to be written."""


class Recorder:
    """Writes finished runs in batches: the traces of up to `RECORD_BATCH` runs in one
    transaction, then each run's results line, so a line is never written before its
    trace. A run waits at most `RECORD_DELAY_S`; a crash loses at most the runs not yet
    written, which a resume runs again from the stored trajectories (the same numbers)."""

    def __init__(self, out: ResultsAppender, traces: TraceFile, progress: EvalProgress) -> None:
        """Write to `out` and `traces`, telling `progress` of each run written."""
        self.out, self.traces, self.progress = out, traces, progress
        self.pending: list[tuple[RunRecord, Trace | None]] = []
        self.failed = False
        """Whether a write failed (then nothing more is written)."""

    def add(self, record: RunRecord, trace: Trace | None) -> None:
        """Queue a finished run; write the batch when it is full."""
        self.pending.append((record, trace))
        if len(self.pending) >= RECORD_BATCH:
            self.flush()

    def flush(self) -> None:
        """Write every queued run: the traces, then the lines."""
        batch, self.pending = self.pending, []
        if not batch:
            return
        self.traces.put_many([((r.id, r.method, r.run), t) for r, t in batch if t is not None])
        self.out.append_runs([record for record, _ in batch])
        for record, _ in batch:
            self.progress.job_done(record)

    async def flush_every(self, seconds: float) -> None:
        """`flush` every `seconds` until cancelled."""
        while True:
            await asyncio.sleep(seconds)
            self.flush()


def _hashes(stored: Mapping[str, StoredProblem]) -> dict[str, str]:
    """The hashes of stored problems, by id."""
    return {pid: p.hash for pid, p in stored.items()}


def _ids(records: Sequence[Held]) -> frozenset[str]:
    return frozenset(r.id for r in records)


def check_plan(methods: Sequence[Method], *, runs: int, pool_size: int) -> None:
    """Refuse an evaluation that cannot run as asked, before anything is started."""
    EvalSettings(runs=runs, pool=pool_size)
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
    records: Sequence[RunRecord],
    dataset: str,
    same: Equivalence,
) -> MethodSummary:
    """A method's summary from its result records (infrastructure failures kept apart)."""
    graded: dict[str, list[float]] = defaultdict(list)
    ttc: dict[str, list[float]] = defaultdict(list)
    prompt_tokens: list[int] = []
    for r in records:
        if r.failed:
            continue
        ttc[r.id].append(float(r.ttc_tokens))
        prompt_tokens.append(r.max_prompt_tokens)
        if r.correct is not None:  # solved or not: a code run passes only with every test
            graded[r.id].append(1.0 if r.correct else 0.0)
    ok = [r for r in records if not r.failed]
    outcomes = (metrics.classify_outcome(r.correct, failed=r.failed) for r in records)
    emergent, cross_check, solipsism = _synthesis_analyses([r for r in ok if r.ref_correct], same)
    return MethodSummary(
        name=method.name,
        family=method.family,
        trajectories=method.trajectories,
        dataset=dataset,
        pass_at_1=metrics.pass_at_1(graded) if graded else None,
        mean_ttc_tokens=metrics.mean_ttc(ttc) if ttc else None,
        max_context_tokens=metrics.largest_context(r.max_context_tokens for r in ok),
        mean_prompt_tokens=sum(prompt_tokens) / len(prompt_tokens) if prompt_tokens else None,
        max_prompt_tokens=max(prompt_tokens) if prompt_tokens else None,
        widths=tuple(getattr(method, "widths", ())),
        accuracy_per_round=metrics.accuracy_per_round(r.round_correct for r in ok),
        emergent=emergent,
        cross_check=cross_check,
        solipsism=solipsism,
        outcomes=metrics.count_outcomes(outcomes),
        extra={
            "results": len(records),
            "pass_at_k": pass_at_k_table(graded),
            "statuses": dict(sorted(Counter(r.status for r in records).items())),
        },
    )


def _synthesis_analyses(
    with_refs: Sequence[RunRecord], same: Equivalence
) -> tuple[metrics.Rate | None, metrics.MarkerStats | None, metrics.Rate | None]:
    """Emergent correctness, cross-checks and solipsism of the final syntheses; None
    each when no run had references."""
    if not with_refs:
        return None, None, None
    cases = [(r.extracted, r.ref_answers) for r in with_refs]
    if isinstance(same, SameMemo):  # the pairs the rate compares, in one batch
        same.settle(metrics.solipsism_pairs(cases))
    return (
        metrics.emergent_correctness((r.ref_correct, r.correct) for r in with_refs),
        metrics.cross_check_counts(r.marker_counts() for r in with_refs),
        metrics.solipsism_rate(cases, same=same),
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
