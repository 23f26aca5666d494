"""Code graded by running it against tests, each run in its own sandbox (`sandbox.py`).

The program is `extract.extract_program(prediction)` (last fenced python block of the
conclusion, ...). Two kinds of tests, told apart by the type of `GradeInput.tests`:

- stdin/stdout cases, a list of `{"input", "output"}` (CodeContests, LiveCodeBench):
  one execution per case; a case passes when the program exits 0 and its stdout equals
  the expected output line by line, after stripping each line, squeezing runs of
  whitespace and ignoring leading and trailing blank lines. Score = passed / cases
  (the paper's soft reward).
- a functional test, a source string defining `check(candidate)` (HumanEval): one
  execution of `program + tests + check(entry_point)`; score 1 when it exits 0. When the
  program does not define `entry_point`, it is taken as a completion of the prompt
  (`prompt + completion`, HumanEval's own format); when it does, the prompt's import
  lines are put in front (models often drop `from typing import List`).

Time: with a per-test `time_limit_s` in the sample, the CPU limit (`RLIMIT_CPU`, whole
seconds) is `time_limit_s × time_limit_factor` and the wall-clock limit, only a backstop
for programs that sleep or block, is twice that plus `startup_s`; so running more
sandboxes than CPUs slows programs down without failing them. Without one, `limits`
applies. A sandbox that could not be set up makes the grade ungradable
(`correct=None`), not wrong.

Parallelism: `workers` sandboxes at a time (default 2 × CPUs: much of a sandbox's life is
the kernel setting up and tearing down namespaces, not CPU).
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from pacore.core.compaction import conclusion
from pacore.eval.graders.base import Grade, GradeInput, GraderBase, TestCase
from pacore.eval.graders.extract import extract_program
from pacore.eval.graders.sandbox import Execution, Isolation, Limits, Sandbox

_IMPORT = re.compile(r"^(?:import|from)\s+\S.*$", re.MULTILINE)


@dataclass(frozen=True)
class _Run:
    """One execution a grade needs."""

    item: int
    program: str
    """The program as graded (for functional tests: before the tests are appended)."""
    source: str
    stdin: str
    expected: str | None
    """Expected stdout (stdin tests); None for a functional test (exit status decides)."""
    limits: Limits


class CodeGrader(GraderBase):
    """Runs extracted programs against stdin/stdout or `check(candidate)` tests.

    `sandbox` (else one built from `limits` and `isolation`) runs every execution;
    `workers` executions run at a time.
    """

    name = "code"

    def __init__(
        self,
        sandbox: Sandbox | None = None,
        *,
        limits: Limits | None = None,
        isolation: Isolation = "auto",
        workers: int | None = None,
        time_limit_factor: float = 1.0,
        startup_s: float = 1.0,
    ) -> None:
        """A grader with its sandbox and settings (see the class docstring)."""
        self.sandbox = sandbox or Sandbox(limits, isolation=isolation)
        self.workers = workers or 2 * (os.cpu_count() or 1)
        self.time_limit_factor = time_limit_factor
        self.startup_s = startup_s
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def grade(self, prediction: str, sample: GradeInput) -> Grade:
        """Run one prediction's program against its tests."""
        return self.grade_many([(prediction, sample)])[0]

    def grade_many(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade]:
        """Grades in order; every execution of the batch shares the sandbox pool."""
        grades: list[Grade | None] = [None] * len(items)
        runs: list[_Run] = []
        for i, (prediction, sample) in enumerate(items):
            program = extract_program(prediction)
            planned = self._plan(i, prediction, program, sample)
            if isinstance(planned, Grade):
                grades[i] = planned
            else:
                runs += planned
        results: list[Execution] = []
        if runs:
            self.sandbox.mode  # noqa: B018 - probe once, before the threads race to do it
            results = list(self._pool().map(self._execute, runs))
        by_item: dict[int, list[tuple[_Run, Execution]]] = {}
        for run, result in zip(runs, results, strict=True):
            by_item.setdefault(run.item, []).append((run, result))
        for i, done in by_item.items():
            grades[i] = _score(done)
        return [g for g in grades if g is not None]

    def extract(self, text: str) -> str | None:
        """None: programs are not voted on (there is no answer to compare)."""
        return None

    def same(self, a: str, b: str) -> bool:
        """Never: programs are not compared as answers."""
        return False

    def close(self) -> None:
        """Stop the sandbox threads."""
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    # ------------------------------------------------------------------ internals

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox")
            return self._executor

    def _execute(self, run: _Run) -> Execution:
        return self.sandbox.run(run.source, run.stdin, limits=run.limits)

    def _limits(self, sample: GradeInput) -> Limits:
        base = self.sandbox.limits
        if sample.time_limit_s is None:
            return base
        cpu = sample.time_limit_s * self.time_limit_factor
        return replace(base, cpu_s=cpu, wall_s=2 * cpu + self.startup_s)

    def _plan(
        self, item: int, prediction: str, program: str | None, sample: GradeInput
    ) -> Grade | list[_Run]:
        tests = sample.tests
        limits = self._limits(sample)
        if isinstance(tests, str):
            if not sample.entry_point:
                return Grade.ungradable("functional tests without entry_point", program)
            source = _functional_program(prediction, program, sample)
            check = f"{source}\n\n{tests}\n\ncheck({sample.entry_point})\n"
            return [_Run(item, source, check, "", None, limits)]
        if not tests:
            return Grade.ungradable("no tests", program)
        if program is None:
            return Grade(0.0, False, None, "no program")
        return [
            _Run(
                item, program, program, _text(case.get("input")), _text(case.get("output")), limits
            )
            for case in _cases(tests)
        ]


