"""Named rewriting rules for math answers, applied to gold and prediction alike before
math-verify, and the verdicts they settle without it. Pure string functions.

Each rule is small, meaning-preserving and tested against a case where math-verify 0.9.0
alone gets it wrong (`tests/graders/test_math_rules.py`):

| rule                   | rewrites                                   | math-verify alone      |
|------------------------|--------------------------------------------|------------------------|
| `thousands_separators` | `6\\,300`, `20{,}000`, `6,300`, `6 300` → `6300` | `6\\,300` is 306 |
| `degree_signs`         | `90^\\circ`, `90°`, `90\\degree` → `90`      | `90°` does not parse   |
|                        | in `\\sin 30^\\circ`: to radians               | sine of 30 radians     |
| `units_after_number`   | `5.4 \\text{ cents}`, `12 meters` → number  | (agrees; kept for `°`) |
| `scientific_notation`  | `5.1 \\times 10^{2}` → `510` (exact)        | 5.1·10² ≠ 510 (floats) |
| `repeating_decimals`   | `0.3\\overline{8}` → `\\frac{7}{18}`         | does not parse         |
| `plus_minus`           | `\\frac{-1\\pm\\sqrt{17}}{2}` → both roots     | does not parse         |
| `answer_variable`      | `x = 1 \\pm 2` → `1 \\pm 2` (gold has no `=`) | (needed before `\\pm`) |
| `inequalities`         | `x \\le 3` → `(-\\infty,3]` (gold an interval) | wrong (reverse: right) |
| `iso_intervals`        | `]2, 5]` → `(2, 5]`, `[2, 5[` → `[2, 5)`     | does not parse         |
| `set_builder`          | `\\{x \\mid 2<x\\le 5\\}` → `2<x\\le 5`; `x\\in I` → `I` | wrong        |
| `imaginary_unit`       | `6 - 5 i` → `6 - 5i`                        | `5 i` ≠ `5i`           |
| `unicode_symbols`      | `√{51}`, `⅓`, `−1`, `2 × 10³`, `(2,∞)` → LaTeX | does not parse     |
| `upright_constants`    | `9\\mathrm{i}` → `9i`, `\\mathrm{e}` → `e`    | (a unit, dropped)      |
| `pi_word`              | `7 pi`, `288*pi` → `7 \\pi`, `288*\\pi`        | two letters            |
| `mixed_numbers`        | `4 2/3` → `\\frac{14}{3}` (the whole answer)   | `4 2/3` is 8/3         |
| `column_vectors`       | `(1, 2)` → a `pmatrix` (the gold a column)     | a tuple ≠ a matrix     |
| `interval_spellings`   | `(2, oo)`, `(0,9) U (9,36)`: `\\infty`, `\\cup` | does not parse        |
| `approximately`        | `\\approx -5`, `≈ 9` → `-5`, `9`             | `\\approx-5`: no parse |

Verdicts settled here (`decide`), before math-verify:
- `word answers`: a gold that is wholly text (`\\text{Evelyn}`, `\\text{(C)}`) matches the
  same words, case, wrappers, quotes, a final period and a leading article aside
  (`evelyn`, `C`, `(C)`, `\\text{the east.}`), and nothing else; a choice also matches an
  answer that names it first (`(C) 12`, `Option C`).
- `percentages`: `25\\%` matches `25\\%`, `25` and `0.25` (as math-verify means it), and
  `40` matches `40\\%`; settled here because math-verify's reading of `\\%` depends on
  the ANTLR runtime installed (4.9, which verl's dependencies pin, reads `25\\%` as 25).
- `unevaluated arithmetic`: for an integer gold, an answer that is integers joined by
  `+ - * × ÷ \\times \\cdot \\div` (`202 * 312`, `\\boxed{12+5}`) is wrong: the question
  restated is not an answer. math-verify evaluates it and accepts it, which a policy
  trained on arithmetic problems learns to exploit within steps (`benchmarks/README.md`).
  Powers, fractions and anything with a symbol are left to math-verify.
- `bases`: `52_8` matches `52_{8}`, `52_{(8)}`, `52_{\\text{8}}`, and no other base
  (latex2sympy drops the subscript: `52_{9}` read as 52).
- `exact decimals`: two plain rationals (`0.34`, `17/50`, `\\frac{17}{50}`) are equal only
  when exactly equal; math-verify rounds to 6 places and accepts `0.001736` for
  `\\frac{1}{576}`. A gold that is itself a decimal with k places also accepts a longer
  decimal that rounds to it (the gold was rounded).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from pacore.core.textmemo import TextMemo
from pacore.graders.extract import normalize_answer, top_level_split

CORRECT = "correct"
WRONG = "wrong"

Rule = Callable[[str], str]

# ------------------------------------------------------------------ the rules

_THIN_GROUP = re.compile(r"(?<=\d)(?:\\,|\{,\}|\\ |\\;|\\!|[\u00a0\u2009\u202f])(?=\d{3}(?!\d))")
_COMMA_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SPACE_NUMBER = re.compile(r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?")


def thousands_separators(answer: str) -> str:
    """`6\\,300`, `20{,}000` and a no-break or thin space anywhere; `6,300` and `6 300`
    only as the whole answer (`1,2` is a list)."""
    s = _THIN_GROUP.sub("", answer)
    whole = s.strip()
    if _COMMA_NUMBER.fullmatch(whole):
        s = s.replace(",", "")
    elif _SPACE_NUMBER.fullmatch(whole):
        s = whole.replace(" ", "")
    return s


_UNICODE = {
    "−": "-", "–": "-", "‒": "-", "﹣": "-", "－": "-", "⁄": "/",
    "×": "\\times ", "÷": "\\div ", "·": "\\cdot ", "⋅": "\\cdot ",
    "∞": "\\infty ", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "≈": "\\approx ",
    "∪": "\\cup ", "∩": "\\cap ",
}  # fmt: skip
_VULGAR = {
    "½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅕": (1, 5),
    "⅖": (2, 5), "⅗": (3, 5), "⅘": (4, 5), "⅙": (1, 6), "⅚": (5, 6), "⅐": (1, 7),
    "⅛": (1, 8), "⅜": (3, 8), "⅝": (5, 8), "⅞": (7, 8), "⅑": (1, 9), "⅒": (1, 10),
}  # fmt: skip
_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
_UNICODE_SYMBOL = re.compile(
    "[" + "".join(_UNICODE) + "".join(_VULGAR) + "]|[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+"
    r"|√\s*(?:\{(?P<braced>[^{}]*)\}|\((?P<paren>[^()]*)\)|(?P<bare>\d+(?:\.\d+)?|[A-Za-z]))?"
)


def unicode_symbols(answer: str) -> str:
    """`√{51}`, `√5`, `√(x+1)` → `\\sqrt{..}`; `⅓` → `\\frac{1}{3}`; `10³`, `10⁻⁵` →
    `10^{3}`, `10^{-5}`; `−` and `–` → `-`; `×`, `÷`, `·`, `∞`, `≤`, `≥`, `≠`, `≈`, `∪`,
    `∩` → their LaTeX commands. math-verify reads none of them."""
    if answer.isascii():
        return answer

    def latex(match: re.Match[str]) -> str:
        text = match[0]
        if text[0] == "√":
            radicand = match["braced"] or match["paren"] or match["bare"]
            return f"\\sqrt{{{radicand}}}" if radicand else "\\sqrt"
        if text[0] in _VULGAR:
            num, den = _VULGAR[text[0]]
            return f"\\frac{{{num}}}{{{den}}}"
        if text in _UNICODE:
            return _UNICODE[text]
        return "^{" + text.translate(_SUPERSCRIPT) + "}"

    return _UNICODE_SYMBOL.sub(latex, answer)


_UPRIGHT = re.compile(r"\\(?:mathrm|text|textrm|operatorname)\s*\{\s*([ie])\s*\}")


def upright_constants(answer: str) -> str:
    """`9\\mathrm{i}` → `9i`, `\\mathrm{e}^{2}` → `e^{2}`: the upright imaginary unit
    and Euler's number (ISO style) are constants, not units to drop."""
    return _UPRIGHT.sub(r"\1", answer) if "{" in answer else answer


