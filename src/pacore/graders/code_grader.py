"""Code graded by running it against tests, each run in its own sandbox (`sandbox.py`).

The program is `extract.extract_program(prediction)` (last fenced python block of the
conclusion, ...). Two kinds of tests, told apart by the type of `GradeInput.tests`:

- stdin/stdout cases, a list of `{"input", "output"}` (CodeContests, LiveCodeBench):
  one execution per case; a case passes when the program exits 0 and its stdout equals
  the expected output line by line, after stripping each line, squeezing runs of
  whitespace and ignoring leading and trailing blank lines. Score = passed / cases
  (the paper's soft reward).
- a functional test, a source string defining `check(candidate)` (HumanEval): the
  program runs in the sandbox and the tests in a trusted checker process that calls it
  (`checker.py`); score 1 only on the checker's authenticated pass, never from the
  program's exit status or output. When the program does not define `entry_point`, it is
  taken as a completion of the prompt (`prompt + completion`, HumanEval's own format);
  when it does, the prompt's import lines are put in front (models often drop
  `from typing import List`).

Untrusted code runs only under `namespace` isolation: with the `fallback` mode (audit
hooks, a tripwire) the grader refuses to run anything unless `unsafe_sandbox=True`
(`pacore eval --unsafe-sandbox`), see `sandbox.py`.

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
from pacore.errors import ConfigError
from pacore.graders.base import Grade, GradeInput, GraderBase, TestCase
from pacore.graders.checker import FunctionalTest, Verdict, run_functional
from pacore.graders.extract import extract_program
from pacore.graders.sandbox import Execution, Isolation, Limits, Sandbox

_IMPORT = re.compile(r"^(?:import|from)\s+\S.*$", re.MULTILINE)


@dataclass(frozen=True)
class _Run:
    """One execution a grade needs."""

    item: int
    program: str
    """The program as graded (for functional tests: before the tests are appended)."""
    stdin: str
    expected: str | None
    """Expected stdout (stdin tests); None for a functional test."""
    limits: Limits
    functional: FunctionalTest | None = None
    """The test the trusted checker runs against the program (functional tests)."""


class CodeGrader(GraderBase):
    """Runs extracted programs against stdin/stdout or `check(candidate)` tests.

    `sandbox` (else one built from `limits` and `isolation`) runs every execution;
    `workers` executions run at a time. `unsafe_sandbox` allows the `fallback` isolation,
    which cannot contain a hostile program (`sandbox.py`); without it, a grader whose
    sandbox has only that mode raises `ConfigError` before running anything.
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
        unsafe_sandbox: bool = False,
    ) -> None:
        """A grader with its sandbox and settings (see the class docstring)."""
        self.sandbox = sandbox or Sandbox(limits, isolation=isolation)
        self.workers = workers or 2 * (os.cpu_count() or 1)
        self.time_limit_factor = time_limit_factor
        self.startup_s = startup_s
        self.unsafe_sandbox = unsafe_sandbox
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
            functional = isinstance(sample.tests, str)
            program = extract_program(
                prediction,
                entry=(sample.entry_point or None) if functional else None,
                stdin=not functional,
            )
            planned = self._plan(i, prediction, program, sample)
            if isinstance(planned, Grade):
                grades[i] = planned
            else:
                runs += planned
        results: list[Execution | Verdict] = []
        if runs:
            self.check_isolation()  # also probes once, before the threads race to do it
            results = list(self._pool().map(self._execute, runs))
        by_item: dict[int, list[tuple[_Run, Execution | Verdict]]] = {}
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

    def check_isolation(self) -> None:
        """Raise `ConfigError` if only the fallback sandbox is here and it was not allowed."""
        if self.sandbox.mode == "fallback" and not self.unsafe_sandbox:
            raise ConfigError(
                f"code grader: no namespace isolation ({self.sandbox.mode_reason}); the "
                "fallback sandbox cannot contain untrusted code (pass --unsafe-sandbox, "
                "or unsafe_sandbox=True, to run it anyway)"
            )

    def _execute(self, run: _Run) -> Execution | Verdict:
        if run.functional is not None:
            return run_functional(self.sandbox, run.program, run.functional, run.limits)
        return self.sandbox.run(run.program, run.stdin, limits=run.limits)

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
            test = FunctionalTest(sample.prompt or "", tests, sample.entry_point)
            return [_Run(item, source, "", None, limits, test)]
        if not tests:
            return Grade.ungradable("no tests", program)
        if program is None:
            return Grade(0.0, False, None, "no program")
        return [
            _Run(item, program, _text(case.get("input")), _text(case.get("output")), limits)
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
        return _with_prompt(program, prompt, entry)
    completion = program if program is not None else conclusion(prediction)
    return prompt + completion


def _with_prompt(program: str, prompt: str, entry: str) -> str:
    """A program that defines the entry point itself, with what it may use of the prompt:
    its imports (after the program's own `from __future__` lines, which must come
    first) and its other functions and classes the program does not define (HumanEval's
    `is_palindrome`, which the canonical `make_palindrome` calls)."""
    imports = [line for line in _IMPORT.findall(prompt) if not line.startswith("from __future__")]
    helpers = _helpers(prompt, program, entry)
    lines = program.splitlines(keepends=True)
    futures = [i for i, line in enumerate(lines) if line.startswith("from __future__")]
    at = futures[-1] + 1 if futures else 0
    head = "".join(f"{line}\n" for line in imports)
    body = "".join(lines[:at]) + head + "".join(lines[at:])
    return body + ("\n\n" + "\n\n".join(helpers) + "\n" if helpers else "")


def _helpers(prompt: str, program: str, entry: str) -> list[str]:
    """The prompt's top-level functions and classes other than `entry` that the program
    does not define, as source."""
    import ast

    try:
        given, written = ast.parse(prompt), ast.parse(program)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return []
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    defined = {node.name for node in written.body if isinstance(node, kinds)}
    lines = prompt.splitlines()
    return [
        "\n".join(lines[min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1 : end])
        for node in given.body
        if isinstance(node, kinds) and node.name != entry and node.name not in defined
        if (end := node.end_lineno) is not None
    ]


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


def _score(done: list[tuple[_Run, Execution | Verdict]]) -> Grade:
    run, first = done[0]
    program = run.program
    executions = [r.execution if isinstance(r, Verdict) else r for _, r in done]
    broken = [r for r in executions if r.status == "sandbox_error"]
    if broken:
        return Grade.ungradable(f"sandbox error: {_failure(broken[0])}", program)
    if isinstance(first, Verdict):  # functional: the checker's verdict, nothing else
        return _functional_grade(first, program)
    outcomes = [r.ok and _same_output(r.stdout, run.expected or "") for run, r in
                zip((d[0] for d in done), executions, strict=True)]  # fmt: skip
    passed_count = sum(outcomes)
    total = len(outcomes)
    reason = f"{passed_count}/{total} tests passed"
    first_failure = next((r for r, ok in zip(executions, outcomes, strict=True) if not ok), None)
    if first_failure is not None:
        why = "wrong output" if first_failure.ok else _failure(first_failure)
        reason += f"; first failure: {why}"
    return Grade(passed_count / total, passed_count == total, program, reason)


def _functional_grade(verdict: Verdict, program: str) -> Grade:
    if verdict.passed is None:
        return Grade.ungradable(f"broken test: {verdict.reason}", program)
    if verdict.passed:
        return Grade(1.0, True, program, "passed")
    execution = verdict.execution
    ended = verdict.reason == "the program ended" and not execution.ok
    why = _failure(execution) if ended or execution.status == "timeout" else verdict.reason
    return Grade(0.0, False, program, f"failed: {why}")
