"""What runs inside the math grading worker processes (math-verify lives only here).

math-verify's own timeouts use `signal.alarm` and swallow the timeout into "no match",
so they are switched off (`parsing_timeout=None, timeout_seconds=None`); each item gets
a soft timeout here instead: a CPU-time timer (`ITIMER_PROF`, so a busy machine does not
cause spurious timeouts) whose handler raises a `BaseException` that math-verify's
`except Exception` cannot swallow. An item stuck where signals cannot reach it (C code
holding the GIL) is killed from outside: before each item the worker writes its index,
start time and pid into a shared progress slot that the parent watches (wall clock).

Speed, with the same verdicts. `gc.freeze()` after warm-up and a higher gen-0 GC
threshold save ~10% each. latex2sympy's ANTLR parser runs in full-LL prediction mode,
whose predictions are never cached; the workers first try ANTLR's SLL mode with a
bail-out error strategy and fall back to the original LL parse on any syntax error.
ANTLR guarantees that an SLL parse that succeeds yields the tree LL would (the grammar
has only precedence predicates): 3.5x less CPU per answer, more once ANTLR's shared DFA
is warm, which the workers start on with typical answers at start-up. Integer literals
skip a `sympy.Number(str)` round trip through `parse_expr` (`from sympy import *` per
number). On the MATH-500, HMMT and AIME answers and 1,800 rewritings of them, `srepr` of every
parse is identical with and without these two patches (`tests/graders/test_graders.py`
checks a sample).

What is checked: `(gold, answer, text)`. With `text` (a conclusion without a box),
math-verify's own `parse` extracts the answer from it (LaTeX and expressions anywhere),
and `answer` (the project's fallback extraction) is used only when it finds nothing.
Both sides then go through the named rules of `math_rules` (`normalize_pair`); what the
rules settle (`decide`: word answers, exact rationals) is final, a decimal answer is
compared exactly with a numeric gold (never rounded), and the rest is math-verify's
`verify(gold, answer)`. Each item returns `(code, the answer that was checked)`.

Result codes: `correct`, `wrong`, `no-answer`, `pred-unparsable`, `gold-unparsable`,
`gold-timeout`, `timeout`.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from functools import lru_cache
from types import ModuleType
from typing import Any

from pacore.graders import math_rules as rules

Progress = Any  # a multiprocessing.Array("d") of 3 doubles per slot: item, start, pid
Item = tuple[str, str, str]  # (gold, answer, conclusion text or "")
Result = tuple[str, str | None]  # (code, the answer checked)

CORRECT = "correct"
WRONG = "wrong"
NO_ANSWER = "no-answer"
PRED_UNPARSABLE = "pred-unparsable"
GOLD_UNPARSABLE = "gold-unparsable"
GOLD_TIMEOUT = "gold-timeout"
TIMEOUT = "timeout"


class ItemTimeout(BaseException):
    """Raised by SIGPROF; a BaseException so math-verify's `except Exception` lets it by."""


class _State:
    progress: Progress = None
    timeout_s = 5.0


def _module(name: str) -> ModuleType:
    """An untyped dependency (math-verify, sympy, antlr4, latex2sympy2), typed as Any."""
    return importlib.import_module(name)


def init_worker(
    progress: Progress, timeout_s: float, memory_bytes: int | None, parent: int | None = None
) -> None:
    """Pool initializer: import math-verify, warm it up, bound memory, freeze the heap."""
    import resource

    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _exit_with_parent(parent)
    if hasattr(sys, "set_int_max_str_digits"):  # a 5,000-digit gold is a number, not text
        sys.set_int_max_str_digits(0)
    signal.signal(signal.SIGPROF, _on_timer)
    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    _State.progress = progress
    _State.timeout_s = timeout_s
    enable_two_stage_parsing()
    enable_fast_integers()
    for answer in WARM_UP:  # import everything and warm the parser's DFA
        check_pair(answer, answer + "+1")
    check_pair("5", "", "So the answer is $x = 5$.")
    _parse_gold.cache_clear()
    gc.collect()
    gc.freeze()  # the import's objects never need scanning again: ~10% faster
    gc.set_threshold(20_000, 50, 1000)  # sympy churns objects; fewer young passes: ~10%


