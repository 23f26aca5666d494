"""Math answers checked for equivalence with math-verify, in a pool of worker processes.

`MathGrader.grade` finds what to check (`extract.math_target`: the final boxes of the
conclusion by the rule for several boxes, a plain-text interval, or else the conclusion
itself for math-verify's own extraction, with the project's rules as its fallback) and
compares it with the gold:

1. decided here, without math-verify, by the named rules of `math_rules` (`decide`): the
   same normal form, word answers, two plain rationals (exactly: `0.001736` is not
   `\\frac{1}{576}`);
2. a (gold, answer, text) item seen before: the bounded LRU cache, keyed by the strings;
3. otherwise a worker process: math-verify's extraction for free text, the rules on both
   sides, an exact check for decimal answers, then math-verify 0.9.0's
   `verify(gold, answer)`, gold first (`_math_worker`).

Grades: an answer that does not parse is wrong; a gold answer that does not parse to
an expression is ungradable (`correct=None`), never wrong; an answer that takes longer
than `timeout_s` is wrong with reason `timeout` (a gold that does is ungradable).

Why processes: math-verify's timeouts rely on `signal.alarm`, which only works in a
main thread, and sympy can hang. The pool is a `ProcessPoolExecutor` (spawned lazily,
`workers` processes, reused across calls). Work goes out in batches grouped by gold
answer, so each worker parses a gold once (`_math_worker` caches parsed golds). A worker
stuck on one item past `hard_timeout_s` is killed by pid (it may be stuck where no
signal handler runs); the pool is then rebuilt, the item is graded `timeout` and the
other unfinished items are retried.

`equivalent(a, b)` is the same check on two bare answers; `same(a, b)` (the grader
contract's answer equivalence, which clusters self-consistency votes) is the same normal
form or `equivalent`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from pacore.errors import ConfigError, PacoreError
from pacore.graders import _math_worker as worker
from pacore.graders import math_rules as rules
from pacore.graders.base import Grade, GradeInput, GraderBase
from pacore.graders.extract import math_target, normalize_answer

MISSING_MATH_VERIFY = "math grading needs math-verify: pip install 'pacore[eval]'"
CRASHED = "crashed"
Key = tuple[str, str, str]  # (gold, answer, conclusion text or "")
Result = tuple[str, str | None]  # (code, the answer checked)
_REASONS = {
    worker.CORRECT: "correct",
    worker.WRONG: "wrong",
    worker.NO_ANSWER: "no answer",
    worker.PRED_UNPARSABLE: "answer unparsable",
    worker.GOLD_UNPARSABLE: "gold unparsable",
    worker.GOLD_TIMEOUT: "gold unparsable (timeout)",
    worker.TIMEOUT: "timeout",
    CRASHED: "grader crashed",
}


def require_math_verify() -> None:
    """Raise `ConfigError` naming the extra when math-verify is not installed."""
    if importlib.util.find_spec("math_verify") is None:
        raise ConfigError(MISSING_MATH_VERIFY)


@dataclass(frozen=True)
class MathCheck:
    """Settings of the math-verify worker pool."""

    workers: int | None = None
    """Worker processes; None: the CPUs this process may use."""
    timeout_s: float = 5.0
    """Per item (parse gold, parse answer, verify): past it, the answer is wrong (`timeout`)."""
    hard_timeout_s: float | None = None
    """A worker stuck this long on one item is killed; None: `2 × timeout_s + 1`."""
    batch_size: int = 64
    """Largest number of items per task sent to a worker."""
    worker_memory_bytes: int | None = 4 << 30
    """Address-space limit per worker, so a runaway parse fails instead of eating RAM."""


class MathGrader(GraderBase):
    """Grades by mathematical equivalence with math-verify (see the module docstring)."""

    name = "math"

    def __init__(self, check: MathCheck | None = None, *, cache_size: int = 65536) -> None:
        """A grader with its own (lazily started) pool and a cache of `cache_size` pairs."""
        require_math_verify()
        self.check = check or MathCheck()
        self.cache_size = cache_size
        self.cache_hits = 0
        self.cache_misses = 0
        self._cache: OrderedDict[Key, Result] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._pool = _VerifyPool(self.check)

    # ------------------------------------------------------------------ public

    def grade(self, prediction: str, sample: GradeInput) -> Grade:
        """The grade of one prediction (see the module docstring)."""
        return self.grade_many([(prediction, sample)])[0]

    def grade_many(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade]:
        """Grades in order; items not decided here go to the pool in one batch."""
        grades, pending = self._plan(items)
        results = self._results(list(pending))
        for key, (code, extracted) in zip(pending, results, strict=True):
            for i, rule in pending[key]:
                grades[i] = _grade(code, extracted, _suffix(rule, key, extracted))
        return [g for g in grades if g is not None]

    def grade_quick(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade | None]:
        """The grades decided without the worker pool (no answer, the normalised pair's
        rules, a pair the pool checked before), None for the rest: `grade_many` would
        send those to the pool."""
        grades, pending = self._plan(items)
        for key, places in pending.items():
            known = self._known(key)
            if known is None:
                continue
            code, extracted = known
            for i, rule in places:
                grades[i] = _grade(code, extracted, _suffix(rule, key, extracted))
        return grades

    def _plan(
        self, items: Sequence[tuple[str, GradeInput]]
    ) -> tuple[list[Grade | None], dict[Key, list[tuple[int, str]]]]:
        """The grades decided by extraction alone, and the (gold, answer, text) keys left
        to check with the places (and rules) of the items that share each."""
        grades: list[Grade | None] = [None] * len(items)
        pending: dict[Key, list[tuple[int, str]]] = {}
        for i, (prediction, sample) in enumerate(items):
            found = math_target(prediction, sample.answer)
            if sample.answer is None or not sample.answer.strip():
                grades[i] = Grade.ungradable("no gold answer", found.answer if found else None)
            elif found is None:
                grades[i] = Grade.decided(False, None, "no answer")
            elif found.rule == "hedged":
                grades[i] = Grade.decided(False, None, "hedged (boxes offering alternatives)")
            else:
                key = (sample.answer.strip(), found.answer or "", found.text)
                pending.setdefault(key, []).append((i, found.rule))
        return grades, pending

    def _known(self, key: Key) -> Result | None:
        """The result of `key` by the rules or from the cache, None when only the pool can
        tell (counted as neither a hit nor a miss)."""
        fast = _fast_path(*key)
        if fast is not None:
            return fast, key[1]
        with self._cache_lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                self.cache_hits += 1
            return found

    def equivalent(self, a: str, b: str) -> bool:
        """Whether answer `b` is equivalent to answer `a` (`a` plays the gold)."""
        return self.equivalent_many([(a, b)])[0]

    def extract(self, text: str) -> str | None:
        """The answer a grade reads in `text` (`extract.math_target`), for votes and for
        the answers of references: a vote never counts another answer than the one
        graded (`$\\frac{14}{3}$` on the last line is `\\frac{14}{3}`, not its last
        number `3`; a plain-text interval, several boxes, a box taken back in words)."""
        found = math_target(text)
        return found.answer if found is not None else None

    def same(self, a: str, b: str) -> bool:
        """The same normal form, or mathematically equivalent (`equivalent`)."""
        return normalize_answer(a) == normalize_answer(b) or self.equivalent(a, b)

    def same_quick(self, pairs: Sequence[tuple[str, str]]) -> list[bool | None]:
        """`same` for the pairs decided without the worker pool (the same normal form,
        the normalised pair's rules, a pair the pool checked before), None for the rest."""
        out: list[bool | None] = []
        for a, b in pairs:
            if normalize_answer(a) == normalize_answer(b):
                out.append(True)
                continue
            known = self._known((a.strip(), b.strip(), ""))
            out.append(None if known is None else known[0] == worker.CORRECT)
        return out

    def same_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """`same` for each pair, in order: the pairs `same_quick` leaves go to the pool
        in one batch."""
        quick = self.same_quick(pairs)
        asked = iter(
            self.equivalent_many([p for p, q in zip(pairs, quick, strict=True) if q is None])
        )
        return [q if q is not None else next(asked) for q in quick]

    def equivalent_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """`equivalent` for many pairs at once (one round trip to the pool)."""
        keys = [(a.strip(), b.strip(), "") for a, b in pairs]
        return [code == worker.CORRECT for code, _ in self._results(keys)]

    def warm_up(self) -> None:
        """Start the worker processes now (they take ~1-2 s to import math-verify)."""
        self._pool.start()

    def close(self) -> None:
        """Shut the worker processes down."""
        self._pool.close()

    # ------------------------------------------------------------------ internals

    def _results(self, keys: list[Key]) -> list[Result]:
        results: list[Result | None] = [None] * len(keys)
        todo: dict[Key, list[int]] = {}
        with self._cache_lock:
            for i, key in enumerate(keys):
                fast = _fast_path(*key)
                if fast is not None:
                    results[i] = fast, key[1]
                elif key in self._cache:
                    self._cache.move_to_end(key)
                    results[i] = self._cache[key]
                    self.cache_hits += 1
                else:
                    todo.setdefault(key, []).append(i)
            self.cache_misses += len(todo)
        if todo:
            checked = self._pool.check(list(todo))
            with self._cache_lock:
                for key, result in zip(todo, checked, strict=True):
                    for i in todo[key]:
                        results[i] = result
                    if result[0] != CRASHED:
                        self._cache[key] = result
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return [r if r is not None else (CRASHED, None) for r in results]


def _fast_path(gold: str, answer: str, text: str) -> str | None:
    """A verdict the worker would give too, found without it (`math_rules.decide` on the
    normalised pair); never for free text, which math-verify reads first."""
    if text or not answer:
        return None
    return rules.decide(*rules.normalize_pair(gold, answer))


def _suffix(rule: str, key: Key, extracted: str | None) -> str:
    """` (rule)` for answers not taken from a box: the fallback's or math-verify's."""
    if rule == "boxed":
        return ""
    if key[2] and extracted is not None and extracted != key[1]:
        return " (free text)"
    return f" ({rule})" if rule else ""


def _grade(code: str, extracted: str | None, suffix: str) -> Grade:
    reason = _REASONS[code] + (suffix if code != worker.NO_ANSWER else "")
    if code in (worker.GOLD_UNPARSABLE, worker.GOLD_TIMEOUT, CRASHED):
        return Grade.ungradable(reason, extracted)
    return Grade.decided(code == worker.CORRECT, extracted, reason)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _VerifyPool:
    """A lazily spawned, reused process pool that never lets one item hang a batch."""

    def __init__(self, settings: MathCheck) -> None:
        self.settings = settings
        self.workers = settings.workers or _cpus()
        self.hard_timeout_s = settings.hard_timeout_s or 2 * settings.timeout_s + 1
        self.slots = 4 * self.workers
        self._ctx = multiprocessing.get_context("spawn")
        self._progress = self._ctx.Array("d", 3 * self.slots, lock=False)
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.restarts = 0

    def start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=self._ctx,
                initializer=worker.init_worker,
                initargs=(
                    self._progress,
                    self.settings.timeout_s,
                    self.settings.worker_memory_bytes,
                    os.getpid(),
                ),
            )
        return self._executor

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None

    def check(self, pairs: list[Key]) -> list[Result]:
        """Result codes for unique (gold, answer) pairs, in order."""
        with self._lock:
            return self._check(pairs)

    def _check(self, pairs: list[Key]) -> list[Result]:
        results: list[Result | None] = [None] * len(pairs)
        crashes = [0] * len(pairs)
        queue = self._batches(pairs)
        running: dict[Future[list[Result]], tuple[int, list[int]]] = {}
        free = list(range(self.slots))
        fruitless_restarts = 0
        while queue or running:
            executor = self.start()
            while queue and free:
                batch, slot = queue.pop(), free.pop()
                self._progress[3 * slot] = -1
                future = executor.submit(worker.check_batch, [pairs[i] for i in batch], slot)
                running[future] = (slot, batch)
            done, _ = wait(running, timeout=0.25, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                error = future.exception()
                if isinstance(error, BrokenProcessPool):
                    broken = True
                    continue
                if error is not None:
                    raise error
                slot, batch = running.pop(future)
                free.append(slot)
                for i, code in zip(batch, future.result(), strict=True):
                    results[i] = code
                fruitless_restarts = 0
            killed = set() if broken else self._kill_stuck(running)
            if broken or killed:
                fruitless_restarts += 0 if killed else 1  # a death we did not cause
                if fruitless_restarts > 3:
                    raise PacoreError("math grading workers keep dying (see their stderr)")
                queue.extend(self._recover(running, killed, results, crashes))
                free.extend(slot for slot, _ in running.values())
                running.clear()
        return [
            r if r is not None else (CRASHED, pairs[i][1] or None) for i, r in enumerate(results)
        ]

    def _batches(self, pairs: list[Key]) -> list[list[int]]:
        """Indices grouped by gold, cut into batches small enough to keep workers busy."""
        order = sorted(range(len(pairs)), key=lambda i: pairs[i][0])
        size = max(1, min(self.settings.batch_size, -(-len(pairs) // (4 * self.workers))))
        return [order[i : i + size] for i in range(0, len(order), size)][::-1]

    def _kill_stuck(self, running: dict[Future[list[Result]], tuple[int, list[int]]]) -> set[int]:
        """Kill workers stuck on one item past the hard timeout; the stuck items' indices."""
        now = time.monotonic()
        stuck: set[int] = set()
        for slot, batch in running.values():
            position = int(self._progress[3 * slot])
            started, pid = self._progress[3 * slot + 1], int(self._progress[3 * slot + 2])
            if position >= 0 and pid > 0 and now - started > self.hard_timeout_s:
                stuck.add(batch[position])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return stuck

    def _recover(
        self,
        running: dict[Future[list[Result]], tuple[int, list[int]]],
        killed: set[int],
        results: list[Result | None],
        crashes: list[int],
    ) -> list[list[int]]:
        """After the pool broke: grade what was stuck, requeue the rest, rebuild the pool."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self.restarts += 1
        for i in killed:
            results[i] = worker.TIMEOUT, None
        requeue = []
        for slot, batch in running.values():
            position = int(self._progress[3 * slot])
            if not killed and 0 <= position < len(batch):
                current = batch[position]  # a crash we did not cause: a suspect
                crashes[current] += 1
                if crashes[current] >= 2:
                    results[current] = CRASHED, None
            rest = [i for i in batch if results[i] is None]
            if rest:
                requeue.append(rest)
        return requeue