_APPROX = re.compile(r"(?:\\approx(?![A-Za-z])|\\simeq(?![A-Za-z])|≈)\s*")


_PI_WORD = re.compile(r"(?<![\\A-Za-z])pi(?![A-Za-z])")


def pi_word(answer: str) -> str:
    """`7 pi`, `288*pi` → `7 \\pi`, `288*\\pi`: math-verify reads `pi` as two letters."""
    return _PI_WORD.sub(r"\\pi", answer) if "pi" in answer else answer


_MIXED = re.compile(r"(?P<sign>-)?(?P<whole>\d+) (?P<num>\d+)/(?P<den>\d+)")


def mixed_numbers(answer: str) -> str:
    """`4 2/3` → `\\frac{14}{3}`, `-1 1/2` → `-\\frac{3}{2}`: a whole number and a
    fraction written apart in plain text are one mixed number (math-verify multiplies)."""
    match = _MIXED.fullmatch(answer.strip())
    if match is None or int(match["den"]) == 0 or int(match["num"]) >= int(match["den"]):
        return answer
    den = int(match["den"])
    num = int(match["whole"]) * den + int(match["num"])
    return f"{match['sign'] or ''}\\frac{{{num}}}{{{den}}}"


def approximately(answer: str) -> str:
    """`\\approx -5` → `-5`: an answer given as approximately a value is that value
    (math-verify reads `\\approx 5` as 5 but not `\\approx-5`, the normal form)."""
    s = answer.lstrip()
    match = _APPROX.match(s)
    return s[match.end() :] if match is not None else answer