PARENT_CHECK_S = 1.0
"""How often a worker looks whether its parent is still there."""


def _exit_with_parent(parent: int | None) -> None:
    """Exit when the process that started this worker is gone (a `kill -9`, a crash): an
    orphaned worker would run on, holding the parent's stdout and stderr open (a pipeline
    reading them would never end). A daemon thread compares the parent's pid with the
    one the parent gave (read here, it would be the reaper's when the parent died
    before this worker started)."""
    import os
    import threading
    import time

    if parent is None:
        parent = os.getppid()
    if os.getppid() != parent:  # gone already
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="pacore-parent-watch", daemon=True).start()


def _on_timer(signum: int, frame: object) -> None:
    raise ItemTimeout


def check_batch(pairs: Sequence[Item], slot: int) -> list[Result]:
    """Results for (gold, answer, text) items, recording progress in `slot`."""
    progress = _State.progress
    base = slot * 3
    codes = []
    for i, (gold, pred, text) in enumerate(pairs):
        if progress is not None:
            progress[base + 1] = time.monotonic()
            progress[base + 2] = os.getpid()
            progress[base] = i
        codes.append(_timed(gold, pred, text))
    if progress is not None:
        progress[base] = -1
    return codes


def _timed(gold: str, pred: str, text: str = "") -> Result:
    signal.setitimer(signal.ITIMER_PROF, _State.timeout_s)  # CPU time: load-independent
    try:
        return check_pair(gold, pred, text)
    except ItemTimeout:
        return TIMEOUT, pred or None
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def check_pair(gold: str, pred: str, text: str = "") -> Result:
    """Whether the answer (`pred`, or what math-verify reads in `text`) is equivalent to
    `gold` (see the module docstring); the code and the answer checked."""
    if text:
        pred = _free_text(text) or pred
    if not pred:
        return NO_ANSWER, None
    gold_form, pred_form = rules.normalize_pair(gold, pred)
    settled = rules.decide(gold_form, pred_form)
    if settled is not None:
        return settled, pred
    parsed_gold = _parse_gold(gold_form)
    if isinstance(parsed_gold, str):
        return parsed_gold, pred
    if rules.is_decimal(pred_form) and "%" not in gold:
        exact = _exact_decimal(parsed_gold, pred_form)
        if exact is not None:
            return exact, pred
    parsed_pred = _parse(pred_form)
    if parsed_pred is None:
        return PRED_UNPARSABLE, pred
    ok = _module("math_verify").verify(parsed_gold, parsed_pred, timeout_seconds=None)
    return (CORRECT if ok else WRONG), pred


def _free_text(text: str) -> str | None:
    """The answer math-verify's own extraction finds in a conclusion, as written."""
    parsed = _module("math_verify").parse(text, parsing_timeout=None)
    if len(parsed) >= 2 and isinstance(parsed[-1], str) and _has_expression(parsed):
        return str(parsed[-1]).strip() or None
    return None


def _exact_decimal(parsed_gold: list[Any], decimal: str) -> str | None:
    """A decimal answer against a numeric gold, exactly (math-verify would round to 6
    places); None when the gold is no plain number."""
    sympy = _module("sympy")
    gold = next((p for p in parsed_gold if isinstance(p, sympy.Expr)), None)
    if gold is None or not gold.is_number or gold.has(sympy.Float):
        return None
    difference = gold - sympy.Rational(decimal)
    zero = difference.is_zero
    if zero is None:
        zero = bool(abs(sympy.N(difference, 60)) < sympy.Rational(1, 10**50))
    return CORRECT if zero else WRONG


@lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> list[Any] | str:
    """The parsed gold answer, or a result code when it does not parse to an expression."""
    try:
        parsed = _parse(gold)
    except ItemTimeout:
        return GOLD_TIMEOUT  # cached: a gold that hangs once hangs every time
    return GOLD_UNPARSABLE if parsed is None else parsed


def _parse(answer: str) -> list[Any] | None:
    """math-verify's parse of an answer; None unless it yields an expression (not just
    the raw string math-verify falls back to)."""
    parsed = _module("math_verify").parse(_wrap(answer), parsing_timeout=None)
    return list(parsed) if _has_expression(parsed) else None


