"""Pull the answer (or the program) out of a model's text, and normalise answers.

Answers (`extract_answer`), looked for in the conclusion (the text after the last
`</think>`; all of it when there is none), first rule that yields something wins:

1. `boxed`: the content of the last `\\boxed{...}` / `\\fbox{...}` (braces balanced).
2. `answer-is`: the last line containing "answer is", "answer:", "correct option is"
   or "correct choice is" (any case, e.g. "The final answer is", "**Answer:**");
   what follows on that line, where a leading
   math span (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`) is taken whole and anything
   else is cut at the first ". " and stripped of surrounding `*`, `:`, spaces and a final
   period.
3. `last-number`: the last number on the last non-empty line: an optional minus, digits
   (thousands commas dropped), an optional decimal part, an optional `/denominator`;
   not when that number ends a list or an interval (`1, 2`, `[2, 5]`): the line's answer
   is then not one number, and taking its last one would accept `[2, 5]` for `5`.
4. nothing: the prediction has no answer (graded wrong).

Without a box, markdown's bold markers are dropped first (`unbold`: "The final answer
is **42**." states 42; the `**` of a power, `2**10`, stays).

Math grading (`math_target`) reads a conclusion differently: its boxes, by the rule for
several boxes (`final_boxes`); without a box, a last line ending in a plain-text
interval or tuple outside any math span (`So $x$ lies in [2, 5].`, `(2, ∞)`, its
infinity written `\\infty` for math-verify; `(6, 31, -1)`) is that interval or tuple;
otherwise math-verify's own extraction
reads the text, and the rules above are the fallback where it finds nothing (a last
line whose last `$...$` span has structure, brackets, braces, commas or relations,
offers that span rather than its last number: `$]2, 5]$`, which math-verify cannot
read, is no `5`).

Several boxes in one conclusion (`final_boxes`). The boxes fall into statements: two
neighbouring boxes belong to one statement unless the text between them ends a
sentence (`.`, `!`, `?`, a line break) or revises (`actually`, `wait`, `corrected`,
`hmm`, `instead`, `mistake`, `on second thought` ...).
- Revision: the answer is the last statement; an earlier box, right or wrong, never
  counts (`\\boxed{64}. Hmm, actually ... \\boxed{63}` answers 63). A revision after the
  last box that states its answer in words takes the box back too (`\\boxed{64}. Wait,
  I counted one pair twice: the answer is 63.` answers 63, `restated_after_box`). The
  rule is strict, since a wrong reading turns a right box wrong: a revision word
  (`actually`, `wait`, `hmm`, `hold on`, `no,`, `oops`, `I miscounted`, `that is
  wrong`, `let me recompute` ...) within a sentence of the statement; the text's last
  statement (`the answer is` / `should be`), ending the text, in a clause of its own;
  no aside between them (a check of a small case, a general formula, a quotation of
  the problem, another question); and an answer by itself (a math span or an
  expression). `Wait, for $n = 2$ the answer is $3$, which agrees` revises nothing.
- One statement with several distinct boxes is one combined answer, its values listed
  (`$x = \\boxed{3}$ or $x = \\boxed{8}$` answers `3, 8`; repeated boxes count once),
  unless two of them share a value (`either $\\boxed{5, 7}$ or $\\boxed{7, 5, 3}$`):
  alternatives, not an answer (`hedged`, graded wrong).
- The gold's shape decides between the two where statements are only separated by a
  sentence: when the gold holds several values (`3, 8`, `(1, 2)`, `\\{1, 2\\}`) and the
  last statement holds fewer, every statement since the last revision is one answer
  (`The first root is \\boxed{3}. The second is \\boxed{8}.` answers `3, 8`; with
  `\\boxed{1}. \\boxed{2}. \\boxed{3}.` against `2, 3` it answers `1, 2, 3`: no subset is
  picked to fit). A one-value gold never joins statements.

Programs (`extract_program`), from the conclusion: its fenced blocks (backticks or
tildes, indented in a list or quoted with `>` too, a byte order mark dropped) tagged
`python`, `py`, `python3`, `py3`, `python3.11` ... or untagged;

1. for a functional test, the last block that defines its function (a usage, test or
   doctest block after it is not the program); for a program judged on its output, the
   last block that reads its input (not a sample output after it);
2. else the last tagged block (a completion's body may not parse on its own);
3. else the last untagged block that parses and holds code (not data such as `3\\n7`);
4. else, when there is no fence at all, the whole conclusion if it parses;
5. else None.

An unclosed final fence (a truncated answer) counts as a block.
"""

from __future__ import annotations

import ast
import itertools
import re
from dataclasses import dataclass
from typing import Literal

from pacore.core.compaction import conclusion, last_boxed
from pacore.core.textmemo import TextMemo

ExtractionRule = Literal["boxed", "answer-is", "last-number"]


@dataclass(frozen=True)
class Extraction:
    """An answer found in a text, and the rule that found it."""

    answer: str
    rule: ExtractionRule


