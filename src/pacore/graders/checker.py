"""Functional tests with a verdict the program under test cannot forge.

The program and its test never share a process. `run_functional` starts two:

    checker  trusted, outside the sandbox (`_checker.py`): runs the dataset's prompt and
             tests, and calls `check(candidate)` where `candidate` is a proxy
    sandbox  the program (`Sandbox.run(..., calls=Calls(...))`): its own code first, then
             it answers the proxy's calls of `entry`, one line per call

They talk over two pipes made for this run only. What crosses them is plain data both
ways (`repr` text, which the checker decodes with a literal-only parser), so an answer
can be wrong but cannot be an object whose `__eq__` lies. The verdict is written by the
checker alone, on its own stdout, which the sandbox never holds: `<nonce> 0 passed` then
`<nonce> end`, where the nonce is drawn per run and reaches the checker on its stdin (not
its argv or environment, which `/proc` shows to anyone). The test passes only when
exactly those two lines arrive and the checker exits 0; a missing, malformed or
duplicated record, a checker that dies, or a wall-clock timeout is a failure.

So nothing the program does can turn into a pass: exiting (at import or inside a call,
by any route, with any status), hooks, patched builtins, threads, forks and signals only
end the conversation early, which fails the test; writing to its stdout, stderr or any
descriptor it holds reaches only the harness's files or the proxy, which rejects what is
not an answer. The tests, and so the expected values, never enter the sandbox.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pacore.errors import ConfigError
from pacore.graders.sandbox import Calls, Execution, Limits, Sandbox

CHECKER = Path(__file__).with_name("_checker.py")
_COMMAND = (
    f"import sys; sys.path.insert(0, {str(CHECKER.parent)!r}); from _checker import main; main()"
)


@dataclass(frozen=True)
class Verdict:
    """The checker's account of one functional test, with the sandbox's."""

    passed: bool | None
    """True only on an authenticated pass; None when the test itself is broken."""
    reason: str
    execution: Execution


@dataclass(frozen=True)
class FunctionalTest:
    """What the trusted checker runs: the dataset's prompt and tests, and the name called."""

    prompt: str
    tests: str
    entry: str


def run_functional(sandbox: Sandbox, program: str, test: FunctionalTest, limits: Limits) -> Verdict:
    """Run `program` in `sandbox` and `test` in a trusted checker that calls into it."""
    nonce = secrets.token_hex(16)
    calls_in, calls_to_program = os.pipe()  # checker -> program
    answers_from_program, answers_out = os.pipe()  # program -> checker
    try:
        checker = subprocess.Popen(
            [sandbox.python, "-I", "-S", "-c", _COMMAND],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            pass_fds=(calls_to_program, answers_from_program), start_new_session=True,
            cwd="/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )  # fmt: skip
    except OSError as exc:
        for fd in (calls_in, answers_out):
            os.close(fd)
        raise ConfigError(f"code grader: cannot start the checker: {exc}") from None
    finally:
        os.close(calls_to_program)
        os.close(answers_from_program)
    config = {
        "nonce": nonce,
        "prompt": test.prompt,
        "tests": test.tests,
        "entry": test.entry,
        "calls_in": calls_to_program,
        "calls_out": answers_from_program,
    }
    assert checker.stdin is not None
    with contextlib.suppress(OSError):  # a checker already gone is judged by its records
        checker.stdin.write(json.dumps(config).encode() + b"\n")
        checker.stdin.flush()
    execution = sandbox.run(
        program, "", limits=limits, calls=Calls(test.entry, calls_in, answers_out)
    )
    try:
        records, _ = checker.communicate(timeout=limits.wall_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(checker.pid, signal.SIGKILL)
        records, _ = checker.communicate()
        return Verdict(False, "the checker timed out", execution)
    return read_verdict(records, nonce, checker.returncode, execution)


def read_verdict(records: bytes, nonce: str, returncode: int, execution: Execution) -> Verdict:
    """The verdict in the checker's records: exactly one, authenticated, then `end`."""
    lines = records.decode("utf-8", "replace").splitlines()
    if returncode != 0 or len(lines) != 2 or lines[1] != f"{nonce} end":
        return Verdict(False, "no authenticated verdict", execution)
    head, _, rest = lines[0].partition(" 0 ")
    outcome, _, reason = rest.partition(" ")
    if head != nonce:
        return Verdict(False, "no authenticated verdict", execution)
    if outcome == "passed" and not reason:
        return Verdict(True, "passed", execution)
    if outcome == "failed":
        return Verdict(False, reason, execution)
    if outcome == "error":
        return Verdict(None, reason, execution)
    return Verdict(False, "no authenticated verdict", execution)