_DEGREES = re.compile(
    r"\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°|\\degree(?![A-Za-z]))"
    r"|(?<=\d)\s*\\circ(?![A-Za-z])"  # `90\\circ`, the caret forgotten
)


_TRIG = re.compile(r"\\(?:sin|cos|tan|sec|csc|cot)(?![A-Za-z])")
_DEGREE_ANGLE = re.compile(
    r"(?P<n>\d+(?:\.\d+)?)\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°|\\degree(?![A-Za-z]))"
)


def degree_signs(answer: str) -> str:
    """`90^\\circ`, `90^{\\circ}`, `90°`, `90\\degree`, `90\\circ` → `90`; an angle a
    trigonometric function takes is turned to radians instead (`\\sin 30^\\circ` is
    `\\sin \\frac{30\\pi}{180}`, not the sine of 30 radians)."""
    if _TRIG.search(answer):
        return _DEGREE_ANGLE.sub(lambda m: f"{{\\frac{{{m['n']}\\pi}}{{180}}}}", answer)
    return _DEGREES.sub("", answer)


_INTERVAL_SHAPE = re.compile(r"[\[(].*,.*[\])]")
_INFINITY_WORD = re.compile(r"(?<![A-Za-z])(?:\\inf|\\infin|oo|inf|infinity)(?![A-Za-z])")
_UNION_WORD = re.compile(r"(?<=[\])])\s*(?:U|\\bigcup)\s*(?=[\[(])")


def interval_spellings(answer: str) -> str:
    """In an interval or a union of them: `\\inf`, `\\infin`, `oo`, `inf`, `infinity` →
    `\\infty`, and `U` or `\\bigcup` between two intervals → `\\cup`."""
    if not _INTERVAL_SHAPE.fullmatch(answer.strip()):
        return answer
    return _UNION_WORD.sub("\\\\cup ", _INFINITY_WORD.sub(r"\\infty", answer))


_UNIT_WORDS = re.compile(
    r"(?P<value>.*[\d}])\s*(?:\\(?:text|mbox|mathrm|textrm)\s*\{\s*[A-Za-z][A-Za-z .]*\}"
    r"(?:\^\{?\d\}?)?|\s(?!(?:pi|sqrt|i|e|or|and)\b)[A-Za-z]{2,}(?:\s[A-Za-z]+)*(?:\^\{?\d\}?)?)"
)