_ANSWER_IS = re.compile(
    r"(?:answer|correct (?:option|choice))\s*(?:is\b|:)|答案\s*(?:是|为|為|：|:)", re.IGNORECASE
)
_MATH_SPANS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_NUMBER = re.compile(r"[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?")


_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z]+\d*);")
_TAG = re.compile(r"</?(?:b|i|em|strong|sup|sub|span|p|br)\b[^<>]*>", re.IGNORECASE)


def unhtml(text: str) -> str:
    """`text` with HTML entities decoded and inline tags dropped (`&minus;5`, `14&frasl;3`,
    `<b>9</b>`): what a renderer shows, which is what the model meant."""
    if "&" not in text and "<" not in text:
        return text
    import html

    return html.unescape(_TAG.sub("", text)) if _ENTITY.search(text) or _TAG.search(text) else text


def extract_answer(text: str) -> Extraction | None:
    """The final answer of `text` and the rule that found it (see the module docstring)."""
    tail = unhtml(conclusion(text))
    boxed = last_boxed(tail)
    if boxed is not None and boxed.strip():
        restated = restated_after_box(tail)
        if restated is not None:
            return Extraction(restated, "answer-is")
        return Extraction(boxed.strip(), "boxed")
    tail = unbold(tail)
    stated = _answer_is(tail)
    if stated:
        return Extraction(stated, "answer-is")
    lines = [line for line in tail.splitlines() if line.strip()]
    if lines:
        number = _last_number(lines[-1])
        if number is not None:
            return Extraction(number, "last-number")
    return None


_BOLD = re.compile(r"(?<![\w)])\*\*|\*\*(?![\w(])")
"""Markdown's bold markers (`**42**`, `**Final Answer:**`); not the `**` of a power
written between two operands (`2**10`)."""


def unbold(text: str) -> str:
    """`text` without markdown bold markers: a model's "The final answer is **42**." is
    42 (math-verify read `42**.` and found nothing)."""
    return _BOLD.sub("", text) if "**" in text else text


_IN_LIST_BEFORE = re.compile(
    r"(?:\d\s*,|[\[(][^\[\]()]*,)\s*$"
    r"|\d\s*,?\s*(?:and|or)\s+(?:[A-Za-z]\s*=\s*)?$"  # `3, 5, and 4`, `x = 8 or x = 9`
)
_LISTED_ITEM = r"(?:[A-Za-z]\s*=\s*)?[-−]?\d+(?:\.\d+)?(?:/\d+)?"
_LISTED_JOIN = r"(?:\s*,\s*(?:(?:and|or)\s+)?|\s+(?:and|or)\s+)"
_LISTED = re.compile(
    rf"(?<![\w.,/])(?P<items>{_LISTED_ITEM}(?:{_LISTED_JOIN}{_LISTED_ITEM})*"
    rf"\s*,?\s*(?:and|or)\s+{_LISTED_ITEM})\s*[.!]?\s*$"
)


LISTED_CHARS = 400
"""How much of a last line's end a list of values in words is looked for in."""


def _listed(line: str) -> str | None:
    """The values a last line ends by listing in words, `3, 5, and 4`, `x = 8 or x = 9`,
    as one list answer (`3, 5, 4`); None when it does not. A one-value gold then never
    takes the last of them."""
    if "and" not in line and "or" not in line:
        return None
    match = _LISTED.search(line[-LISTED_CHARS:])  # the end of a line: bounded, not quadratic
    if match is None:
        return None
    items = re.split(r"\s*,\s*(?:(?:and|or)\s+)?|\s+(?:and|or)\s+", match["items"])
    values = [re.sub(r"^[A-Za-z]\s*=\s*", "", item).replace("−", "-") for item in items]
    return ", ".join(v for v in values if v)


_IN_LIST_AFTER = re.compile(r"\s*(?:,\s*-?\d|[\])])")


def _last_number(line: str) -> str | None:
    """The last number of `line`, unless it ends a list or sits in an interval/tuple."""
    matches = list(_NUMBER.finditer(line))
    if not matches:
        return None
    last = matches[-1]
    before, after = line[: last.start()], line[last.end() :]
    if _IN_LIST_BEFORE.search(before) or (
        len(matches) > 1 and _IN_LIST_AFTER.match(after) and "," in before
    ):
        return None
    return last[0].replace(",", "").replace("−", "-")


@dataclass(frozen=True)
class MathTarget:
    """What the math grader checks: an answer, or a conclusion for math-verify to read."""

    answer: str | None
    """The boxed answer(s), the plain-text interval, or the `extract_answer` fallback."""
    rule: str
    """`boxed`, `plain-interval`, or for free text the fallback's rule (`""`: none)."""
    text: str = ""
    """The conclusion, when math-verify's own extraction should read it (no box)."""


