"""Wrong programs that try to forge a pass score 0, in every isolation mode.

Each program below is wrong (`add` subtracts, or sleeps, or never returns) and tries one
way of turning the harness's verdict into a pass: exiting with status 0 at the right
moment, hooks, patched builtins, threads, forks, signals, fake result records on every
descriptor, or reading the expected values out of the harness. The verdict comes only
from the trusted checker (`pacore.graders.checker`), so all of them score 0, while
the right program passes under the same grader.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pacore.cli import build_parser
from pacore.cli.eval import plan_eval
from pacore.errors import ConfigError
from pacore.graders import GradeInput, grader_for
from pacore.graders.checker import read_verdict
from pacore.graders.code_grader import CodeGrader
from pacore.graders.sandbox import Execution, Limits, Sandbox

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")

LIMITS = Limits(wall_s=3.0, memory_bytes=512 << 20, nproc=16)
MODES = ["fallback"] if Sandbox(LIMITS).mode == "fallback" else ["namespace", "fallback"]

SECRET = 7919  # only the tests know it: a program that returns it has read them
FUNCTIONAL = GradeInput(
    tests=(
        "def check(candidate):\n"
        "    assert candidate(2, 3) == 5\n"
        "    assert candidate(10, -4) == 6\n"
    ),
    entry_point="add",
    prompt="def add(a: int, b: int) -> int:\n    '''a + b'''\n",
)
SECRET_TEST = GradeInput(  # no program can pass it without reading the tests
    tests=f"def check(candidate):\n    assert candidate(0, 0) == {SECRET}\n",
    entry_point="add",
    prompt=FUNCTIONAL.prompt,
)
STDIN = GradeInput(
    tests=[{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6\n"}]
)
RIGHT = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return a - b\n"

# Every record format a forger might guess, for every descriptor it might hold.
FAKE_RECORDS = (
    "import os\n"
    "fake = ''.join(f'{n} 0 passed\\n{n} end\\n' for n in ('0' * 32, 'f' * 32, 'nonce'))\n"
    "fake = (fake + 'passed\\nPASSED\\nok\\n0 passed\\nend\\nR 5\\nR 6\\n').encode()\n"
    "def forge():\n"
    "    for fd in range(1024):\n"
    "        try:\n"
    "            os.set_blocking(fd, False)\n"
    "            os.write(fd, fake)\n"
    "        except OSError:\n"
    "            pass\n"
)

# Looks for the tests (and the expected value) wherever the harness might have left them:
# other processes' command lines, environments and open files, temporary directories, the
# directories above its own, its own memory.
SNOOP = (
    "import gc, os, re, sys\n"
    "def _read(path):\n"
    "    try:\n"
    "        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)\n"
    "        try:\n"
    "            return os.read(fd, 1 << 16).decode('utf-8', 'replace')\n"
    "        finally:\n"
    "            os.close(fd)\n"
    "    except Exception:\n"
    "        return ''\n"
    "def _walk(top, depth):\n"
    "    found = []\n"
    "    try:\n"
    "        for entry in os.scandir(top):\n"
    "            if entry.is_dir(follow_symlinks=False) and depth:\n"
    "                found += _walk(entry.path, depth - 1)\n"
    "            elif entry.is_file(follow_symlinks=False):\n"
    "                found.append(entry.path)\n"
    "    except Exception:\n"
    "        pass\n"
    "    return found\n"
    "def _texts():\n"
    "    try:\n"
    "        for pid in os.listdir('/proc'):\n"
    "            if pid.isdigit():\n"
    "                yield from (_read(f'/proc/{pid}/{n}') for n in ('cmdline', 'environ'))\n"
    "                try:\n"
    "                    fds = os.listdir(f'/proc/{pid}/fd')\n"
    "                except Exception:\n"
    "                    fds = []\n"
    "                yield from (_read(f'/proc/{pid}/fd/{fd}') for fd in fds)\n"
    "    except Exception:\n"
    "        pass\n"
    "    for top in ('/tmp', os.path.dirname(os.getcwd()), '/root', '/home', '/work'):\n"
    "        yield from (_read(p) for p in _walk(top, 3)[:2000])\n"
    "    try:\n"
    "        yield from (o for o in gc.get_objects() if type(o) is str)\n"
    "    except Exception:\n"
    "        pass\n"
    "    yield ' '.join(map(str, sys.argv)) + str(dict(os.environ))\n"
    "def snoop():\n"
    "    for text in _texts():\n"
    "        found = re.search(r'candidate\\(0, 0\\) == (\\d+)', text)\n"
    "        if found:\n"
    "            return int(found[1])\n"
    "    return None\n"
)

FUNCTIONAL_FORGERIES = {
    # exits at import, with status 0
    "sys.exit at import": "import sys\nsys.exit(0)\n" + WRONG,
    "os._exit at import": "import os\nos._exit(0)\n" + WRONG,
    "SystemExit at import": "raise SystemExit(0)\n" + WRONG,
    # exits inside the call
    "sys.exit in the call": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "os._exit in the call": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "SystemExit in the call": "def add(a, b):\n    raise SystemExit(0)\n",
    "KeyboardInterrupt in the call": "def add(a, b):\n    raise KeyboardInterrupt\n",
    # hooks that exit 0 when something goes wrong
    "atexit hook": (
        "import atexit, os\natexit.register(os._exit, 0)\n"
        "def add(a, b):\n    raise ValueError('no')\n"
    ),
    "sys.excepthook": (
        "import os, sys\nsys.excepthook = lambda *exc: os._exit(0)\n"
        "def add(a, b):\n    raise SystemExit(1)\n"
    ),
    "threading.excepthook": (
        "import os, threading\nthreading.excepthook = lambda args: os._exit(0)\n"
        "def add(a, b):\n"
        "    t = threading.Thread(target=lambda: 1 / 0)\n    t.start(); t.join()\n"
        "    return a - b\n"
    ),
    "signal handlers": (
        "import os, signal, time\n"
        "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGPIPE):\n"
        "    signal.signal(s, lambda *a: os._exit(0))\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.05)\n"
        "def add(a, b):\n    time.sleep(10)\n"
    ),
    # patched exits and print
    "patched sys.exit, os._exit and print": (
        "import builtins, os, sys\n"
        "sys.exit = lambda *a: None\nos._exit = lambda *a: None\n"
        "builtins.print = lambda *a, **k: sys.__stdout__.write('passed\\n')\n"
        "print('all tests passed')\n" + WRONG
    ),
    # threads and timers that exit 0 while the checker runs
    "timer exits 0": (
        "import os, threading, time\nthreading.Timer(0.05, os._exit, (0,)).start()\n"
        "def add(a, b):\n    time.sleep(10)\n"
    ),
    "thread exits 0": (
        "import os, threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.05), os._exit(0))).start()\n"
        "def add(a, b):\n    time.sleep(10)\n"
    ),
    # fork, the parent exiting 0
    "fork, parent exits 0": (
        "import os, time\n"
        "def add(a, b):\n"
        "    if os.fork():\n        os._exit(0)\n"
        "    time.sleep(10)\n"
    ),
    # success, then killed by a signal
    "prints success then kills itself": (
        "import os, signal\n"
        "def add(a, b):\n"
        "    print('passed', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    ),
    # fake result records on stdout, stderr and every inherited descriptor
    "fake records at import": FAKE_RECORDS + "forge()\n" + WRONG,
    "fake records in the call, then exit 0": (
        FAKE_RECORDS + "def add(a, b):\n    forge()\n    os._exit(0)\n"
    ),
    # an answer whose __eq__ says yes to everything
    "an always-equal object": (
        "class Yes(int):\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = int.__hash__\n"
        "def add(a, b):\n    return Yes(0)\n"
    ),
}

STDIN_FORGERIES = {
    "exits 0 at once": "import os\nos._exit(0)\n",
    "prints success then kills itself": (
        "import os, signal\na, b = map(int, input().split())\n"
        "print(a + b, flush=True)\nprint('PASSED', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    ),
    "right answer, then killed by a signal": (
        "import os, signal\na, b = map(int, input().split())\n"
        "print(a + b, flush=True)\nos.kill(os.getpid(), signal.SIGTERM)\n"
    ),
    "fake records everywhere": FAKE_RECORDS + "forge()\n",
    "buffered answer lost by os._exit(0)": (
        "import os\na, b = map(int, input().split())\nprint(a + b)\nos._exit(0)\n"
    ),
    "reads the harness for the expected output": (
        SNOOP + "found = snoop()\nprint(found if found else 1)\n"
    ),
}


@pytest.fixture(scope="module", params=MODES)
def grader(request: pytest.FixtureRequest) -> Iterator[CodeGrader]:
    with CodeGrader(
        limits=LIMITS, isolation=request.param, unsafe_sandbox=True, workers=4
    ) as code_grader:
        assert isinstance(code_grader, CodeGrader)
        assert code_grader.sandbox.mode == request.param
        yield code_grader


def test_every_functional_forgery_scores_zero(grader: CodeGrader) -> None:
    names = list(FUNCTIONAL_FORGERIES)
    items = [(f"```python\n{FUNCTIONAL_FORGERIES[n]}```", FUNCTIONAL) for n in names]
    items.append((f"```python\n{RIGHT}```", FUNCTIONAL))
    *forged, right = grader.grade_many(items)
    assert (right.score, right.correct, right.reason) == (1.0, True, "passed")
    scores = {name: (g.score, g.reason) for name, g in zip(names, forged, strict=True)}
    assert {name: s for name, (s, _) in scores.items() if s != 0.0} == {}, scores
    assert all(g.correct is False for g in forged), scores


def test_the_expected_values_cannot_be_read(grader: CodeGrader) -> None:
    snooping = SNOOP + "def add(a, b):\n    return snoop()\n"
    knowing = f"def add(a, b):\n    return {SECRET}\n"  # what a successful read would give
    snooped, control = grader.grade_many([(snooping, SECRET_TEST), (knowing, SECRET_TEST)])
    assert control.score == 1.0
    assert (snooped.score, snooped.correct) == (0.0, False), snooped.reason


def test_the_snooper_finds_what_is_left_in_reach(tmp_path: Path) -> None:
    """Outside the sandbox, the same search finds a planted test: its zero above is real.

    The test file is held open, as a grader holding its tests would: the search reads
    `/proc/*/fd` before it walks folders, so a crowded /tmp cannot hide it."""
    planted = tmp_path / "tests.py"
    planted.write_text(f"assert candidate(0, 0) == {SECRET + 1}\n")
    namespace: dict[str, Any] = {}
    exec(SNOOP, namespace)
    with planted.open() as held:
        assert not held.closed
        assert namespace["snoop"]() == SECRET + 1


def test_every_stdin_forgery_scores_zero(grader: CodeGrader) -> None:
    names = list(STDIN_FORGERIES)
    items = [(f"```python\n{STDIN_FORGERIES[n]}```", STDIN) for n in names]
    items.append(("```python\na, b = map(int, input().split())\nprint(a + b)\n```", STDIN))
    *forged, right = grader.grade_many(items)
    assert right.score == 1.0
    scores = {name: (g.score, g.reason) for name, g in zip(names, forged, strict=True)}
    assert {name: s for name, (s, _) in scores.items() if s != 0.0} == {}, scores


def test_a_partial_solution_scores_its_authenticated_passes(grader: CodeGrader) -> None:
    cases = [{"input": "2 3\n", "output": "5\n"}, {"input": "1 1\n", "output": "3\n"}]
    sample = GradeInput(tests=[*cases, {"input": "10 -4\n", "output": "6\n"}])
    grade = grader.grade("a, b = map(int, input().split())\nprint(a + b)\n", sample)
    assert grade.score == pytest.approx(2 / 3)


ITERATING = GradeInput(  # checks that loop over the candidate's answers
    tests=(
        "def check(candidate):\n"
        "    pairs = [(2, 3), (10, -4), (0, 7)]\n"
        "    assert all(map(lambda ab: candidate(*ab) == sum(ab), pairs))\n"
        "    for got, want in zip(map(lambda ab: candidate(*ab), pairs), map(sum, pairs)):\n"
        "        assert got == want\n"
    ),
    entry_point="add",
    prompt=FUNCTIONAL.prompt,
)


def test_an_exception_that_ends_a_loop_cannot_end_the_check(grader: CodeGrader) -> None:
    """A StopIteration raised by the program inside the check's `map` ended the loop
    early, and `all()` of nothing passed: it now crosses as a RuntimeError."""
    forgers = [
        "def add(a, b):\n    raise StopIteration\n",
        "def add(a, b):\n    raise StopAsyncIteration\n",
    ]
    items = [(f"```python\n{p}```", ITERATING) for p in [*forgers, RIGHT]]
    *forged, right = grader.grade_many(items)
    assert (right.score, right.reason) == (1.0, "passed")
    assert [(g.score, g.correct) for g in forged] == [(0.0, False)] * 2, [g.reason for g in forged]
    assert all("RuntimeError" in (g.reason or "") for g in forged), [g.reason for g in forged]


def test_answers_out_of_turn_fail(grader: CodeGrader) -> None:
    """One call's answer spanning lines, the next calls' answers in it: the values are
    right, but a program answers only when asked."""
    ahead = (
        "class Ahead:\n"
        "    def __repr__(self):\n"
        "        return '5\\nR 6'\n"
        "def add(a, b):\n"
        "    return Ahead()\n"
    )
    forged, right = grader.grade_many([(ahead, FUNCTIONAL), (RIGHT, FUNCTIONAL)])
    assert (right.score, right.reason) == (1.0, "passed")
    assert (forged.score, forged.reason) == (0.0, "failed: an answer out of turn")


def test_an_answer_too_large_to_parse_safely_fails(grader: CodeGrader) -> None:
    """The trusted checker parses each answer; a parse costs about 1 KB an element, and
    `[0] * 5_500_000` grew it to 5 GB. An answer of more elements than the checker
    parses (`ELEMENT_LIMIT`) fails; one just under it still passes."""
    from pacore.graders._checker import ELEMENT_LIMIT

    sample = GradeInput(
        tests=(
            "def check(candidate):\n"
            f"    assert candidate({ELEMENT_LIMIT}) == [0] * {ELEMENT_LIMIT}\n"
        ),
        entry_point="zeros",
        prompt="",
    )
    fits = "def zeros(n):\n    return [0] * n\n"
    too_large = "def zeros(n):\n    return [0] * (n + 2)\n"
    passed, refused = grader.grade_many([(fits, sample), (too_large, sample)])
    assert (passed.score, passed.reason) == (1.0, "passed")
    assert refused.score == 0.0
    assert "answer too large" in (refused.reason or ""), refused.reason


def test_exceptions_and_plain_data_cross_the_boundary(grader: CodeGrader) -> None:
    sample = GradeInput(
        tests=(
            "import math\n"
            "def check(candidate):\n"
            "    assert candidate([1, 2.5], n=None) == ([[1, 2.5]], None, {'k': (1,)}, set())\n"
            "    assert math.isinf(candidate(float('inf'))[0][0])\n"
            "    assert candidate(b'x', 1j)[0] == [b'x', 1j]\n"
            "    try:\n        candidate('boom')\n"
            "    except ValueError as exc:\n        assert 'boom' in str(exc)\n"
            "    else:\n        raise AssertionError\n"
        ),
        entry_point="echo",
        prompt="",
    )
    program = (
        "def echo(*xs, n=None):\n"
        "    if xs == ('boom',):\n        raise ValueError('boom!')\n"
        "    return list(xs), n, {'k': (1,)}, set()\n"
    )
    grade = grader.grade(program, sample)
    assert (grade.score, grade.reason) == (1.0, "passed")


def test_fallback_refuses_untrusted_code_unless_allowed() -> None:
    with CodeGrader(limits=LIMITS, isolation="fallback") as refusing:
        with pytest.raises(ConfigError, match="--unsafe-sandbox"):
            refusing.grade(RIGHT, FUNCTIONAL)
        assert refusing.grade(RIGHT, GradeInput()).correct is None  # nothing to run: fine


def test_a_test_that_cannot_cross_the_boundary_is_ungradable(grader: CodeGrader) -> None:
    sample = GradeInput(
        tests="def check(candidate):\n    assert candidate(len) == 1\n",
        entry_point="add",
        prompt="",
    )
    grade = grader.grade(RIGHT, sample)
    assert grade.correct is None
    assert "cannot cross" in grade.reason


_OK = Execution("ok", 0, None, "", "", 0.1)
NONCE = "ab" * 16


@pytest.mark.parametrize(
    ("records", "returncode", "passed"),
    [
        (f"{NONCE} 0 passed\n{NONCE} end\n", 0, True),
        (f"{NONCE} 0 passed\n{NONCE} end\n", 1, False),  # the checker did not finish well
        (f"{NONCE} 0 passed\n", 0, False),  # no end record
        (f"{NONCE} 0 passed\n{NONCE} 0 passed\n{NONCE} end\n", 0, False),  # duplicated
        (f"{'cd' * 16} 0 passed\n{NONCE} end\n", 0, False),  # another run's nonce
        (f"{NONCE} 0 passed!\n{NONCE} end\n", 0, False),  # malformed
        (f"{NONCE} 0 passed extra\n{NONCE} end\n", 0, False),
        ("", 0, False),
        (f"{NONCE} 0 failed AssertionError\n{NONCE} end\n", 0, False),
        (f"{NONCE} 0 error broken\n{NONCE} end\n", 0, None),
    ],
)
def test_only_an_authenticated_pass_passes(
    records: str, returncode: int, passed: bool | None
) -> None:
    assert read_verdict(records.encode(), NONCE, returncode, _OK).passed is passed


def test_eval_refuses_the_fallback_sandbox_before_generating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Sandbox, "_probe", lambda self: ("fallback", "no namespaces here"))
    with pytest.raises(ConfigError, match=r"no namespaces here.*--unsafe-sandbox"):
        grader_for(None, tests=True)
    with grader_for(None, tests=True, unsafe_sandbox=True) as allowed:
        assert isinstance(allowed, CodeGrader)
        assert allowed.sandbox.mode == "fallback"


def test_unsafe_sandbox_is_an_eval_option_for_code_only(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "p0", "question": "What?", "answer": "42"}\n')
    argv = ["eval", "--dataset", str(data), "--out", str(tmp_path / "out"), "--method", "single"]
    argv += ["--backend", "http://127.0.0.1:9/v1", "--no-plots"]
    assert plan_eval(build_parser().parse_args(argv)).unsafe_sandbox is False
    with pytest.raises(ConfigError, match="code grader only"):
        plan_eval(build_parser().parse_args([*argv, "--unsafe-sandbox"]))
