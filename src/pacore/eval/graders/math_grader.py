"""Math answers checked for equivalence with math-verify, in a pool of worker processes.

`MathGrader.grade` extracts the answer (`extract.extract_answer`: last `\\boxed{}` of the
conclusion, then the documented fallbacks) and compares it with the gold answer:

1. decided here when math-verify could only agree: the same normal form
   (`extract.normalize_answer`), or two plain numbers (`12`, `-0.25`, `3/4`, `\\frac34`)
   that are equal, are different integers, or differ by more than its rounding;
2. a (gold, answer) pair seen before: the bounded LRU cache, keyed by the exact strings;
3. otherwise math-verify 0.9.0 in a worker process: `parse(gold)`, `parse(answer)`,
   `verify(gold, answer)`, gold first.

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
import re
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from fractions import Fraction

from pacore.errors import ConfigError, PacoreError
from pacore.eval.graders import _math_worker as worker
from pacore.eval.graders.base import Grade, GradeInput, GraderBase
from pacore.eval.graders.extract import extract_answer, normalize_answer

MISSING_MATH_VERIFY = "math grading needs math-verify: pip install 'pacore[eval]'"
CRASHED = "crashed"
_INTEGER = re.compile(r"-?\d+")
_RATIONAL = re.compile(
    r"(?P<sign>-)?(?:(?P<number>\d+(?:\.\d+)?|\.\d+)"
    r"|(?P<num>\d+)/(?P<den>\d+)|\\frac(?:\{(?P<n2>\d+)\}\{(?P<d2>\d+)\}|(?P<n3>\d)(?P<d3>\d)))"
)
_REASONS = {
    worker.CORRECT: "correct",
    worker.WRONG: "wrong",
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
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._pool = _VerifyPool(self.check)

    # ------------------------------------------------------------------ public

    def grade(self, prediction: str, sample: GradeInput) -> Grade:
        """The grade of one prediction (see the module docstring)."""
        return self.grade_many([(prediction, sample)])[0]

    def grade_many(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade]:
        """Grades in order; pairs not decided here go to the pool in one batch."""
        grades: list[Grade | None] = [None] * len(items)
        pending: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for i, (prediction, sample) in enumerate(items):
            found = extract_answer(prediction)
            suffix = "" if found is None or found.rule == "boxed" else f" ({found.rule})"
            if sample.answer is None or not sample.answer.strip():
                grades[i] = Grade.ungradable("no gold answer", found.answer if found else None)
            elif found is None:
                grades[i] = Grade.decided(False, None, "no answer")
            else:
                pending.setdefault((sample.answer.strip(), found.answer), []).append((i, suffix))
        codes = self._codes(list(pending))
        for key, code in zip(pending, codes, strict=True):
            for i, suffix in pending[key]:
                grades[i] = _grade(code, key[1], suffix)
        return [g for g in grades if g is not None]

    def equivalent(self, a: str, b: str) -> bool:
        """Whether answer `b` is equivalent to answer `a` (`a` plays the gold)."""
        return self.equivalent_many([(a, b)])[0]

    def same(self, a: str, b: str) -> bool:
        """The same normal form, or mathematically equivalent (`equivalent`)."""
        return normalize_answer(a) == normalize_answer(b) or self.equivalent(a, b)

    def equivalent_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """`equivalent` for many pairs at once (one round trip to the pool)."""
        keys = [(a.strip(), b.strip()) for a, b in pairs]
        return [code == worker.CORRECT for code in self._codes(keys)]

    def warm_up(self) -> None:
        """Start the worker processes now (they take ~1-2 s to import math-verify)."""
        self._pool.start()

    def close(self) -> None:
        """Shut the worker processes down."""
        self._pool.close()

    # ------------------------------------------------------------------ internals

    def _codes(self, keys: list[tuple[str, str]]) -> list[str]:
        codes: list[str | None] = [None] * len(keys)
        todo: dict[tuple[str, str], list[int]] = {}
        with self._cache_lock:
            for i, key in enumerate(keys):
                fast = _fast_path(*key)
                if fast is not None:
                    codes[i] = fast
                elif key in self._cache:
                    self._cache.move_to_end(key)
                    codes[i] = self._cache[key]
                    self.cache_hits += 1
                else:
                    todo.setdefault(key, []).append(i)
            self.cache_misses += len(todo)
        if todo:
            checked = self._pool.check(list(todo))
            with self._cache_lock:
                for key, code in zip(todo, checked, strict=True):
                    for i in todo[key]:
                        codes[i] = code
                    if code != CRASHED:
                        self._cache[key] = code
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return [c if c is not None else CRASHED for c in codes]


def _fast_path(gold: str, answer: str) -> str | None:
    """A verdict math-verify would give too, found without it: the same normal form, or
    two plain rational numbers that are equal, or clearly apart (integers: at all)."""
    g, a = normalize_answer(gold), normalize_answer(answer)
    if g == a and g:
        return worker.CORRECT
    x, y = _rational(g), _rational(a)
    if x is None or y is None:
        return None
    if x == y:
        return worker.CORRECT
    if x.denominator == y.denominator == 1 and _INTEGER.fullmatch(g) and _INTEGER.fullmatch(a):
        return worker.WRONG
    if abs(x - y) > Fraction(1, 10_000) * max(Fraction(1), abs(x)):  # beyond math-verify's rounding
        return worker.WRONG
    return None


def _rational(text: str) -> Fraction | None:
    """`12`, `-0.25`, `3/4`, `\\frac{3}{4}`, `-\\frac34` as a Fraction; None otherwise."""
    if len(text) > 200:
        return None
    match = _RATIONAL.fullmatch(text)
    if match is None:
        return None
    if match["number"] is not None:
        value = Fraction(match["number"])
    else:
        num = match["num"] or match["n2"] or match["n3"]
        den = int(match["den"] or match["d2"] or match["d3"])
        if den == 0:
            return None
        value = Fraction(int(num), den)
    return -value if match["sign"] else value


def _grade(code: str, extracted: str, suffix: str) -> Grade:
    reason = _REASONS[code] + suffix
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
                ),
            )
        return self._executor

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None

    def check(self, pairs: list[tuple[str, str]]) -> list[str]:
        """Result codes for unique (gold, answer) pairs, in order."""
        with self._lock:
            return self._check(pairs)

    def _check(self, pairs: list[tuple[str, str]]) -> list[str]:
        results: list[str | None] = [None] * len(pairs)
        crashes = [0] * len(pairs)
        queue = self._batches(pairs)
        running: dict[Future[list[str]], tuple[int, list[int]]] = {}
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
        return [r if r is not None else CRASHED for r in results]

    def _batches(self, pairs: list[tuple[str, str]]) -> list[list[int]]:
        """Indices grouped by gold, cut into batches small enough to keep workers busy."""
        order = sorted(range(len(pairs)), key=lambda i: pairs[i][0])
        size = max(1, min(self.settings.batch_size, -(-len(pairs) // (4 * self.workers))))
        return [order[i : i + size] for i in range(0, len(order), size)][::-1]

    def _kill_stuck(self, running: dict[Future[list[str]], tuple[int, list[int]]]) -> set[int]:
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
        running: dict[Future[list[str]], tuple[int, list[int]]],
        killed: set[int],
        results: list[str | None],
        crashes: list[int],
    ) -> list[list[int]]:
        """After the pool broke: grade what was stuck, requeue the rest, rebuild the pool."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self.restarts += 1
        for i in killed:
            results[i] = worker.TIMEOUT
        requeue = []
        for slot, batch in running.values():
            position = int(self._progress[3 * slot])
            if not killed and 0 <= position < len(batch):
                current = batch[position]  # a crash we did not cause: a suspect
                crashes[current] += 1
                if crashes[current] >= 2:
                    results[current] = CRASHED
            rest = [i for i in batch if results[i] is None]
            if rest:
                requeue.append(rest)
        return requeue