_INF = r"(?:\\?infty|infinity|inf|oo|∞)"
_ONE_INTERVAL = (
    rf"[\[(]\s*(?:[-−]?\d+(?:\.\d+)?|[-−]?{_INF})\s*,\s*"
    rf"(?:[-−]?\d+(?:\.\d+)?|\+?{_INF})\s*[\])]"
)
_PLAIN_INTERVAL = re.compile(
    rf"{_ONE_INTERVAL}(?:\s*(?:∪|\bU\b)\s*{_ONE_INTERVAL})*"  # `(0,9) ∪ (9,36)` is one answer
    r"|\(\s*[-−]?\d+(?:\.\d+)?(?:\s*,\s*[-−]?\d+(?:\.\d+)?){2,}\s*\)"  # a tuple of 3+
)
_UNION_SIGN = re.compile(r"\s*(?:∪|\bU\b)\s*")


def math_target(text: str, gold: str | None = None) -> MathTarget | None:
    """What to grade in `text` against `gold` (see the module docstring: the gold's shape
    settles several boxes); None for an empty conclusion."""
    tail = unhtml(conclusion(text))
    if not tail.strip():
        return None
    boxed = _boxed_target(tail, gold)
    if boxed is not None:
        return boxed
    tail = unbold(tail)
    lines = [line for line in tail.splitlines() if line.strip()]
    last_line = lines[-1] if lines else ""
    if "\\" not in last_line:
        intervals = list(_PLAIN_INTERVAL.finditer(last_line))
        last = intervals[-1] if intervals else None
        # Outside math spans only (`So $x$ lies in (-2, 1).` is one; `$(1, 2)$` is not).
        if (
            last
            and last_line.count("$", 0, last.start()) % 2 == 0
            and not _NUMBER.search(last_line[last.end() :])
        ):
            return MathTarget(_latex_infinity(last[0]), "plain-interval")
    stated = _whole_statement(tail)
    if stated is not None:
        # A stated answer is graded whole: math-verify's reading of the text takes the
        # leading number of one it cannot read (`The answer is 12π.` would be 12).
        return MathTarget(stated, "answer-is")
    listed = _listed(last_line)
    if listed is not None:
        return MathTarget(listed, "last-number")
    display = _last_display(tail)
    if display is not None:  # `\[ \frac{14}{3}. \]` ends the text: that is its answer
        return MathTarget(display, "math-span", tail)
    fallback = extract_answer(tail)
    if fallback is None or fallback.rule == "last-number":
        spans = _LAST_MATH.findall(last_line)
        # With structure, or a command (`$\frac43.$`: no `43`), or an expression that
        # ends the line (`So it is $x^3+3x-6.$`), the span is the answer.
        if spans and (
            _STRUCTURED.search(spans[-1])
            or "\\" in spans[-1]
            or (_ENDS_ON_SPAN.search(last_line) and not _VARIABLE.fullmatch(spans[-1].strip()))
        ):
            return MathTarget(spans[-1].strip(), "math-span", tail)
    if fallback is None or fallback.rule == "boxed":
        return MathTarget(None, "", tail)
    return MathTarget(fallback.answer, fallback.rule, tail)


def _boxed_target(tail: str, gold: str | None) -> MathTarget | None:
    """What to grade in a conclusion with boxes: its final boxes, a hedge, or a statement
    that takes the last box back in words; None without a box."""
    boxes = final_boxes(tail, gold)
    if len(boxes) > 1 and hedges(boxes):
        return MathTarget(None, "hedged")
    if not boxes:
        return None
    restated = restated_after_box(tail)
    if restated is not None:  # `\boxed{64}. Wait, no: the answer is 63.`
        return MathTarget(restated, "answer-is")
    return MathTarget(", ".join(boxes), "boxed")


_BARE_INFINITY = re.compile(r"(?<![\\A-Za-z])(?:infinity|infty|inf|oo)(?![A-Za-z])|∞")


def _latex_infinity(interval: str) -> str:
    """A plain-text interval with its infinity as LaTeX (`(2,∞)`, `(2, infty)`):
    math-verify reads only `\\infty`."""
    text = _BARE_INFINITY.sub(r"\\infty", interval).replace("−", "-")
    return _UNION_SIGN.sub(r" \\cup ", text.replace("+\\infty", "\\infty"))


_LAST_MATH = re.compile(r"\$([^$]+)\$")


def _last_display(tail: str) -> str | None:
    """The body of the display math (`\\[ ... \\]`, `$$ ... $$`) that ends `tail`, its
    closing punctuation dropped; None when the text does not end with one. One backward
    search: linear however many openings a degenerate text holds."""
    end = tail.rstrip()
    for opening, closing in (("\\[", "\\]"), ("$$", "$$")):
        if end.endswith(closing):
            start = end.rfind(opening, 0, len(end) - len(closing))
            body = end[start + len(opening) : len(end) - len(closing)].strip().rstrip(".,;")
            if start >= 0 and body:
                return body
    return None


_VARIABLE = re.compile(r"[A-Za-z](?:_\{?\w+\}?)?")
_ENDS_ON_SPAN = re.compile(r"\$[^$]+\$[\s.!]*$")
_STRUCTURED = re.compile(r"[,\[\]{}<>]|\\(?:le|ge|lt|gt|mid|in|cup)(?![A-Za-z])")