def _cases(tests: Sequence[TestCase]) -> list[TestCase]:
    return [case for case in tests if isinstance(case, dict)]


def _text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _functional_program(prediction: str, program: str | None, sample: GradeInput) -> str:
    prompt = sample.prompt or ""
    entry = sample.entry_point or ""
    defines = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry)}\s*\(", re.MULTILINE)
    if program is not None and defines.search(program):
        imports = "\n".join(_IMPORT.findall(prompt))
        return f"{imports}\n{program}" if imports else program
    completion = program if program is not None else conclusion(prediction)
    return prompt + completion


def _same_output(actual: str, expected: str) -> bool:
    return _lines(actual) == _lines(expected)


def _lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.strip().splitlines()]


def _failure(result: Execution) -> str:
    if result.status == "timeout":
        return "timeout"
    if result.signal == signal.SIGXCPU:
        return "CPU time limit"
    if result.signal == signal.SIGKILL:
        return "killed (CPU or memory limit)"
    if result.signal is not None:
        return f"killed by signal {result.signal}"
    last = result.stderr.strip().splitlines()[-1:] or [f"exit {result.exit_code}"]
    return last[0][:120]


def _score(done: list[tuple[_Run, Execution]]) -> Grade:
    run, result = done[0]
    program = run.program
    broken = [r for _, r in done if r.status == "sandbox_error"]
    if broken:
        return Grade.ungradable(f"sandbox error: {_failure(broken[0])}", program)
    if run.expected is None:  # functional: one check() run
        passed = result.ok
        reason = "passed" if passed else f"failed: {_failure(result)}"
        return Grade(1.0 if passed else 0.0, passed, program, reason)
    outcomes = [r.ok and _same_output(r.stdout, run.expected or "") for run, r in done]
    passed_count = sum(outcomes)
    total = len(outcomes)
    reason = f"{passed_count}/{total} tests passed"
    first_failure = next((r for (_, r), ok in zip(done, outcomes, strict=True) if not ok), None)
    if first_failure is not None:
        why = "wrong output" if first_failure.ok else _failure(first_failure)
        reason += f"; first failure: {why}"
    return Grade(passed_count / total, passed_count == total, program, reason)