_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")


def units_after_number(answer: str) -> str:
    """`5.4 \\text{ cents}`, `864 \\mbox{ inches}^2`, `12 meters` → the number part."""
    match = _UNIT_WORDS.fullmatch(answer.strip())
    if match is None or not re.search(r"\d", match["value"]) or _WORD.search(match["value"]):
        return answer
    return match["value"].strip()


_SCIENTIFIC = re.compile(
    r"(?<![\d.])(?P<m>-?\d+(?:\.\d+)?)\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*\^\s*"
    r"(?:\{\s*(?P<e1>[-+]?\d+)\s*\}|(?P<e2>-?\d+)(?![\d.]))"
    r"|(?<![\w.])(?P<m2>-?\d+(?:\.\d+)?)[eE](?P<e3>[-+]?\d+)(?![\w.])"
)


def _plain_decimal(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def scientific_notation(answer: str) -> str:
    """`5.1 \\times 10^{2}` → `510`, `6.72\\times10^{-5}` → `0.0000672`, `1e-3` → `0.001`;
    plain text's `6.72 x 10^-5` too."""

    def exact(match: re.Match[str]) -> str:
        mantissa = match["m"] or match["m2"]
        exponent = match["e1"] or match["e2"] or match["e3"]
        try:
            return _plain_decimal(Decimal(mantissa).scaleb(int(exponent)))
        except (InvalidOperation, ValueError):
            return match[0]

    return _SCIENTIFIC.sub(exact, answer)


_REPEATING = re.compile(
    r"(?<![\d.])(?P<sign>-)?(?P<int>\d*)\.(?P<fixed>\d*)"
    r"\\(?:overline|bar)\s*(?:\{(?P<rep>\d+)\}|(?P<rep1>\d))"
)


def repeating_decimals(answer: str) -> str:
    """`0.\\overline{5}` → `\\frac{5}{9}`, `0.3\\overline{8}` → `\\frac{7}{18}` (exact)."""

    def exact(match: re.Match[str]) -> str:
        whole, fixed = match["int"] or "0", match["fixed"]
        rep = match["rep"] or match["rep1"]
        value = Fraction(int(whole)) + Fraction(int(fixed or "0"), 10 ** len(fixed))
        value += Fraction(int(rep), (10 ** len(rep) - 1) * 10 ** len(fixed))
        text = (
            str(value.numerator)
            if value.denominator == 1
            else (f"\\frac{{{value.numerator}}}{{{value.denominator}}}")
        )
        return ("-" + text) if match["sign"] else text

    return _REPEATING.sub(exact, answer)


_PLUS_MINUS = re.compile(r"\\pm(?![A-Za-z])|±")
_MINUS_PLUS = re.compile(r"\\mp(?![A-Za-z])|∓")


_ISO_INTERVAL = re.compile(r"(?P<left>[\[\]])(?P<body>[^\[\]]*,[^\[\]]*)(?P<right>[\[\]])")


def iso_intervals(answer: str) -> str:
    """ISO 31-11 interval brackets, `]a, b]` → `(a, b]`, `[a, b[` → `[a, b)`, `]a, b[` →
    `(a, b)`, for the whole answer or the parts of a union."""
    parts = re.split(r"(\\cup(?![A-Za-z])|∪)", answer)
    out = []
    for part in parts:
        match = _ISO_INTERVAL.fullmatch(part.strip())
        if match is not None and (match["left"] == "]" or match["right"] == "["):
            left = "(" if match["left"] == "]" else "["
            right = ")" if match["right"] == "[" else "]"
            part = f"{left}{match['body']}{right}"
        out.append(part)
    return "".join(out)


_LONE_I = re.compile(r"(?<=[\d}])\s+i(?![A-Za-z])")


def imaginary_unit(answer: str) -> str:
    """`5 i` → `5i`: latex2sympy reads the spaced `i` as a different symbol (real=False)
    from the `i` of `5i` (real=True), so `6 - 5 i` never equals `6 - 5i`."""
    return _LONE_I.sub("i", answer)


_SET_BUILDER = re.compile(
    r"\\\{\s*[a-zA-Z](?:\s*\\in\s*\\mathbb\s*\{?R\}?)?\s*(?:\\mid|\||:)\s*(?P<p>.+?)\s*\\\}"
)
_MEMBER = re.compile(r"[a-zA-Z]\s*\\in(?![A-Za-z])\s*(?P<set>.+)")


def set_builder(gold: str, answer: str) -> str:
    """`\\{x \\mid 2 < x \\le 5\\}` → `2 < x \\le 5`, `x \\in (2, 5]` → `(2, 5]`, when the
    gold is neither (the `inequalities` rule then reads the condition)."""
    if re.search(r"\\(?:in|mid)(?![A-Za-z])", gold):
        return answer
    s = answer.strip()
    builder = _SET_BUILDER.fullmatch(s)
    if builder is not None:
        return inequalities(gold, builder["p"], explicit_set=True)
    member = _MEMBER.fullmatch(s)
    return member["set"].strip() if member is not None else answer


def plus_minus(answer: str) -> str:
    """An element `a \\pm b` (or `\\mp`) of an answer or of its list/set → the two values
    `a + b, a - b`: `\\{1\\pm\\sqrt{5}, -2\\}` → `\\{1+\\sqrt{5}, 1-\\sqrt{5}, -2\\}`."""
    if not (_PLUS_MINUS.search(answer) or _MINUS_PLUS.search(answer)):
        return answer
    s = answer.strip()
    wrapped = s.startswith("\\{") and s.endswith("\\}")
    inner = s[2:-2] if wrapped else s
    elements: list[str] = []
    for element in top_level_split(inner):
        signs = len(_PLUS_MINUS.findall(element)) + len(_MINUS_PLUS.findall(element))
        if signs > 1:
            return answer
        if signs == 1:
            elements.append(_MINUS_PLUS.sub("-", _PLUS_MINUS.sub("+", element)))
            elements.append(_MINUS_PLUS.sub("+", _PLUS_MINUS.sub("-", element)))
        else:
            elements.append(element)
    joined = ", ".join(e.strip() for e in elements)
    return f"\\{{{joined}\\}}" if wrapped else joined


_VARIABLE = re.compile(r"\s*[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(?P<rhs>[^=<>]+)")


def answer_variable(gold: str, answer: str) -> str:
    """`x = 5` → `5` when the gold is no equation (so `y = 5` never matches `x = 5`)."""
    if "=" in gold:
        return answer
    match = _VARIABLE.fullmatch(answer)
    return match["rhs"].strip() if match else answer


_LESS = {"<": "<", "\\lt": "<", "\\le": "<=", "\\leq": "<=", "\\leqslant": "<=", "≤": "<="}
_MORE = {">": ">", "\\gt": ">", "\\ge": ">=", "\\geq": ">=", "\\geqslant": ">=", "≥": ">="}
_RELATION = "|".join(
    re.escape(op) + ("(?![A-Za-z])" if op[0] == "\\" else "")
    for op in sorted({**_LESS, **_MORE}, key=len, reverse=True)
)
_SIDE = r"[^<>=≤≥,;\\]*(?:\\(?!le|ge|lt|gt)[A-Za-z]+[^<>=≤≥,;\\]*)*"
_INEQUALITY = re.compile(
    rf"(?:(?P<a>{_SIDE}?)\s*(?P<op1>{_RELATION})\s*)?(?P<var>[a-zA-Z])"
    rf"(?:\s*(?P<op2>{_RELATION})\s*(?P<b>{_SIDE}?))?"
)
_INTERVAL_GOLD = re.compile(r"[\[(].*,.*[\])]")


def _bound(side: str | None) -> str | None:
    side = (side or "").strip()
    return side or None


def inequalities(gold: str, answer: str, *, explicit_set: bool = False) -> str:
    """`x \\le 3` → `(-\\infty,3]`, `2 < x \\le 5` → `(2,5]`, when the gold is an interval
    with an infinite end or a closed one (`(2, 5)` could be a point: left alone, unless the
    answer was written as a set, `explicit_set`: `\\{x \\mid 2 < x < 5\\}`)."""
    g = gold.replace(" ", "")
    if not _INTERVAL_GOLD.fullmatch(g):
        return answer
    match = _INEQUALITY.fullmatch(answer.strip())
    if match is None or not (match["op1"] or match["op2"]):
        return answer
    if not ("\\infty" in g or "[" in g or "]" in g or (explicit_set and match["op2"])):
        return answer  # `(2, 5)` may be a point: `2 < x < 5` alone is left to math-verify
    low: tuple[str, bool] | None = None  # (bound, closed)
    high: tuple[str, bool] | None = None
    sides = ((match["a"], match["op1"], True), (match["b"], match["op2"], False))
    for side, op, var_on_right in sides:
        if not op:
            continue
        bound = _bound(side)
        if bound is None:
            return answer
        less = op in _LESS
        closed = (_LESS.get(op) or _MORE[op]).endswith("=")
        # `a < x` and `x > a` bound x from below; `x < b` and `b > x` from above.
        below = less == var_on_right
        if below and low is None:
            low = (bound, closed)
        elif not below and high is None:
            high = (bound, closed)
        else:
            return answer  # `1 < x > 2`: not an interval
    left = f"[{low[0]}" if low and low[1] else f"({low[0]}" if low else "(-\\infty"
    right = f"{high[0]}]" if high and high[1] else f"{high[0]})" if high else "\\infty)"
    return f"{left},{right}"


ANSWER_RULES: tuple[Rule, ...] = (
    approximately,
    pi_word,
    interval_spellings,
    iso_intervals,
    upright_constants,
    imaginary_unit,
    degree_signs,
    units_after_number,
    scientific_notation,
    repeating_decimals,
)


def _normalize(answer: str) -> str:
    """An answer with every rule applied: separators, `normalize_answer`, the rest."""
    s = normalize_answer(mixed_numbers(thousands_separators(unicode_symbols(answer))))
    for rule in ANSWER_RULES:
        s = rule(s)
    return thousands_separators(s)


normalize = TextMemo(_normalize, size=8192, max_chars=256)
"""`_normalize`, kept for the last short answers asked (every pair of a vote is normalised)."""


_COLUMN = re.compile(r"\\begin\{(?P<env>[pb]matrix)\}(?P<body>.*)\\end\{(?P=env)\}", re.DOTALL)
_VECTOR = re.compile(
    r"\((?P<a>.*)\)|\[(?P<b>.*)\]|\\langle(?![A-Za-z])(?P<c>.*)\\rangle", re.DOTALL
)


def column_vectors(gold: str, answer: str) -> str:
    """`(-2, -14, -7)`, `[-2, -14, -7]`, `\\langle -2, -14, -7 \\rangle` → a column
    `pmatrix` of the same entries, when the gold is a column vector of that many rows
    (math-verify compares a tuple with a matrix as different things)."""
    column = _COLUMN.fullmatch(gold.strip())
    if column is None or "&" in column["body"]:
        return answer
    vector = _VECTOR.fullmatch(answer.strip())
    if vector is None:
        return answer
    entries = top_level_split(vector["a"] or vector["b"] or vector["c"] or "")
    rows = column["body"].split("\\\\")
    if len(rows) < 2 or len(entries) != len(rows) or not all(e.strip() for e in entries):
        return answer
    return "\\begin{pmatrix}" + "\\\\".join(e.strip() for e in entries) + "\\end{pmatrix}"


def normalize_pair(gold: str, answer: str) -> tuple[str, str]:
    """Both sides normalised; `answer_variable`, `column_vectors` and `plus_minus` on the
    answer side (the gold's own `\\pm` too)."""
    g, a = normalize(gold), normalize(answer)
    member = _MEMBER.fullmatch(g)
    if member is not None and "=" not in g:  # a gold `x \\in [-2,7]` is the set `[-2,7]`
        g = member["set"].strip()
    a = column_vectors(g, a)
    return plus_minus(g), plus_minus(inequalities(g, set_builder(g, answer_variable(g, a))))


# ------------------------------------------------------------------ verdicts

_WRAPPED_TEXT = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|textrm)\s*\{([^{}]*)\}")
_QUOTES = "\"'`“”‘’"
_ARTICLE = re.compile(r"(?:a|an|the)\s+(?=\S)", re.IGNORECASE)
_CHOICE_FIRST = re.compile(
    r"\(([A-Za-z])\)(?![A-Za-z])|(?:option|choice)\s*\(?([A-Za-z])\)?$", re.IGNORECASE
)
_WORDS = re.compile(r"[A-Za-z][A-Za-z '-]*")
_CHOICE = re.compile(r"\(?([A-Za-z])\)?")
_DECIMAL = re.compile(r"-?(?:\d+\.\d*|\.\d+)")
_RATIONAL = re.compile(
    r"(?P<sign>-)?(?:(?P<number>\d+(?:\.\d+)?|\.\d+)"
    r"|(?P<num>\d+)/(?P<den>\d+)|\\frac(?:\{(?P<n2>\d+)\}\{(?P<d2>\d+)\}|(?P<n3>\d)(?P<d3>\d)))"
)