_REVISION = re.compile(
    r"\b(?:actually|wait|hmm+|oops|correct(?:ed|ion|ing)?|mistake|instead|redo(?:ing)?|"
    r"re-?(?:check|consider|examin\w*|comput\w*|calculat\w*|do)|scratch that|"
    r"second thought|not right|wrong|error|revis\w*|fix(?:ed|ing)?)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?](?:[\s$*)\]]|$)|\n")


def final_boxes(text: str, gold: str | None = None) -> list[str]:
    """The boxes of a conclusion that make its answer, by the rule for several boxes
    (see the module docstring); distinct, in order; `[]` when it has no box."""
    boxes = [(start, end, content.strip()) for start, end, content in boxed_spans(text)]
    boxes = [box for box in boxes if box[2]]
    if not boxes:
        return []
    statements: list[list[str]] = [[boxes[0][2]]]
    revised: list[bool] = []  # per break between statements: a revision (else a sentence)
    for (_, end, _), (start, _, content) in itertools.pairwise(boxes):
        between = text[end:start]
        if _REVISION.search(between):
            revised.append(True)
        elif _SENTENCE_END.search(between):
            revised.append(False)
        else:
            statements[-1].append(content)
            continue
        statements.append([content])
    wanted = value_count(gold) if gold is not None else 1
    answer = statements[-1]
    if _values(answer) < wanted:  # every statement since the last revision: one answer
        first = max((i + 1 for i, revision in enumerate(revised) if revision), default=0)
        answer = [box for statement in statements[first:] for box in statement]
    return list(dict.fromkeys(answer))


_ENCLOSED = re.compile(r"\\\{(.*)\\\}|\((.*)\)|\[(.*)\]", re.DOTALL)


def _value_count(answer: str) -> int:
    """How many values an answer lists: `3, 8` and `(1, 2)` hold 2, `\\frac{1}{2}` 1."""
    s = normalize_answer(answer)
    enclosed = _ENCLOSED.fullmatch(s)
    if enclosed is not None:
        s = next(group for group in enclosed.groups() if group is not None)
    return len(top_level_split(s))


value_count = TextMemo(_value_count, size=8192, max_chars=256)
"""`_value_count`, kept for the last answers asked (a gold is asked once per text graded)."""


def hedges(boxes: list[str]) -> bool:
    """Whether distinct boxes of one statement share a value (`either $\\boxed{5, 7}$ or
    $\\boxed{7, 5, 3}$`): alternatives offered, not the parts of one answer."""
    seen: set[str] = set()
    for box in boxes:
        s = normalize_answer(box)
        enclosed = _ENCLOSED.fullmatch(s)
        if enclosed is not None:
            s = next(group for group in enclosed.groups() if group is not None)
        values = {value.strip() for value in top_level_split(s)}
        if values & seen:
            return True
        seen |= values
    return False


def _values(boxes: list[str]) -> int:
    return sum(value_count(box) for box in dict.fromkeys(boxes))


def top_level_split(s: str) -> list[str]:
    """`s` cut at the commas outside every bracket and brace (`\\{` `\\}` count)."""
    depth, start, parts = 0, 0, []
    for i, ch in enumerate(s):
        depth += ch in "({["
        depth -= ch in ")}]"
        if ch == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


def all_boxed(text: str) -> list[str]:
    """The contents of every closed `\\boxed{...}` / `\\fbox{...}` in `text`, in order."""
    return [content for _, _, content in boxed_spans(text)]


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """Every closed `\\boxed{...}` / `\\fbox{...}` in `text`: (start, end, content), in order.

    Linear in the text: braces are matched once, so a long run of unclosed boxes (what a
    degenerate model writes) costs no more than reading it.
    """
    starts = [at for at in (text.find("\\boxed"), text.find("\\fbox")) if at >= 0]
    if not starts:
        return []
    closing = _matching_braces(text, min(starts))
    found = []
    for match in _BOX.finditer(text):
        i = match.end()
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "{":
            close = closing.get(i)
            if close is None:
                continue  # never closed
            end = close + 1
        else:  # `\\boxed 5`: the argument runs to the next whitespace or `$`
            end = i
            while end < len(text) and not text[end].isspace() and text[end] != "$":
                end += 1
        content = last_boxed(text[match.start() : end])
        if content is not None:
            found.append((match.start(), end, content))
    return found


_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACE = re.compile(r"[{}]")


def _matching_braces(text: str, start: int = 0) -> dict[int, int]:
    """For each `{` from `start` on that is closed, the index of its `}` (one pass over
    the braces, a stack; the other characters are skipped by the pattern).

    A brace before `start` changes no pair after it: a `}` that would close one finds
    the stack of the braces after `start` empty, and the pairs among those are the same.
    """
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for match in _BRACE.finditer(text, start):
        j = match.start()
        if text[j] == "{":
            stack.append(j)
        elif stack:
            pairs[stack.pop()] = j
    return pairs


