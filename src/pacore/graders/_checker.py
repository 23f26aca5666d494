"""Trusted checker: runs a functional test's `check(candidate)` outside the sandbox.

Started by `pacore.graders.checker` as `python -I -S -c "...; main()"`, importing
this file by path; pacore itself never imports it. Standard library only. It never runs
model code: it executes the dataset's prompt (for its helper functions and imports) and
tests, and `candidate` is a proxy that sends each call's arguments to the sandboxed
program and decodes its answer as plain data (numbers, strings, bytes, None, and lists,
tuples, sets and dicts of them, at most `ELEMENT_LIMIT` elements). An answer that is
not plain data, a program that ends, is killed or answers out of turn, fails the test.
The program's exceptions cross as the built-in exception of that name, except those
that steer iteration (`StopIteration` would end a check's `map` early): RuntimeError.

Input, one JSON object on stdin: `nonce`, `prompt`, `tests`, `entry`, `calls_in` (the
descriptor it writes calls to), `calls_out` (the one it reads answers from). Output, on
what was its stdout (the check's own prints go to /dev/null): `<nonce> 0 passed`,
`<nonce> 0 failed <reason>` or `<nonce> 0 error <reason>` (the test itself is broken), then
`<nonce> end`. The harness counts a pass only from exactly these two lines and exit 0.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

ANSWER_LIMIT = 16 << 20
ELEMENT_LIMIT = 250_000
"""The most elements (commas and colons) an answer may hold: the checker parses it, and a
parse costs about 1 KB of memory an element (`[0] * 5_500_000` took this process to 5 GB,
past every limit the sandbox sets on the program)."""
PLAIN = (int, float, complex, str, bytes, bool, type(None))


class CandidateFault(BaseException):
    """The program ended, or answered with something that is not an answer.

    A BaseException, so that a check's `except Exception` cannot swallow it."""


class BrokenTest(BaseException):
    """The test itself could not run (not the program's fault)."""


def main() -> None:
    import json

    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # integers past 4,300 digits cross both ways
    config = json.loads(sys.stdin.readline())
    records = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    nonce = config["nonce"]
    verdict = run_check(config)
    text = f"{nonce} 0 {verdict}\n{nonce} end\n".encode("utf-8", "backslashreplace")
    while text:
        text = text[os.write(records, text) :]
    os._exit(0)


def run_check(config: dict[str, Any]) -> str:
    """`passed`, `failed <reason>` or `error <reason>`, on one line."""
    namespace: dict[str, Any] = {"__name__": "__check__"}
    try:
        exec(compile(config["prompt"], "<prompt>", "exec"), namespace)
    except SyntaxError:  # a prompt that is not a whole module: keep its imports
        imports = [
            line for line in config["prompt"].splitlines() if line.startswith(("import ", "from "))
        ]
        exec("\n".join(imports), namespace)
    candidate = Candidate(config["calls_in"], config["calls_out"])
    namespace[config["entry"]] = candidate
    try:  # tests that cannot run grade nothing: no program could pass them
        tests = compile(config["tests"], "<tests>", "exec")
    except (SyntaxError, ValueError) as exc:
        return f"error the tests do not compile: {one_line(exc)}"
    try:
        exec(tests, namespace)
        check = namespace.get("check")
        if not callable(check):
            return "error the tests define no check(candidate)"
        check(candidate)
    except CandidateFault as exc:
        return f"failed {one_line(exc)}"
    except BrokenTest as exc:
        return f"error {one_line(exc)}"
    except BaseException as exc:
        return f"failed {type(exc).__name__}: {one_line(exc)}"
    if candidate.fault is not None:  # a check that swallowed the fault still fails
        return f"failed {candidate.fault}"
    return "passed"


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