def word_answer(answer: str, *, bare_letter: bool = False) -> str | None:
    """The words of a wholly textual answer (`\\text{(C)}` → `c`, `\\text{Evelyn}` →
    `evelyn`); None when it is not one. `bare_letter`: `C` alone counts as a choice."""
    s = answer.strip().strip("$").strip().rstrip(".")
    unwrapped = _WRAPPED_TEXT.fullmatch(s)
    if unwrapped is not None:
        s = unwrapped[1].strip().rstrip(".").strip()
    s = s.strip(_QUOTES).strip().rstrip(".").strip()  # `\\text{``east''}`, “east”
    if " " in s:
        s = _ARTICLE.sub("", s, count=1) if _ARTICLE.match(s) else s  # `an ellipse`
    choice = _CHOICE.fullmatch(s)
    if choice is not None and (bare_letter or unwrapped is not None or s.startswith("(")):
        return choice[1].casefold()
    if unwrapped is None and len(s) < 3:
        return None  # `x`, `pi`: math, not words
    if _WORDS.fullmatch(s) and not s.startswith(("\\",)):
        return " ".join(s.casefold().split())
    return None


def choice_letter(answer: str) -> str | None:
    """The letter of a multiple-choice answer that names its option first, `(C) 12`,
    `\\textbf{(C)}\\ 12`, `Option C`, case-folded; None otherwise."""
    s = _WRAPPED_TEXT.sub(r" \1 ", answer).strip().strip("$").strip()  # `(C)\\text{Tuesday}`
    match = _CHOICE_FIRST.match(s)
    if match is None:
        return None
    return (match[1] or match[2]).casefold()