def _answer_is(text: str) -> str | None:
    stated = _statement(text)
    return stated[0] if stated is not None else None


_REMARK = re.compile(
    # Each way in starts where a run of spaces starts (`(?<!\s)`): one try a run, so a
    # line of 100,000 spaces costs one scan, not one a space.
    r"(?<!\s)(?:\s*\((?:(?:since|because|as|from|by|using|via|which|where|when|note|this|"
    r"that|the|it|for|check(?:ed|ing)?|verified|rounded|approximately|about)\b|i\.e\.|e\.g\.)"
    r"[^()]*\)$|(?:,\s*|\s+)(?:(?:since|because)\b|i\.e\.|e\.g\.).*$|,\s*not\s.*$|\s+instead$)",
    re.IGNORECASE,
)
"""A closing remark: in parentheses that begin with a word (`9 (since 8 + 1 = 9)`,
`9 (i.e. the pairs)`), a clause of reason or illustration (`9, since it is the only
value that works`, `42, e.g. as shown above`), or `instead`."""

_CURRENCY = re.compile(r"\$\s?\d[\d,]*(?:\.\d+)?[.!]?")
"""A sum of money, not a math span left open: `$18`, `$1,250.50.`"""

_SENTENCE = re.compile(r"(?<!\bi\.e)(?<!\be\.g)\. ")
"""Where a stated answer's sentence ends: not inside `i.e.` or `e.g.`."""


_ADVERB = re.compile(r"(?:actually|indeed|really|just|simply|now|therefore)\s+", re.IGNORECASE)
"""An adverb before the answer it states (`the answer is actually 63`)."""

StatementKind = Literal["plain", "span", "span and more"]


def _statement(
    text: str, stating: re.Pattern[str] | None = None
) -> tuple[str, StatementKind] | None:
    """The answer-is rule's answer, and how it was written: plain text, a math span that
    is all the line states (`The answer is $9\\mathrm{i}$.`), or a span followed by
    more (`$x$ where $x = 5$`). A span left open (a text cut inside it) states nothing.
    `stating` replaces `_ANSWER_IS`."""
    matches = list((stating or _ANSWER_IS).finditer(text))
    if not matches:
        return None
    # `\textbf{Answer:} 42`, `$\text{Answer: } 9$`: the label's own brace and dollar
    rest = text[matches[-1].end() :].split("\n", 1)[0].strip().lstrip("*:} \t")
    adverb = _ADVERB.match(rest)
    rest = rest[adverb.end() :] if adverb else rest
    if rest.count("$") % 2 and rest.rstrip(" .").endswith("$") and not rest.startswith("$"):
        rest = rest.rstrip(" .")[:-1]
    for opening, closing in _MATH_SPANS:
        if rest.startswith(opening):
            end = _closing(rest, closing, len(opening))
            if end < 0 and _CURRENCY.fullmatch(rest):  # `The answer is $18.`: dollars
                break
            if end < 0:  # `the answer is $\frac{2` where the text was cut: no statement
                return None
            if end > len(opening):
                span = rest[len(opening) : end].strip()
                alone = not rest[end + len(closing) :].strip(" \t.!*")
                return (span, "span" if alone else "span and more") if span else None
    rest = _SENTENCE.split(rest, maxsplit=1)[0].strip().strip("*").strip()
    rest = _REMARK.sub("", rest.rstrip(".。").strip()).strip()
    return (rest, "plain") if rest else None


def _whole_statement(text: str, stating: re.Pattern[str] | None = None) -> str | None:
    """The answer-is statement of `text` when it is an answer by itself: a math span, a
    plain-text expression (`reads_as_math`), or a span followed by a remark (`$\\frac{19}{2}$
    (we checked all 9 cases)`: the span, not the remark's 9; a bare variable, `$x$
    where $x = 5$`, is not one). None for prose and for no statement."""
    stated = _statement(text, stating)
    if stated is None:
        return None
    answer, kind = stated
    if (
        kind == "span"
        or (kind == "plain" and reads_as_math(answer))
        or (kind == "span and more" and not _VARIABLE.fullmatch(answer))
    ):
        return answer
    return None


_RESTATING = re.compile(
    r"(?:\b(?:actually|wait|hmm+|oops|hold on|correction|scratch that|on second thought|"
    r"i (?:made an? (?:mistake|error)|was wrong|mis(?:counted|calculated|read)|"
    r"(?:double|over|under)[- ]?counted|forgot)|"
    r"(?:that|this)(?:'s| is| was) (?:wrong|incorrect|not right|a mistake)|"
    r"let me (?:redo|fix|correct|re-?(?:comput\w*|calculat\w*|do)))"
    r"|(?:(?<=[\n.!?:])|(?<=[\n.!?:] ))no,)(?![a-z])",
    re.IGNORECASE,
)
"""What opens a revision after the last box: a model that takes its boxed answer back
in words. Not `mistake` or `error` alone (`A common mistake is to say the answer is 4`
after `\\boxed{3}` revises nothing), and not a check (`let me verify`)."""