class Candidate:
    """Calls the program's function in the sandbox, one call at a time."""

    def __init__(self, calls_in: int, calls_out: int) -> None:
        self.requests: BinaryIO = os.fdopen(calls_in, "wb")
        self.answers = calls_out
        """Read unbuffered: whatever came beyond one answer is an answer out of turn."""
        self.fault: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.fault is not None:
            raise CandidateFault(self.fault)
        request = encode((args, kwargs)).encode("utf-8", "surrogatepass") + b"\n"
        try:
            if self._waiting():
                self.fault = "an answer out of turn"
                raise CandidateFault(self.fault)
            self.requests.write(request)
            self.requests.flush()
            line = self._answer()
        except OSError:
            line = b""
        if not line.endswith(b"\n"):
            self.fault = "answer too long" if len(line) >= ANSWER_LIMIT else "the program ended"
            raise CandidateFault(self.fault)
        kind, _, rest = line[:-1].decode("utf-8", "replace").partition(" ")
        name, _, message = rest.partition(" ")
        try:
            if kind == "R":
                return decode(rest)
            if kind == "E":
                raised = exception_type(name)(decode(message))
        except ValueError as exc:
            self.fault = f"an answer that is not plain data ({one_line(exc)})"
            raise CandidateFault(self.fault) from None
        if kind != "E":
            self.fault = "a malformed answer"
            raise CandidateFault(self.fault)
        raise raised

    def _waiting(self) -> bool:
        """Whether the program wrote before it was asked (an end of file is not that)."""
        import select

        while select.select([self.answers], [], [], 0)[0]:
            try:
                return bool(os.read(self.answers, 1))
            except InterruptedError:
                continue
        return False

    def _answer(self) -> bytes:
        """One answer line (without a newline at its end: too long, or the program
        ended); anything after its newline is an answer out of turn (a `repr` spanning
        lines, answers written ahead), which fails the test."""
        data = bytearray()
        while len(data) < ANSWER_LIMIT:
            chunk = os.read(self.answers, min(65536, ANSWER_LIMIT - len(data)))
            if not chunk:
                break
            data += chunk
            end = chunk.find(b"\n")
            if end == len(chunk) - 1:
                break
            if end >= 0:
                self.fault = "an answer out of turn"
                raise CandidateFault(self.fault)
        return bytes(data)


STEERING = ("StopIteration", "StopAsyncIteration")
"""Exceptions that end a loop rather than fail it: raised by the program inside a check's
`map` or `zip`, a StopIteration would end the check's loop early and pass it."""


def exception_type(name: str) -> type[Exception]:
    """The built-in exception of that name, else RuntimeError (never a BaseException,
    never one that steers iteration: `STEERING`)."""
    import builtins

    found = getattr(builtins, name, None)
    if isinstance(found, type) and issubclass(found, Exception) and name not in STEERING:
        return found
    return RuntimeError


def encode(value: Any) -> str:
    """`repr` of plain data, checked (the sandbox `eval`s it back)."""
    kind = type(value)
    if kind in PLAIN:
        return repr(value)
    if kind in (list, tuple, set):
        return repr(kind(_Raw(encode(v)) for v in value))
    if kind is dict:
        return "{" + ", ".join(f"{encode(k)}: {encode(v)}" for k, v in value.items()) + "}"
    raise BrokenTest(f"the test passes a {kind.__name__}, which cannot cross to the sandbox")


class _Raw(str):
    """Text whose repr is itself (an already encoded element)."""

    def __repr__(self) -> str:
        return str(self)

    def __hash__(self) -> int:  # elements of a set: encoded texts differ when values do
        return str.__hash__(self)


def decode(text: str) -> Any:
    """Plain data from the program's `repr`; ValueError for anything else."""
    import ast

    if text.count(",") + text.count(":") > ELEMENT_LIMIT:
        raise ValueError(f"answer too large (more than {ELEMENT_LIMIT:,} elements)")
    try:
        tree = ast.parse(text, mode="eval").body
        return _value(tree)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None


def _value(node: Any) -> Any:  # noqa: C901 - one case per kind of literal
    import ast

    if isinstance(node, ast.Constant) and type(node.value) in PLAIN:
        return node.value
    if isinstance(node, ast.Name) and node.id in ("inf", "nan"):
        return float(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _value(node.operand)
        if type(operand) not in (int, float, complex):
            raise ValueError("a sign on a non-number")
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        left, right = _value(node.left), _value(node.right)  # complex: (1+2j)
        if type(left) not in (int, float) or type(right) is not complex:
            raise ValueError("arithmetic in an answer")
        return left + right if isinstance(node.op, ast.Add) else left - right
    if isinstance(node, ast.List):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_value(e) for e in node.elts)
    if isinstance(node, ast.Set):
        return {_value(e) for e in node.elts}
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "set":
        if node.args or node.keywords:
            raise ValueError("set() with arguments")
        return set()
    raise ValueError(f"not plain data: {type(node).__name__}")
