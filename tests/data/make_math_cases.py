"""Build `math_cases.jsonl`: real gold answers restated the way models write them, each
labelled by construction (arithmetic on the gold, never by a grader).

    .venv/bin/python tests/data/make_math_cases.py [../shared/data]

Reads MATH-500, AIME 2024/2025 and HMMT February 2025 gold answers (`../shared/data`,
MIT licensed, see `tests/data/README.md`) and writes one JSON object per line:
`{"id", "class", "gold", "response", "label"}`. Deterministic (seeded), so rerunning it
rewrites the same file. Classes: `plain`, `free-text`, `separators`, `degrees`,
`scientific`, `repeating`, `plus-minus`, `sets`, `words`, `rounded-decimals`,
`interval-trap`.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
Case = tuple[str, str, str, bool]  # class, gold, answer text (boxed unless free), label
FRACTION = re.compile(r"\\[dt]?frac\{(\d+)\}\{(\d+)\}")


def golds(data: Path) -> dict[str, str]:
    out = {}
    for name in ("math500", "aime2024", "aime2025", "hmmt_feb2025"):
        for line in (data / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            out[record["id"]] = str(record["answer"])
    return out


def bump(gold: str, rng: random.Random) -> str:
    """`gold` with one digit changed: a different value of the same shape."""
    digits = [m.start() for m in re.finditer(r"\d", gold)]
    i = rng.choice(digits)
    return gold[:i] + str((int(gold[i]) + rng.randint(1, 9)) % 10) + gold[i + 1 :]


def grouped(n: int, sep: str) -> str:
    return f"{n:,}".replace(",", sep)


def repeating(value: Fraction) -> str | None:
    """`0.3\\overline{8}` for 7/18; None for a terminating decimal."""
    whole, rest = divmod(value.numerator, value.denominator)
    digits: list[str] = []
    seen: dict[int, int] = {}
    while rest and rest not in seen:
        seen[rest] = len(digits)
        rest *= 10
        digits.append(str(rest // value.denominator))
        rest %= value.denominator
    if not rest:
        return None
    start = seen[rest]
    return f"{whole}.{''.join(digits[:start])}\\overline{{{''.join(digits[start:])}}}"


def sci(value: Decimal) -> str:
    """`6.3 \\times 10^{3}` for 6300 (an exact restatement)."""
    sign, digits, exponent = value.normalize().as_tuple()
    mantissa = "".join(map(str, digits))
    power = len(digits) - 1 + int(exponent)
    text = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
    return ("-" if sign else "") + f"{text} \\times 10^{{{power}}}"


@dataclass(frozen=True)
class Golds:
    """The gold answers, and the integer and fraction ones among them."""

    g: dict[str, str]
    integers: list[tuple[str, int]]
    fractions: list[tuple[str, Fraction]]


def cases(g: dict[str, str], rng: random.Random) -> Iterator[Case]:
    """Every labelled case, class by class."""
    integers = [(k, int(v)) for k, v in sorted(g.items()) if re.fullmatch(r"\d+", v)]
    fractions = [
        (k, Fraction(int(m[1]), int(m[2])))
        for k, v in sorted(g.items())
        if (m := FRACTION.fullmatch(v)) and int(m[2]) > 1
    ]
    golds = Golds(g, integers, fractions)
    for make in CLASSES:
        yield from make(golds, rng)


def _plain_forms(golds: Golds, rng: random.Random) -> Iterator[Case]:
    g, _integers, _fractions = golds.g, golds.integers, golds.fractions
    # plain: the gold's own spelling and light variants; a digit changed is wrong
    for k in rng.sample(sorted(g), 40):
        gold = g[k]
        yield "plain", gold, gold.replace("\\frac", "\\dfrac"), True
        if re.search(r"\d", gold):
            wrong = bump(gold, rng)
            if wrong != gold:
                yield "plain", gold, wrong, False


def _free_text(golds: Golds, rng: random.Random) -> Iterator[Case]:
    g, integers, fractions = golds.g, golds.integers, golds.fractions
    # free text: no box, LaTeX somewhere in the last sentence
    for _, n in rng.sample(integers, 25):
        yield "free-text", str(n), f"FREE:Therefore the number of ways is ${n}$.", True
        yield "free-text", str(n), f"FREE:Hence $x = {n + 7}$ is the final value.", False
    for k, q in rng.sample(fractions, 15):
        frac = f"\\frac{{{q.numerator}}}{{{q.denominator}}}"
        yield "free-text", g[k], f"FREE:So the probability is ${frac}$.", True
        wrong = f"\\frac{{{q.numerator + 1}}}{{{q.denominator}}}"
        yield "free-text", g[k], f"FREE:So the probability is ${wrong}$.", False


def _separators(golds: Golds, rng: random.Random) -> Iterator[Case]:
    g, integers, _fractions = golds.g, golds.integers, golds.fractions
    # separators: thousands groups; a list `1,2` is not the number 12
    big = [(k, n) for k, n in integers if n >= 1000]
    for _, n in big[:20]:
        for sep in ("\\,", "{,}", ","):
            yield "separators", str(n), grouped(n, sep), True
        yield "separators", str(n), grouped(n + 1000, "\\,"), False
    for v in [v for v in g.values() if re.fullmatch(r"\d{1,3}(?:,\\!\d{3})+", v)]:
        n = int(v.replace(",\\!", ""))
        yield "separators", v, str(n), True
        yield "separators", v, grouped(n, "\\,"), True
        yield "separators", v, str(n + 1), False
    for _, n in [(k, n) for k, n in integers if 10 <= n < 100][:10]:
        yield "separators", str(n), f"{n // 10},{n % 10}", False


def _degrees(golds: Golds, rng: random.Random) -> Iterator[Case]:
    g, integers, _fractions = golds.g, golds.integers, golds.fractions
    # degrees
    angles = [(k, v) for k, v in sorted(g.items()) if re.fullmatch(r"\d+\^\\circ", v)]
    for _, v in angles:
        n = int(v.split("^")[0])
        for form in (f"{n}", f"{n}°", f"{n}^{{\\circ}}", f"{n}\\degree"):
            yield "degrees", v, form, True
        yield "degrees", v, f"{n + 10}°", False
    for _, n in rng.sample(integers, 10):
        yield "degrees", str(n), f"{n}^\\circ", True


def _scientific(golds: Golds, rng: random.Random) -> Iterator[Case]:
    g, integers, fractions = golds.g, golds.integers, golds.fractions
    # scientific notation: exact restatements and off-by-a-power ones
    for _, n in [(k, n) for k, n in integers if n >= 100][:25]:
        yield "scientific", str(n), sci(Decimal(n)), True
        yield "scientific", str(n), sci(Decimal(n) * 10), False
    for k, q in fractions:
        if q.denominator in (8, 16, 20, 25, 40, 50, 125, 200, 400, 1000) and q < 1:
            exact = Decimal(q.numerator) / Decimal(q.denominator)
            yield "scientific", g[k], sci(exact).replace(" ", ""), True
            yield "scientific", g[k], sci(exact * 10).replace(" ", ""), False


def _repeating(golds: Golds, rng: random.Random) -> Iterator[Case]:
    g, _integers, fractions = golds.g, golds.integers, golds.fractions
    # repeating decimals: exact, and with the repeating digits changed
    for k, q in fractions:
        text = repeating(q)
        if text is None or len(text) > 24:
            continue
        yield "repeating", g[k], text, True
        digit = text[-2]
        yield "repeating", g[k], text[:-2] + str((int(digit) + 1) % 10) + "}", False


def _plus_minus_and_sets(golds: Golds, rng: random.Random) -> Iterator[Case]:
    g, _integers, _fractions = golds.g, golds.integers, golds.fractions
    # plus-minus and unordered sets
    pairs = [v for v in g.values() if re.fullmatch(r"[^,]*\\pm[^,]*", v) or "\\pm" in v]
    for v in pairs:
        plus, minus = v.replace("\\pm", "+"), v.replace("\\pm", "-")
        if v.startswith("\\{"):
            continue
        yield "plus-minus", v, f"{minus}, {plus}", True
        yield "plus-minus", v, plus, False
    two = [v for v in g.values() if re.fullmatch(r"[^,{}()\[\]=]+, *[^,{}()\[\]=]+", v)]
    two = [v for v in two if not re.search(r",\s*(?:\\!|\d{3}\b)", v)]
    two += [r"\frac{-1+\sqrt{17}}{2}, \frac{-1-\sqrt{17}}{2}"]
    for v in two:
        a, b = (p.strip() for p in v.split(","))
        yield "sets", v, f"{b}, {a}", True
        yield "sets", v, a, False
        if "\\sqrt" in a and "+" in a and a.replace("+", "-", 1) == b:
            yield "plus-minus", v, a.replace("+", "\\pm", 1), True
            yield "plus-minus", v, a.replace("+", "\\mp", 1) + "+1", False
    lists = [v for v in g.values() if re.fullmatch(r"-?\d+(?:, *-?\d+){2,}", v)]
    for v in lists:
        parts = [p.strip() for p in v.split(",")]
        yield "sets", v, ", ".join(reversed(parts)), True
        yield "sets", v, "\\{" + ", ".join(parts[1:]) + "\\}", False


def _words(golds: Golds, rng: random.Random) -> Iterator[Case]:
    g, integers, _fractions = golds.g, golds.integers, golds.fractions
    # words, choices, variables, units
    words = [v for v in g.values() if re.fullmatch(r"\\text\{[A-Za-z ]+\}", v)]
    for i, v in enumerate(words):
        word = v[6:-1]
        yield "words", v, word.lower(), True
        yield "words", v, f"\\textbf{{{word}}}", True
        yield "words", v, words[i - 1][6:-1], False
    choices = [v for v in g.values() if re.fullmatch(r"\\text\{\([A-E]\)\}", v)]
    for v in choices:
        letter = v[7]
        yield "words", v, letter, True
        yield "words", v, f"({letter})", True
        yield "words", v, "ABCDE"["ABCDE".index(letter) - 1], False
    for _, n in rng.sample(integers, 15):
        yield "words", str(n), f"x = {n}", True
        yield "words", str(n), f"{n} \\text{{ cm}}", True
        yield "words", str(n), f"{n} meters", True
        yield "words", str(n), f"{n + 1} \\text{{ cm}}", False


def _rounded_decimals(golds: Golds, rng: random.Random) -> Iterator[Case]:
    g, _integers, fractions = golds.g, golds.integers, golds.fractions
    # rounded decimals: never equal to an exact fraction; exact ones are
    for k, q in fractions:
        if repeating(q) is None:
            exact = Decimal(q.numerator) / Decimal(q.denominator)
            yield "rounded-decimals", g[k], _plain(exact), True
        else:
            for places in (6, 3):
                rounded = round(Decimal(q.numerator) / Decimal(q.denominator), places)
                yield "rounded-decimals", g[k], _plain(rounded), False
    for k in ("hmmt_feb2025-3", "hmmt_feb2025-7", "hmmt_feb2025-30"):
        yield "rounded-decimals", g[k], {"hmmt_feb2025-3": "0.001736", "hmmt_feb2025-7": "1.876630",
                                         "hmmt_feb2025-30": "1.989556"}[k], False  # fmt: skip


def _interval_trap(golds: Golds, rng: random.Random) -> Iterator[Case]:
    _g, integers, _fractions = golds.g, golds.integers, golds.fractions
    # interval trap: an unboxed conclusion ending in an interval around the gold
    for _, n in rng.sample(integers, 20):
        yield "interval-trap", str(n), f"FREE:So x lies in [{n - 3}, {n + 2}].", False
        yield "interval-trap", str(n), f"FREE:So x lies in [{n - 3}, {n}].", False
        yield "interval-trap", str(n), f"FREE:So the answer is {n}.", True


CLASSES = (
    _plain_forms,
    _free_text,
    _separators,
    _degrees,
    _scientific,
    _repeating,
    _plus_minus_and_sets,
    _words,
    _rounded_decimals,
    _interval_trap,
)


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def response(text: str, rng: random.Random) -> str:
    """A model-style response around an answer (boxed), or a free-text conclusion."""
    thinking = "<think>Maybe 12?</think>"
    if text.startswith("FREE:"):
        return thinking + "We simplify step by step.\n\n" + text[5:]
    template = rng.choice(
        [
            "The answer is $\\boxed{{{}}}$.",
            "So\n$$\\boxed{{{}}}$$",
            "**Answer:** $\\boxed{{{}}}$",
        ]
    )
    return thinking + template.format(text)


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data"
    rng = random.Random(9)
    g = golds(data)
    seen = set()
    lines = []
    for kind, gold, text, label in cases(g, rng):
        if (gold, text) in seen:
            continue
        seen.add((gold, text))
        record = {"class": kind, "gold": gold,
                  "response": response(text, rng), "label": label}  # fmt: skip
        lines.append(json.dumps(record, ensure_ascii=False))
    (HERE / "math_cases.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} cases")


if __name__ == "__main__":
    main()
