"""The trusted checker's own logic, in this process: what it accepts as an answer, what
it sends, and its verdict when the program answers, misbehaves or goes away."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable

import pytest

from pacore.graders import _checker
from pacore.graders._checker import BrokenTest, decode, encode, exception_type


@pytest.mark.parametrize(
    "value",
    [1, -2.5, float("inf"), 1 + 2j, -3j, "a\nb", b"\x00", None, True, [1, (2,), {3}],
     {"k": [None]}, set(), (), [[]]],
)  # fmt: skip
def test_plain_data_round_trips(value: object) -> None:
    assert decode(repr(value)) == value
    assert eval(encode(value), {"inf": float("inf"), "set": set}) == value  # as the sandbox


@pytest.mark.parametrize(
    "text",
    ["<__main__.Yes object at 0x1>", "__import__('os')", "1 + 1", "[x for x in ()]",
     "set([1])", "-'a'", "'a' + 1j", "{**{}}", "x", "(", "9" * 5000, "len"],
)  # fmt: skip
def test_anything_else_is_not_an_answer(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        decode(text)


def test_only_plain_arguments_are_sent() -> None:
    with pytest.raises(BrokenTest, match="function"):
        encode([len])


def test_exceptions_map_to_builtin_exceptions_only() -> None:
    assert exception_type("ValueError") is ValueError
    assert exception_type("SystemExit") is RuntimeError  # never a BaseException
    assert exception_type("Nope") is RuntimeError


def _check(tests: str, program: Callable[[bytes], bytes | None], prompt: str = "") -> str:
    """run_check against a fake program answering each request line with `program`."""
    calls_in, to_program = os.pipe()
    from_program, answers_out = os.pipe()

    def serve() -> None:
        with os.fdopen(calls_in, "rb") as requests, os.fdopen(answers_out, "wb") as answers:
            for line in requests:
                answer = program(line)
                if answer is None:
                    return
                answers.write(answer)
                answers.flush()
                if not answer.endswith(b"\n"):  # a half-written answer, then it ends
                    return

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    config = {"prompt": prompt, "tests": tests, "entry": "f", "calls_in": to_program,
              "calls_out": from_program}  # fmt: skip
    verdict = _checker.run_check(config)
    gc.collect()  # the checker's proxy owns its two ends: collecting it closes them
    server.join(timeout=10)
    assert not server.is_alive()
    return verdict


CHECK = "def check(candidate):\n    assert candidate(2) == 4\n    assert helper() == 1\n"
PROMPT = "def helper():\n    return 1\n\ndef f(x):\n    '''twice x'''\n"


def test_a_right_answer_passes() -> None:
    assert _check(CHECK, lambda line: b"R 4\n", PROMPT) == "passed"


def test_a_wrong_answer_fails() -> None:
    assert _check(CHECK, lambda line: b"R 5\n", PROMPT).startswith("failed AssertionError")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (None, "the program ended"),
        (b"R 4", "the program ended"),  # no newline: the answer never completed
        (b"passed\n", "a malformed answer"),
        (b"R <object>\n", "not plain data"),
        (b"E SystemExit 0\n", "RuntimeError"),
    ],
)
def test_a_misbehaving_program_fails(answer: bytes | None, reason: str) -> None:
    assert reason in _check(CHECK, lambda line: answer, PROMPT)


def test_a_check_that_swallows_the_fault_still_fails() -> None:
    tests = (
        "def check(candidate):\n"
        "    for _ in range(2):\n"
        "        try:\n            candidate(1)\n"
        "        except BaseException:\n            pass\n"
    )
    assert _check(tests, lambda line: None) == "failed the program ended"


def test_a_broken_test_is_an_error_and_a_bad_prompt_keeps_its_imports() -> None:
    assert _check("def check(candidate):\n    candidate(len)\n", lambda line: b"R 1\n") == (
        "error the test passes a builtin_function_or_method, which cannot cross to the sandbox"
    )
    prompt = "import math\ndef f(x:\n"  # not a whole module
    tests = "def check(candidate):\n    assert candidate(1) == math.pi\n"
    assert _check(tests, lambda line: b"R 3.141592653589793\n", prompt) == "passed"