def _rational(text: str) -> Fraction | None:
    """`12`, `-0.25`, `3/4`, `\\frac{3}{4}`, `-\\frac34` as a Fraction; None otherwise."""
    if len(text) > 200:
        return None
    match = _RATIONAL.fullmatch(text)
    if match is None:
        return None
    if match["number"] is not None:
        value = Fraction(match["number"])
    else:
        num = match["num"] or match["n2"] or match["n3"]
        den = int(match["den"] or match["d2"] or match["d3"])
        if den == 0:
            return None
        value = Fraction(int(num), den)
    return -value if match["sign"] else value


rational = TextMemo(_rational, size=8192, max_chars=200)
"""`_rational`, kept for the last answers read (a Fraction is immutable: shared safely)."""


_PERCENT = re.compile(r"(?P<number>.+?)\s*\\?%")


def percentage(text: str) -> Fraction | None:
    """`25\\%` or `25%` as the Fraction 25; None when `text` is not a percentage."""
    match = _PERCENT.fullmatch(text.strip())
    return rational(match["number"].strip()) if match is not None else None


def _decide_percentage(gold: str, answer: str) -> str | None:
    """A percentage on either side: `N%` is N as written, or N/100; None: not one."""
    pg, pa = percentage(gold), percentage(answer)
    if pg is None and pa is None:
        return None
    g = pg if pg is not None else rational(gold)
    a = pa if pa is not None else rational(answer)
    if g is None or a is None:
        return None
    if pg is not None and pa is not None:
        return CORRECT if g == a else WRONG
    share, other = (g, a) if pg is not None else (a, g)
    return CORRECT if other in (share, share / 100) else WRONG