_ASIDE = re.compile(
    r"\b(?:check\w*|verif\w*|confirm\w*|example|e\.g\.|special case|small case|simple case|"
    r"sanity|for instance|in general|generally|might|would|could|says|said|wrote|written|"
    r"earlier|previously|follow-up|part|question|formula|if|what if|otherwise|suppos\w*|"
    r"assum\w*|with|without|as an?|in (?:radians|degrees)|percent\w*|units?)\b",
    re.IGNORECASE,
)
"""Words that make the text between a revision and a statement an aside rather than a
revision: a check of a small case, a general formula, a quotation, another question."""

_REVISED = re.compile(
    r"(?:answer|correct (?:option|choice)|(?:correct|right|actual|final) (?:value|count|"
    r"total|number|result))\s*(?:is\b|should be\b|:)",
    re.IGNORECASE,
)
"""A revised statement: `_ANSWER_IS`, `the answer should be`, and `the correct value is`
(after a revision they state the answer as surely as `the answer is`)."""

_BREAKS = re.compile(r"[.!?]\s*\n\s*|[.!?](?=\s|$)|\n\s*")
"""Where a sentence or a paragraph ends (a period and blank lines are one end)."""

_CLEAN_CLAUSE = re.compile(
    r"(?:(?:so|thus|therefore|hence|then|instead|rather|now|okay|ok|hmm+|wait|no|"
    r"actually|oops)[,!]?\s+)*(?:the\s+)?(?:(?:final|correct|right|true|real|actual|"
    r"corrected|revised|new)\s+)?",
    re.IGNORECASE,
)
"""What may open the clause of a revised statement before `answer`: connectives, `the`,
an adjective (`So the correct answer is`); not `for $n = 2$ the answer is`."""


def _says_more(rest: str) -> bool:
    """Whether the text after `answer is` goes on past its sentence (`$3$, which agrees
    with the formula`, `12. We check ...`): then it is no revision that ends the text
    (prose inside the sentence, `63, which matches`, is no whole answer either)."""
    line = rest.split("\n", 1)[0].strip().lstrip("*:} \t")
    for opening, closing in _MATH_SPANS:
        if line.startswith(opening):
            end = _closing(line, closing, len(opening))
            return end < 0 or bool(line[end + len(closing) :].strip(" \t.!*"))
    more = _SENTENCE.split(line, maxsplit=1)[1:]  # prose in the sentence: not a whole answer
    return bool(more and more[0].strip(" .!*"))


def restated_after_box(tail: str) -> str | None:
    """The answer a conclusion states in words after a revision that follows its last
    box (`\\boxed{64}. Hmm, actually I miscounted: the answer is 63.` answers 63); None
    when nothing after the last box revises it.

    A revision is strict, since a wrong one turns a right box wrong: a revision word
    (`_RESTATING`) after the box; then, within that sentence or the next, the text's
    last statement, ending the text, in a clause of its own (`_CLEAN_CLAUSE`), and no
    aside between them (`_ASIDE`: `Wait, let me check $n = 2$: the answer is 3`); and the
    statement is an answer by itself (`_whole_statement`)."""
    last = max(tail.rfind("\\boxed"), tail.rfind("\\fbox"))
    if last < 0 or _RESTATING.search(tail, last) is None:  # the common case: one scan
        return None
    spans = boxed_spans(tail)
    if not spans:
        return None
    after = unbold(tail[spans[-1][1] :]).rstrip()
    stated = list(_REVISED.finditer(after))
    if not stated:
        return None
    statement = stated[-1]
    revisions = [m for m in _RESTATING.finditer(after, 0, statement.start())]
    if not revisions:
        return None
    between = after[revisions[-1].end() : statement.start()]
    if len(_BREAKS.findall(between)) > 1 or _ASIDE.search(between):
        return None
    clause_start = max(after.rfind(c, 0, statement.start()) for c in ".!?:;\n,") + 1
    if not _CLEAN_CLAUSE.fullmatch(after[clause_start : statement.start()].lstrip()):
        return None
    line_end = after.find("\n", statement.end())
    if line_end >= 0 and after[line_end:].strip():  # the statement's line ends the text
        return None
    if _says_more(after[statement.end() :]):
        return None
    return _whole_statement(after[revisions[-1].end() :], _REVISED)


def _closing(text: str, closing: str, start: int) -> int:
    """Where `closing` first ends a span in `text` from `start`, an escaped `\\$` (a
    dollar sign inside the math) skipped; -1 when nothing closes it."""
    end = text.find(closing, start)
    while end > 0 and closing == "$" and text[end - 1] == "\\":
        end = text.find(closing, end + 1)
    return end