def _has_expression(parsed: Sequence[Any]) -> bool:
    expressions = (_module("sympy").Basic, _module("sympy.matrices").MatrixBase)
    return any(isinstance(p, expressions) for p in parsed)


def enable_two_stage_parsing() -> bool:
    """Make latex2sympy parse with SLL first, LL on failure; False if its layout changed."""
    try:
        sll = _module("antlr4.atn.PredictionMode").PredictionMode.SLL
        bail = _module("antlr4.error.ErrorStrategy").BailErrorStrategy
        converter_class = _module("latex2sympy2_extended.latex2sympy2")._Latex2Sympy
    except (ImportError, AttributeError):
        return False
    original: Any = getattr(converter_class, "create_parser", None)
    if original is None or getattr(original, "two_stage", False):
        return original is not None

    class TwoStageParser:
        """Delegates to an SLL parser; `math()` re-parses in LL when SLL fails."""

        def __init__(self, converter: Any, latex: str) -> None:
            self._make: Any = lambda: original(converter, latex)
            self._parser = self._make()
            self._parser._interp.predictionMode = sll
            self._parser._errHandler = bail()

        def math(self) -> Any:
            try:
                return self._parser.math()
            except Exception:  # a syntax error, or SLL too weak: parse again with LL
                self._parser = self._make()
                return self._parser.math()

        def __getattr__(self, name: str) -> Any:
            return getattr(self._parser, name)

    def create_parser(self: Any, latex: str) -> Any:
        return TwoStageParser(self, latex)

    create_parser.two_stage = True  # type: ignore[attr-defined]
    converter_class.create_parser = create_parser
    return True


def enable_fast_integers() -> bool:
    """Make latex2sympy build integer literals directly (same value, ~0.5 ms less each).

    It calls `sympy.Number("12")`, which goes through `parse_expr` and runs
    `from sympy import *` for every number in every answer.
    """
    try:
        integer = _module("sympy").Integer
        converter_class = _module("latex2sympy2_extended.latex2sympy2")._Latex2Sympy
    except (ImportError, AttributeError):
        return False
    original: Any = getattr(converter_class, "parse_number", None)
    if original is None or getattr(original, "fast", False):
        return original is not None

    def parse_number(self: Any, text: str) -> Any:
        digits = text.replace(",", "")
        if digits.isdigit() and digits.isascii() and len(digits) < 4000:
            return integer(int(digits))
        return original(self, text)

    parse_number.fast = True  # type: ignore[attr-defined]
    converter_class.parse_number = parse_number
    return True


WARM_UP = (
    "42", "-7", "0.25", r"\frac{1}{2}", r"-\frac{3}{4}", r"\dfrac{14}{3}", "3/8", r"\sqrt{2}",
    r"2\sqrt{3}", r"\frac{\sqrt{3}}{2}", r"3\sqrt[3]{2}", r"\pi", r"2\pi", r"\frac{\pi}{6}",
    r"90^\circ", r"10\text{ cm}", r"\$12.50", r"50\%", r"\text{(C)}", r"\text{Evelyn}",
    "x=5", "y = 2x + 3", "x^2 - 4x + 4", r"x^5 - x^4 + x^3", "(3, 4)",
    r"\left( 3, \frac{\pi}{2} \right)", "[0, 1)", r"(-\infty, 2] \cup [3, \infty)", r"\{1, 2, 3\}",
    "1, -2", "3, 5, 7", "6 - 5i",
    r"-2 + 7i", r"2^{25} \cdot 26!", r"\binom{5}{2}", r"\log_2 8", r"\sin x", r"e^{i\pi}",
    r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", "52_8", r"1-\frac{2}{\pi}", "p - q", r"a \le 3",
    r"\frac{-1+\sqrt{17}}{2}, \frac{-1-\sqrt{17}}{2}", r"\sqrt{\frac{95}{24}}", "14+4\\sqrt{37}",
)  # fmt: skip


def _wrap(answer: str) -> str:
    """An extracted answer as text math-verify extracts whole: inside `\\boxed{}`."""
    return "\\boxed{" + answer + "}"
