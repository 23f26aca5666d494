"""Build the generated differential suite of the math grader (issue 18): real gold
answers, restated by sympy in equivalent forms and in near misses, each wrapped in the
texts models write, each labelled by how it was built (never by a grader).

    .venv/bin/python tests/data/make_generated_cases.py [../shared/data]

Reads the MATH-500, AIME 2024/2025 and HMMT February 2025 gold answers (`../shared/data`,
MIT licensed, see `tests/data/README.md`). `generate(data)` returns every case (the
benchmark `benchmarks/bench_graders.py --agreement` grades them all); `main` writes a
seeded sample of `SAMPLE` cases, stratified by class, to `math_generated.jsonl`:
`{"class", "wrapper", "gold", "response", "label"}`. Deterministic.

Forms (the class), each from a gold parsed with latex2sympy (math-verify's own parser;
only the gold is parsed, never a form) and rebuilt by sympy, so that an equivalent form
is equal by sympy identity and a near miss differs by a nonzero amount sympy proves:
- `integers`: `n`, `n.0`, `x = n`, `n \\text{ ways}`; near: n ± 1, -n, 10n.
- `large-integers`: an integer gold as its exact factorisation with powers
  (`2^{4} \\cdot 3^{2} \\cdot 5`) and an exact expression gold (`2^{25} \\cdot 26!`) as
  its digits; near: an exponent + 1, the digits ± 1.
- `fractions`: `\\dfrac`, `p/q`, unreduced `\\frac{2p}{2q}`, `-\\frac{p}{q}` spellings;
  near: numerator + 1, the reciprocal, the sign.
- `exact-decimals`: a terminating fraction as its exact decimal (`0.028672` for
  `\\frac{448}{15625}`, a trailing zero); near: its last digit changed, one digit cut.
- `rounded-decimals`: a non-terminating fraction rounded to 2-6 places (always wrong);
  right: `p/q` and `\\tfrac` spellings.
- `radicals`: the coefficient moved inside (`\\sqrt{640}` for `8\\sqrt{10}`), the
  reciprocal of the reciprocal (`\\frac{1}{\\sqrt{2}}` for `\\frac{\\sqrt{2}}{2}`),
  sympy's spelling, powers `m^{\\frac{1}{2}}`; near: radicand + 1, coefficient + 1, sign.
- `sums-products`: terms and factors in reverse order (`(b+2)(a+5)`), the expanded and
  factored forms; near: + 1, one term's sign flipped, twice the value.
- `intervals`: the real interval golds and intervals between two real numeric golds, in
  every notation: `\\left( \\right]`, ISO `]a, b]`, `a < x \\le b`, `x \\in (a, b]`,
  `\\{x \\mid a < x \\le b\\}`, `+\\infty`, exact decimal ends; near: a bracket flipped, an
  end moved.
- `lists`: unordered lists reordered, as a set `\\{...\\}`, split over several boxes of one
  statement or of consecutive sentences; tuples are ordered; near: a value dropped or
  changed, a tuple reordered.

Wrappers (how the answer is stated): `box`, `revised` (an earlier box, then "Hmm,
actually ... the corrected result is" a last box; for a right form the earlier box is a
near miss, for a near miss it is the gold itself: an earlier right box revised to a
wrong one is wrong), `final-answer` ("Final answer: $...$", no box), `free-text` (no
box), `think` (a different box inside `<think>`, the form boxed after `</think>`),
`hedged` (two different boxes in one statement, "either ... or": always wrong).
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SAMPLE = 2000
SEED = 18
Form = tuple[str, str, bool]  # (class, answer as written, label)


def golds(data: Path) -> list[str]:
    """The distinct gold answers of the four math sets, in file order."""
    out: dict[str, None] = {}
    for name in ("math500", "aime2024", "aime2025", "hmmt_feb2025"):
        for line in (data / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
            out[str(json.loads(line)["answer"]).strip()] = None
    return list(out)


def _sympy() -> Any:
    import sympy  # type: ignore[import-untyped]

    return sympy


def parse_gold(gold: str) -> Any:
    """The gold as a sympy object (latex2sympy), or None where it is text or does not parse."""
    if re.search(r"\\text|\\circ|\\%|\\\$|\\pm|\\mbox|=|\\in|\\begin|_\d", gold):
        return None
    from latex2sympy2_extended import latex2sympy  # type: ignore[import-untyped]

    try:
        return latex2sympy(gold)
    except Exception:  # the parser raises many kinds
        return None


def tex(expr: Any, **options: Any) -> str:
    return str(_sympy().latex(expr, **options))


def differs(a: Any, b: Any) -> bool:
    """Whether two sympy numbers/expressions differ, proved by sympy."""
    difference = _sympy().simplify(a - b)
    return bool(difference != 0 and difference.is_zero is not True)


def frac(q: Fraction) -> str:
    if q.denominator == 1:
        return str(q.numerator)
    sign = "-" if q < 0 else ""
    return f"{sign}\\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"


def terminating(q: Fraction) -> str | None:
    """The exact decimal of `q`, None when it does not terminate."""
    d = q.denominator
    twos = fives = 0
    while d % 2 == 0:
        d //= 2
        twos += 1
    while d % 5 == 0:
        d //= 5
        fives += 1
    if d != 1:
        return None
    places = max(twos, fives)
    scaled = abs(q.numerator) * 10**places // q.denominator
    text = str(scaled).rjust(places + 1, "0")
    whole, part = text[: len(text) - places], text[len(text) - places :]
    sign = "-" if q < 0 else ""
    return sign + whole + ("." + part if places else "")


# ------------------------------------------------------------------ the classes


def integer_forms(n: int) -> Iterator[Form]:
    yield "integers", str(n), True
    yield "integers", f"{n}.0", True
    yield "integers", f"x = {n}", True
    yield "integers", f"{n} \\text{{ ways}}", True
    for wrong in (n + 1, n - 1, -n if n else 7, 10 * n if n else 1):
        yield "integers", str(wrong), False


def factorisation(n: int) -> str | None:
    """`n` as a product of prime powers, at least one of them a power (`2^{3} \\cdot 5`)."""
    factors = _sympy().factorint(n)
    if n < 2 or max(factors.values()) < 2:
        return None
    parts = [f"{p}^{{{k}}}" if k > 1 else str(p) for p, k in sorted(factors.items())]
    return " \\cdot ".join(parts)


def large_integer_forms(gold: str, value: Any) -> Iterator[Form]:
    sympy = _sympy()
    if re.fullmatch(r"\d+", gold):
        n = int(gold)
        form = factorisation(n)
        if form is None or n < 100:
            return
        yield "large-integers", form, True
        factors = sorted(sympy.factorint(n).items())
        p, k = factors[-1]
        near = form.replace(f"{p}^{{{k}}}", f"{p}^{{{k + 1}}}") if k > 1 else f"{form} \\cdot {p}"
        yield "large-integers", near, False
    elif value is not None and getattr(value, "is_Integer", False) and abs(int(value)) >= 10**6:
        n = int(value)
        yield "large-integers", str(n), True
        yield "large-integers", str(n + 1), False
        yield "large-integers", str(n - 1), False


def fraction_forms(q: Fraction) -> Iterator[Form]:
    p, d = q.numerator, q.denominator
    yield "fractions", frac(q).replace("\\frac", "\\dfrac"), True
    yield "fractions", f"{p}/{d}", True
    yield "fractions", frac(q).replace("\\frac", "\\tfrac"), True
    yield "fractions", f"\\frac{{{2 * p}}}{{{2 * d}}}", True
    if p < 0:
        yield "fractions", f"\\frac{{{p}}}{{{d}}}", True
    yield "fractions", frac(Fraction(p + 1, d)), False
    if abs(p) != 1 or d != 1:
        yield "fractions", frac(1 / q), False
    yield "fractions", frac(-q), False


def decimal_forms(q: Fraction) -> Iterator[Form]:
    exact = terminating(q)
    if exact is not None and "." in exact:
        yield "exact-decimals", exact, True
        yield "exact-decimals", exact + "0", True
        last = int(exact[-1])
        yield "exact-decimals", exact[:-1] + str((last + 1) % 10 or 1), False
        if len(exact.partition(".")[2]) > 1:
            yield "exact-decimals", exact[:-1], False
    elif exact is None:
        for places in (2, 3, 4, 6):
            rounded = round(q, places)
            text = terminating(Fraction(rounded)) or str(float(rounded))
            if Fraction(text) != q:
                yield "rounded-decimals", text.rjust(1), False
        yield "rounded-decimals", f"{q.numerator}/{q.denominator}", True
        yield "rounded-decimals", frac(q).replace("\\frac", "\\tfrac"), True


_COEFFICIENT_ROOT = re.compile(r"(?<![\d.}])(\d+)\s*\\sqrt\s*\{(\d+)\}")


def radical_forms(gold: str, value: Any) -> Iterator[Form]:
    sympy = _sympy()
    found = _COEFFICIENT_ROOT.search(gold)
    if found is not None:
        k, m = int(found[1]), int(found[2])
        inside = gold[: found.start()] + f"\\sqrt{{{k * k * m}}}" + gold[found.end() :]
        yield "radicals", inside, True
        near = gold[: found.start()] + f"\\sqrt{{{k * k * m + 1}}}" + gold[found.end() :]
        yield "radicals", near, False
        bumped = gold[: found.start()] + f"{k + 1}\\sqrt{{{m}}}" + gold[found.end() :]
        yield "radicals", bumped, False
    yield "radicals", tex(value), True
    if value != 0:
        yield "radicals", f"\\frac{{1}}{{{tex(sympy.radsimp(1 / value))}}}", True
    powers = re.sub(r"\\sqrt\s*\{(\d+)\}", r"\\left(\1\\right)^{\\frac{1}{2}}", gold)
    if powers != gold:
        yield "radicals", powers, True
    yield "radicals", tex(-value), False
    yield "radicals", tex(value + 1), False


def _reversed_sum(value: Any) -> str:
    terms = [tex(t) for t in reversed(value.as_ordered_terms())]
    return " + ".join(terms).replace("+ -", "- ")


def _reversed_product(value: Any) -> str | None:
    coefficient, factors = value.as_coeff_mul()
    if coefficient < 0 or len(factors) < 2:
        return None
    parts = [f"({tex(f)})" if f.is_Add else tex(f) for f in reversed(factors)]
    lead = "" if coefficient == 1 else tex(coefficient) + " \\cdot "
    return (
        lead + " \\cdot ".join(parts)
        if lead
        else "".join(p if p.startswith("(") else p + " " for p in parts).strip()
    )


def sum_product_forms(value: Any) -> Iterator[Form]:
    sympy = _sympy()
    if value.is_Add:
        yield "sums-products", _reversed_sum(value), True
    if value.is_Mul:
        product = _reversed_product(value)
        if product is not None:
            yield "sums-products", product, True
    expanded = sympy.expand(value)
    if expanded != value:
        yield "sums-products", tex(expanded), True
    factored = sympy.factor(value)
    if factored != value and factored != expanded:
        yield "sums-products", tex(factored), True
    yield "sums-products", tex(value + 1), False
    yield "sums-products", tex(2 * value), False
    if value.is_Add:
        terms = list(value.as_ordered_terms())
        flipped = sympy.Add(*terms[:-1], -terms[-1])
        if differs(flipped, value):
            yield "sums-products", tex(flipped), False


def _end(value: Any, *, low: bool) -> str:
    sympy = _sympy()
    if value in (sympy.oo, -sympy.oo):
        return ("-" if low else "") + "\\infty"
    return tex(value)


def interval_forms(interval: Any, rng: random.Random) -> Iterator[Form]:
    sympy = _sympy()
    a, b = interval.start, interval.end
    lo, hi = _end(a, low=True), _end(b, low=False)
    lopen = interval.left_open or a == -sympy.oo
    ropen = interval.right_open or b == sympy.oo
    left, right = "(" if lopen else "[", ")" if ropen else "]"
    yield "intervals", f"\\left{left} {lo}, {hi} \\right{right}", True
    plain = f"{left}{lo},{hi}{right}"
    yield "intervals", plain.replace(",\\infty", ",+\\infty") if b == sympy.oo else plain, True
    iso_left, iso_right = "]" if lopen else "[", "[" if ropen else "]"
    yield "intervals", f"{iso_left}{lo}, {hi}{iso_right}", True
    less, less_equal = "<", "\\le"
    lower = "" if a == -sympy.oo else f"{lo} {less if lopen else less_equal} "
    upper = "" if b == sympy.oo else f" {less if ropen else less_equal} {hi}"
    yield "intervals", f"{lower}x{upper}", True
    yield "intervals", f"x \\in {left}{lo}, {hi}{right}", True
    yield "intervals", f"\\{{x \\mid {lower}x{upper}\\}}", True
    if a.is_Rational and not a.is_Integer and terminating(Fraction(str(a))):
        yield "intervals", f"{left}{terminating(Fraction(str(a)))}, {hi}{right}", True
    # near misses: one bracket flipped (a finite end), one end moved
    if a != -sympy.oo:
        yield "intervals", f"{'[' if lopen else '('}{lo}, {hi}{right}", False
        yield "intervals", f"{left}{tex(a - 1)}, {hi}{right}", False
    if b != sympy.oo:
        yield "intervals", f"{left}{lo}, {hi}{']' if ropen else ')'}", False
        yield "intervals", f"{left}{lo}, {tex(b + 1)}{right}", False


def list_forms(gold: str, value: Any) -> Iterator[tuple[str, str, bool, str]]:
    """(class, form, label, how the form is stated: one box or `split`/`sentences`)."""
    sympy = _sympy()
    s = gold.strip()
    if isinstance(value, sympy.Tuple):
        inner = re.sub(r"^\\left\(|\\right\)$", "", s).strip("()")
        parts = [p.strip() for p in inner.split(",")]
        if len(parts) < 2 or any("(" in p or ")" in p for p in parts):
            return
        yield "lists", "(" + ", ".join(parts) + ")", True, "box"
        yield "lists", "\\left(" + ",".join(parts) + "\\right)", True, "box"
        if parts[0] != parts[1]:
            swapped = [parts[1], parts[0], *parts[2:]]
            yield "lists", "(" + ", ".join(swapped) + ")", False, "box"
        return
    if not isinstance(value, sympy.FiniteSet) or "\\pm" in s or s.startswith("\\{"):
        return
    parts = [p.strip() for p in s.split(",")]
    if len(parts) != len(value) or len(parts) < 2:
        return
    yield "lists", ", ".join(reversed(parts)), True, "box"
    yield "lists", "\\{" + ", ".join(parts) + "\\}", True, "box"
    yield "lists", " | ".join(reversed(parts)), True, "split"
    yield "lists", " | ".join(parts), True, "sentences"
    yield "lists", ", ".join(parts[1:]), False, "box"
    yield "lists", " | ".join(parts[:-1]), False, "split"
    changed = [*parts[:-1], tex(value.args[-1] + 1) if value.args else "0"]
    if set(changed) != set(parts):
        yield "lists", ", ".join(changed), False, "box"


def forms(gold: str, rng: random.Random) -> Iterator[tuple[str, str, bool, str]]:
    """Every (class, form, label, statement) of one gold."""
    value = parse_gold(gold)
    if re.fullmatch(r"-?\d+", gold):
        for kind, form, label in integer_forms(int(gold)):
            yield kind, form, label, "box"
    for kind, form, label in large_integer_forms(gold, value):
        yield kind, form, label, "box"
    if value is None:
        return
    for kind, form, label in expression_forms(gold, value, rng):
        yield kind, form, label, "box"
    yield from list_forms(gold, value)


def _has_root(value: Any) -> bool:
    sympy = _sympy()
    roots = (p for p in value.atoms(sympy.Pow) if p.exp.is_Rational and not p.exp.is_Integer)
    return isinstance(value, sympy.Expr) and not value.free_symbols and any(roots)


def expression_forms(gold: str, value: Any, rng: random.Random) -> Iterator[Form]:
    """The forms of a parsed gold: fractions and decimals, radicals, sums and products,
    intervals (by what the gold is)."""
    sympy = _sympy()
    if isinstance(value, sympy.Rational) and not value.is_Integer:
        q = Fraction(int(value.p), int(value.q))
        yield from fraction_forms(q)
        yield from decimal_forms(q)
    elif _has_root(value):
        yield from radical_forms(gold, value)
    symbolic = isinstance(value, sympy.Expr) and (value.free_symbols or value.has(sympy.I))
    if symbolic and (value.is_Add or value.is_Mul):
        yield from sum_product_forms(value)
    if isinstance(value, sympy.Interval):
        yield from interval_forms(value, rng)


def synthetic_intervals(gs: list[str], rng: random.Random) -> Iterator[tuple[str, Any]]:
    """Intervals between two real numeric golds (a seeded choice), in the gold's own
    spelling of each end; half-open, closed, open, and rays."""
    sympy = _sympy()
    numbers = []
    for gold in gs:
        if re.fullmatch(r"-?\d+|-?\\frac\{\d+\}\{\d+\}", gold):
            numbers.append((gold, parse_gold(gold)))
    rng.shuffle(numbers)
    shapes = ((False, True), (True, False), (False, False))  # `(a, b)` may be a point
    for i in range(0, min(len(numbers) - 1, 80), 2):
        (ga, a), (gb, b) = numbers[i], numbers[i + 1]
        if a is None or b is None or a == b:
            continue
        if a > b:
            (ga, a), (gb, b) = (gb, b), (ga, a)
        lopen, ropen = shapes[(i // 2) % 3]
        if i % 10 == 8:
            yield f"({ga}, \\infty)", sympy.Interval(a, sympy.oo, True, True)
            continue
        text = f"{'(' if lopen else '['}{ga}, {gb}{')' if ropen else ']'}"
        yield text, sympy.Interval(a, b, lopen, ropen)


# ------------------------------------------------------------------ the wrappers

INTRO = "Simplifying step by step. "
WRAPPERS = ("box", "revised", "final-answer", "free-text", "think", "hedged")


def wrap(wrapper: str, form: str, other: str, statement: str) -> str:
    """A model-style response stating `form` (`other`: a different answer, for the
    earlier box of a revision, the box inside the reasoning, or the hedge)."""
    if statement == "split":
        boxes = " and ".join(f"$\\boxed{{{p}}}$" for p in form.split(" | "))
        return f"{INTRO}The values are {boxes}."
    if statement == "sentences":
        names = ("first", "second", "third", "fourth", "fifth", "sixth")
        said = " ".join(
            f"The {names[i]} value is $\\boxed{{{p}}}$." for i, p in enumerate(form.split(" | "))
        )
        return INTRO + said
    if wrapper == "box":
        return f"{INTRO}So the answer is $\\boxed{{{form}}}$."
    if wrapper == "revised":
        return (
            f"{INTRO}This gives $\\boxed{{{other}}}$.\n\nHmm, actually that is not right. "
            f"The corrected result is $\\boxed{{{form}}}$."
        )
    if wrapper == "final-answer":
        return f"{INTRO}\n\nFinal answer: ${form}$"
    if wrapper == "free-text":
        return f"{INTRO}Therefore the value is ${form}$."
    if wrapper == "think":
        return (
            f"<think>Maybe $\\boxed{{{other}}}$? Check.</think>"
            f"{INTRO}So the answer is $\\boxed{{{form}}}$."
        )
    return f"{INTRO}It is either $\\boxed{{{other}}}$ or $\\boxed{{{form}}}$."


def generate(data: Path) -> list[dict[str, Any]]:
    """Every case of the suite, in a fixed order (see the module docstring)."""
    rng = random.Random(SEED)
    gs = golds(data)
    items: list[tuple[str, list[tuple[str, str, bool, str]]]] = []
    for gold in gs:
        items.append((gold, list(forms(gold, rng))))
    for gold, interval in synthetic_intervals(gs, rng):
        items.append((gold, [(k, f, lab, "box") for k, f, lab in interval_forms(interval, rng)]))
    cases: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for gold, found in items:
        wrong = [f for _, f, label, st in found if not label and st == "box"]
        right = [f for _, f, label, st in found if label and st == "box"]
        for kind, form, label, statement in found:
            if statement != "box":
                wrappers: tuple[str, ...] = (statement,)
            else:
                wrappers = WRAPPERS
            for wrapper in wrappers:
                if wrapper == "revised":
                    other = rng.choice(wrong) if label and wrong else gold
                    if not label and not right:
                        other = gold
                elif wrapper in ("think", "hedged"):
                    other = rng.choice(wrong) if wrong and label else f"{gold} + 1"
                else:
                    other = ""
                response = wrap(wrapper, form, other, statement)
                if (gold, response) in seen:
                    continue
                seen.add((gold, response))
                verdict = label and wrapper != "hedged"
                cases.append({"class": kind, "wrapper": wrapper, "gold": gold,
                              "response": response, "label": verdict})  # fmt: skip
    return cases


def sample(cases: list[dict[str, Any]], size: int = SAMPLE) -> list[dict[str, Any]]:
    """A seeded sample of `size` cases, every class in proportion (at least 60 each)."""
    rng = random.Random(SEED)
    by_class: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for case in cases:
        by_class[case["class"]].append(case)
    chosen = []
    for kind in sorted(by_class):
        group = by_class[kind]
        share = max(60, round(size * len(group) / len(cases)))
        chosen += rng.sample(group, min(len(group), share))
    rng.shuffle(chosen)
    return chosen[:size]


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data"
    cases = generate(data)
    chosen = sample(cases)
    lines = [json.dumps(case, ensure_ascii=False) for case in chosen]
    (HERE / "math_generated.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    counts: dict[str, int] = defaultdict(int)
    for case in cases:
        counts[case["class"]] += 1
    print(f"{len(cases)} cases generated, {len(chosen)} kept: {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