_INTEGER = re.compile(r"-?\d+")
_OPERATOR = r"(?:[+\-*×÷]|\\times(?![A-Za-z])|\\cdot(?![A-Za-z])|\\div(?![A-Za-z]))"
_ARITHMETIC = re.compile(rf"\(?-?\d+\)?(?:\s*{_OPERATOR}\s*\(?-?\d+\)?)+\s*\.?")


_HUGE_POWER = re.compile(r"\d\s*(?:\*\*|\^)\s*\{?\s*\d{7,}")


def unevaluated_arithmetic(gold: str, answer: str) -> bool:
    """An integer gold and an answer that only restates integer arithmetic (`202 * 312`),
    or holds a power with an exponent of 7 digits or more (`a^{987654321098} \\bmod p`:
    a restated modular power, which math-verify would spend its whole timeout on)."""
    if not _INTEGER.fullmatch(gold.strip()):
        return False
    compact = answer.strip().replace(" ", "")
    return bool(_ARITHMETIC.fullmatch(compact) or _HUGE_POWER.search(compact))


_BASE = re.compile(
    r"(?P<digits>[0-9A-Za-z]+)_(?:\{\s*(?:\\(?:text|mathrm)\s*\{\s*)?\(?(?P<b1>\d+)\)?\s*\}?\s*\}"
    r"|\(?(?P<b2>\d+)\)?|(?P<b3>\d))"
)