_MATH_WORDS = frozenset(
    ("or", "and", "sqrt", "pi", "infty", "inf", "sin", "cos", "tan", "cot", "sec", "csc",
     "log", "ln", "exp", "mod", "gcd", "lcm", "max", "min", "arcsin", "arccos", "arctan",
     "sinh", "cosh", "tanh")
)  # fmt: skip
_LETTERS = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_WRAPPED_WORDS = re.compile(
    r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|textrm|begin|end)\s*\{[^{}]*\}"
)


def reads_as_math(statement: str) -> bool:
    """Whether a plain-text statement of an answer is an expression, not prose: no
    word of two or more letters outside LaTeX commands and `\\text{...}`-style wrappers
    but function names, `pi` and the list words `or` / `and` (`12π`, `6 - 5i`, `4, 5`,
    `9 < x < 14`, `\\frac 42`; not `9 because it divides 18`)."""
    bare = _WRAPPED_WORDS.sub(" ", statement)
    return all(word.lower() in _MATH_WORDS for word in _LETTERS.findall(bare))


# --------------------------------------------------------------------- normalising

_SPACING = re.compile(r"(?<!\\)\\[,;:! ]|~")  # not the `\\` of a matrix row
_LEFT_RIGHT = re.compile(
    r"\\(?:left|right|displaystyle|textstyle)(?![A-Za-z])|\\[bB]igg?[lr]?(?![A-Za-z])"
)
_FRAC = re.compile(r"\\(?:[dtc]|nice|s)frac(?![A-Za-z])")
_COLOR = re.compile(r"\\(?:text)?color\s*\{[^{}]*\}")


def _uncolored(text: str) -> str:
    """`text` without colour commands: `\\textcolor{red}{3\\sqrt{13}}` is `3\\sqrt{13}`,
    `\\color{red}{204}` is `204` (braces balanced)."""
    while (found := _COLOR.search(text)) is not None:
        start, end = found.span()
        rest = text[end:].lstrip()
        if not rest.startswith("{"):
            text = text[:start] + text[end:]
            continue
        depth, close = 0, -1
        for i, ch in enumerate(rest):
            depth += (ch == "{") - (ch == "}")
            if depth == 0:
                close = i
                break
        if close < 0:
            return text
        text = text[:start] + rest[1:close] + rest[close + 1 :]
    return text


_LABEL = re.compile(
    r"^\\text(?:bf)?\s*\{\s*(?:the\s+)?(?:final\s+)?answer\s*(?:is)?\s*:?\s*\}\s*", re.IGNORECASE
)
_QUAD_REMARK = re.compile(r"\\q?quad\s*\(?\s*\\text\s*\{[^{}]*\}\s*\)?\s*$")
_TRAILING = re.compile(r"(?:\\\\|\\q?quad|\\text\s*\{\s*[.,;:]?\s*\})$")
"""A line break, a quad or a `\\text{.}` that ends an answer without being part of it."""


def _untrailed(s: str) -> str:
    """`s` without what ends it without being part of it: spaces, `.,;:` and
    `_TRAILING`, in any mix (a piece a step, from the end: linear however long)."""
    end = len(s)
    while True:
        before = end
        while end and (s[end - 1].isspace() or s[end - 1] in ".,;:"):
            end -= 1
        found = _TRAILING.search(s, max(0, end - 24), end)
        if found is not None:
            end = found.start()
        if end == before:
            return s[:end]


_WHITESPACE = re.compile(r"\s+")
_ALREADY_NORMAL = re.compile(r"[^\s\\~$.]*")
"""An answer without whitespace, backslash, `~`, `$` or `.`: its own normal form."""
_TEXT_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")


def _normalize_answer(answer: str) -> str:
    """A canonical spelling of a LaTeX answer that never changes its meaning.

    Strips surrounding `$` and spaces and what ends it without being part of it (a
    period, comma, semicolon or colon, `\\\\`, `\\quad`); drops colours, a leading
    `\\text{Answer:}` and a closing `\\quad (\\text{...})` remark; drops `\\left` and
    `\\right` (and `\\big` & co, `\\displaystyle`), LaTeX spacing (`\\,` `\\;` `\\!`
    `~`); `\\dfrac`/`\\tfrac`/`\\cfrac`/`\\nicefrac`/`\\sfrac` become `\\frac`;
    whitespace disappears except a single space between two letters or digits (`\\pi r`
    stays apart). Two answers with the same normal form are equivalent.
    """
    if _ALREADY_NORMAL.fullmatch(answer) and answer[-1:] not in (",", ";", ":"):
        return answer  # nothing below would change it
    s = answer.strip().removesuffix(".").strip()
    while len(s) > 1 and s[0] == "$" and s[-1] == "$" and s[-2] != "\\":
        s = s[1:-1].strip()
    if "\\" in s:
        s = _uncolored(s)  # `\textcolor{red}{9}`
        s = _QUAD_REMARK.sub("", _LABEL.sub("", s))  # `\text{Answer: } 9 \quad (\text{exact})`
    s = _SPACING.sub(" ", s)
    s = _untrailed(s)  # `42,`, `9;`, `27 \\\\`, `52_8 \\quad`, `9\\,.`
    s = _LEFT_RIGHT.sub("", s)
    s = _FRAC.sub(r"\\frac", s)
    s = _WHITESPACE.sub(" ", s).strip()
    out = []
    for i, ch in enumerate(s):
        if ch == " " and not (s[i - 1].isalnum() and s[i + 1].isalnum()):
            continue
        out.append(ch)
    return "".join(out).rstrip(".")


