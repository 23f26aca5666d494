"""Synthetic math: large-integer arithmetic with exact answers (the paper's 13k problems).

`A` and `B` are drawn uniformly from `[10^lo, 10^hi]` (the paper: 11..13); the
operation is addition, subtraction, multiplication, or modular exponentiation
`A^B mod P` with the fixed prime `P = 2^61 - 1`; the question comes from a handful of
natural-language templates. Each record is a line of the eval dataset format
(`id`, `question`, `answer`, plus `operation`), so `pacore eval`, `pacore train pool`
and the math grader read it as is. The answer is Python's exact integer.

The smallest settings (`magnitude=(0, 1)`, `operations=("add",)`) ask for sums of
numbers from 1 to 10: easy enough for a tiny model. Everything is seeded by
`(seed, index)` through `pacore.core.hashing`, so a problem never depends on how
many came before it with another count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pacore.config import check_settings, setting
from pacore.core.hashing import seeded_rng
from pacore.errors import ConfigError

PRIME = 2**61 - 1
"""The fixed large prime of modular exponentiation (a Mersenne prime)."""
OPERATIONS = ("add", "sub", "mul", "modexp")

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "add": (
        "What is {a} + {b}?",
        "Compute the sum of {a} and {b}.",
        "Add {a} and {b}. What do you get?",
        "Calculate {a} plus {b}.",
    ),
    "sub": (
        "What is {a} - {b}?",
        "Compute {a} minus {b}.",
        "Subtract {b} from {a}. What is the result?",
        "Calculate the difference {a} - {b}.",
    ),
    "mul": (
        "What is {a} * {b}?",
        "Compute the product of {a} and {b}.",
        "Multiply {a} by {b}. What do you get?",
        "Calculate {a} times {b}.",
    ),
    "modexp": (
        "What is {a}^{b} mod {p}?",
        "Compute {a} raised to the power {b}, modulo {p}.",
        "Find the remainder of {a}^{b} when divided by {p}.",
        "Calculate pow({a}, {b}) modulo the prime {p}.",
    ),
}
BOX_HINT = " Give the exact integer answer in \\boxed{}."


def _operations(value: Any) -> tuple[str, ...]:
    names = tuple(value.split(",")) if isinstance(value, str) else tuple(value)
    names = tuple(n.strip().lower() for n in names if n.strip())
    if not names:
        raise ConfigError(f"--operations names no operation; choose from {','.join(OPERATIONS)}")
    unknown = [n for n in names if n not in OPERATIONS]
    if unknown:
        raise ConfigError(f"unknown operation {unknown[0]!r}; choose from {','.join(OPERATIONS)}")
    return tuple(dict.fromkeys(names))


def parse_magnitude(text: str) -> tuple[int, int]:
    """`LO..HI` (or one number) as exponents of ten: operands in `[10^LO, 10^HI]`."""
    lo, sep, hi = text.partition("..")
    try:
        low, high = (int(lo), int(hi)) if sep else (int(lo), int(lo) + 1)
    except ValueError:
        raise ConfigError(f"--magnitude expects LO..HI (powers of ten), got {text!r}") from None
    return low, high


MAX_PROBLEMS = 10_000_000
"""The most problems one file may hold: the file is built whole before it is written
(a billion would fill memory first)."""


@dataclass(frozen=True)
class ArithSettings:
    """What `pacore train arith` generates."""

    count: int = setting(
        13_000, "problems to generate (the paper: 13k)", minimum=1, maximum=MAX_PROBLEMS
    )
    seed: int = setting(0, "seed of the draws; the same seed gives the same file")
    magnitude: str = setting(
        "11..13",
        "operands uniform in [10^LO, 10^HI], written LO..HI (0..1 is a tiny model's size)",
        metavar="LO..HI",
    )
    operations: str = setting(
        "add,sub,mul,modexp", "comma-separated operations to draw from", metavar="OPS"
    )
    box_hint: bool = setting(True, "end each question asking for the answer in \\boxed{}")

    def __post_init__(self) -> None:
        """Validate every field."""
        check_settings(self)
        low, high = self.bounds
        if not 0 <= low <= high <= 1000:
            raise ConfigError(f"--magnitude must satisfy 0 <= LO <= HI <= 1000, got {low}..{high}")
        _operations(self.operations)

    @property
    def bounds(self) -> tuple[int, int]:
        """The operands' range as (LO, HI) powers of ten."""
        return parse_magnitude(self.magnitude)

    @property
    def operation_names(self) -> tuple[str, ...]:
        """The operations drawn from, in order, without repeats."""
        return _operations(self.operations)


def answer(operation: str, a: int, b: int) -> int:
    """The exact answer of `a <operation> b`."""
    if operation == "add":
        return a + b
    if operation == "sub":
        return a - b
    if operation == "mul":
        return a * b
    if operation == "modexp":
        return pow(a, b, PRIME)
    raise ConfigError(f"unknown operation {operation!r}")


def problem(settings: ArithSettings, index: int) -> dict[str, Any]:
    """Problem number `index` of `settings`, seeded by (seed, index)."""
    rng = seeded_rng("arith", settings.seed, settings.magnitude, settings.operations, index)
    low, high = settings.bounds
    operation = rng.choice(settings.operation_names)
    a = rng.randint(10**low, 10**high)
    b = rng.randint(10**low, 10**high)
    template = rng.choice(_TEMPLATES[operation])
    question = template.format(a=a, b=b, p=PRIME) + (BOX_HINT if settings.box_hint else "")
    return {
        "id": f"arith/{operation}/{settings.seed}-{index}",
        "question": question,
        "answer": str(answer(operation, a, b)),
        "operation": operation,
        "operands": [str(a), str(b)],
    }


def generate(settings: ArithSettings) -> Iterator[dict[str, Any]]:
    """Every problem of `settings`, in order."""
    for index in range(settings.count):
        yield problem(settings, index)