def numeral(answer: str) -> tuple[str, int] | None:
    """A numeral written with its base, `52_8`, `52_{(8)}`, `1A_{\\text{16}}`, as
    (digits upper-cased, base); None otherwise."""
    match = _BASE.fullmatch(answer.strip())
    if match is None:
        return None
    return match["digits"].upper(), int(match["b1"] or match["b2"] or match["b3"])


def decide(gold: str, answer: str) -> str | None:
    """`correct`/`wrong` for normalised answers these rules settle; None: ask math-verify."""
    if gold == answer and gold:
        return CORRECT
    if unevaluated_arithmetic(gold, answer):
        return WRONG
    based = numeral(gold)
    if based is not None and "_" in answer:  # `52_{9}` is no `52_8` (nor read as 52)
        return CORRECT if numeral(answer) == based else WRONG
    settled = _decide_percentage(gold, answer)
    if settled is not None:
        return settled
    gold_words = word_answer(gold)
    if gold_words is not None and _WRAPPED_TEXT.search(gold):
        choice = len(gold_words) == 1
        answer_words = (choice and choice_letter(answer)) or word_answer(answer, bare_letter=choice)
        return CORRECT if answer_words == gold_words else WRONG
    x, y = rational(gold), rational(answer)
    if x is None or y is None:
        return None
    if x == y:
        return CORRECT
    if _DECIMAL.fullmatch(gold) and _DECIMAL.fullmatch(answer):
        places = len(gold.partition(".")[2])
        if len(answer.partition(".")[2]) > places and abs(x - y) <= Fraction(5, 10 ** (places + 1)):
            return CORRECT  # the gold is itself a rounded decimal
    return WRONG


def is_decimal(answer: str) -> bool:
    """A plain decimal literal such as `0.001736` (settled exactly, never rounded)."""
    return _DECIMAL.fullmatch(answer) is not None