normalize_answer = TextMemo(_normalize_answer, size=8192, max_chars=256)
"""`_normalize_answer`, kept for the last short answers asked (a vote compares each answer
with every other)."""


def normalize_text(answer: str) -> str:
    """`normalize_answer`, `\\text{...}`-style wrappers unwrapped, then case-folded."""
    s = _TEXT_WRAPPERS.sub(r"\1", answer)
    return normalize_answer(s).casefold()


# ------------------------------------------------------------------------- numbers

_UNITS = re.compile(r"\\text\s*\{[^{}]*\}|\^\s*\{?\\circ\}?|\\%|%|\\\$|°")
_FRACTION = re.compile(r"\\frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}")
_PLAIN = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?", re.IGNORECASE)


def parse_number(answer: str) -> float | None:
    """A number from an answer such as `1,234.5`, `-3/4`, `\\frac{3}{4}`, `10\\text{ cm}`,
    `45^\\circ`, `12\\%`, `1e-3`; None when it is not one number."""
    s = normalize_answer(_UNITS.sub("", answer))
    s = _FRACTION.sub(r"\1/\2", s).replace("{,}", "")
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    num, slash, den = s.partition("/")
    try:
        if not _PLAIN.fullmatch(num) or (slash and not _PLAIN.fullmatch(den)):
            return None
        value = float(num)
        return value / float(den) if slash else value
    except (ValueError, ZeroDivisionError):
        return None


# ------------------------------------------------------------------------ programs

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*(?:>[ \t]?)*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<tag>[A-Za-z0-9_+.-]*)[^\n]*\n"
    r"(?P<body>.*?)(?:^[ \t>]*(?P=fence)[`~]*[ \t]*$|\Z)",
    re.DOTALL | re.MULTILINE,
)
_PYTHON_TAG = re.compile(r"(?:python|py)[\d.]*")
"""`python`, `python3`, `py`, `py3`, `python3.11`: a Python block (any case)."""
_READS_INPUT = re.compile(r"\binput\s*\(|\bstdin\b|\bopen\s*\(\s*0\b")


MAX_FENCES = 64
"""Code fences read from the end of a conclusion: a model that writes thousands of them
would otherwise make the fence search quadratic in the text."""


def extract_program(text: str, *, entry: str | None = None, stdin: bool = False) -> str | None:
    """The program in `text` (see the module docstring), or None.

    `entry`: a functional test's function; the last block that defines it is the
    program (a usage or test block after it is not). `stdin`: a program judged on its
    output; the last block that reads its input is the program (a sample output or a
    usage block after it is not)."""
    tail = conclusion(text).replace("\ufeff", "")
    fences = [m.start() for m in re.finditer("```|~~~", tail)]
    if len(fences) > MAX_FENCES:
        tail = tail[fences[-MAX_FENCES] :]
    blocks = [(m["tag"].lower(), _unindent(m["body"], m["indent"])) for m in _FENCE.finditer(tail)]
    python = [(tag, body) for tag, body in blocks if not tag or _PYTHON_TAG.fullmatch(tag)]
    programs = [body for _, body in python if parses(body) and _is_program(body)]
    if entry:
        defines = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry)}\s*\(", re.MULTILINE)
        chosen = next((b for b in reversed(programs) if defines.search(b)), None)
        if chosen is not None:
            return chosen
    elif stdin:
        chosen = next((b for b in reversed(programs) if _READS_INPUT.search(b)), None)
        if chosen is not None:
            return chosen
    tagged = [body for tag, body in python if tag]
    if tagged:  # a completion's body may not parse on its own: the last tagged block
        return tagged[-1]
    if programs:
        return programs[-1]
    if not blocks and tail.strip() and parses(tail):
        return tail
    return None


def _unindent(body: str, indent: str) -> str:
    """A fence's body without the fence's own indentation or `>` quoting (a block in a
    list item or a quote), a line at a time."""
    lines = body.splitlines(keepends=True)
    if ">" in indent:
        return "".join(re.sub(r"^[ \t]*>[ \t]?", "", line, count=1) for line in lines)
    width = len(indent)
    return "".join(line[width:] if not line[:width].strip() else line for line in lines)


def _is_program(body: str) -> bool:
    """Whether a block that parses holds code, not data: a sample output (`3\\n7`, `YES`)
    parses as bare expressions."""
    try:
        tree = ast.parse(body)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant | ast.Name))
        for node in tree.body
    )


def parses(source: str) -> bool:
    """Whether `source` is syntactically valid Python (never runs it)."""
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True
