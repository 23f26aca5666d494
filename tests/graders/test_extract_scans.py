"""The extractor's scans skip what cannot matter, and find exactly what a full scan finds.

`boxed_spans` matches braces from the first box on, one pattern match per brace instead
of a look at every character; `normalize_answer` returns at once an answer none of its
rewrites can change; `value_count` remembers recent answers. Each is checked against the
plain scan it replaces (written out below as it was), on the labelled model-style texts
and golds of `tests/data` and on random texts dense in what the scans look for.
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

from pacore.core.compaction import last_boxed
from pacore.graders.extract import _value_count, boxed_spans, normalize_answer, value_count

DATA = Path(__file__).resolve().parents[1] / "data"


def plain_boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """Every closed box, braces matched by looking at every character of the text."""
    stack: list[int] = []
    closing: dict[int, int] = {}
    for j, char in enumerate(text):
        if char == "{":
            stack.append(j)
        elif char == "}" and stack:
            closing[stack.pop()] = j
    found = []
    for match in re.finditer(r"\\(?:boxed|fbox)(?![A-Za-z])", text):
        i = match.end()
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "{":
            if i not in closing:
                continue
            end = closing[i] + 1
        else:
            end = i
            while end < len(text) and not text[end].isspace() and text[end] != "$":
                end += 1
        content = last_boxed(text[match.start() : end])
        if content is not None:
            found.append((match.start(), end, content))
    return found


def plain_normalize(answer: str) -> str:
    """`normalize_answer` with every rewrite applied, whatever the answer holds."""
    s = answer.strip().removesuffix(".").strip()
    while len(s) > 1 and s[0] == "$" and s[-1] == "$" and s[-2] != "\\":
        s = s[1:-1].strip()
    s = re.sub(r"\\(?:text)?color\s*\{[^{}]*\}\s*\{([^{}]*)\}", r"\1", s)  # colours
    s = re.sub(r"^\\text(?:bf)?\s*\{\s*(?:the\s+)?(?:final\s+)?answer\s*(?:is)?\s*:?\s*\}\s*",
               "", s, flags=re.IGNORECASE)  # fmt: skip
    s = re.sub(r"\\q?quad\s*\(?\s*\\text\s*\{[^{}]*\}\s*\)?\s*$", "", s)
    s = re.sub(r"(?<!\\)\\[,;:! ]|~", " ", s)
    # what ends an answer without being part of it: punctuation, `\\`, `\quad`, a space
    s = re.sub(r"(?:\s|[.,;:]|\\\\|\\q?quad(?![A-Za-z])|\\text\s*\{\s*[.,;:]?\s*\})+$", "", s)
    s = re.sub(
        r"\\(?:left|right|displaystyle|textstyle)(?![A-Za-z])|\\[bB]igg?[lr]?(?![A-Za-z])", "", s
    )
    s = re.sub(r"\\(?:[dtc]|nice|s)frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\s+", " ", s).strip()
    out = [ch for i, ch in enumerate(s) if ch != " " or (s[i - 1].isalnum() and s[i + 1].isalnum())]
    return "".join(out).rstrip(".")


def labelled_texts() -> tuple[list[str], list[str]]:
    """The responses and golds of the labelled cases, and every gold of the sets."""
    texts, golds = [], []
    for name in ("math_cases.jsonl", "math_generated.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            case = json.loads(line)
            texts.append(case["response"])
            golds.append(case["gold"])
    for line in (DATA / "math_golds.jsonl").read_text(encoding="utf-8").splitlines():
        golds.append(json.loads(line)["answer"])
    return texts, golds


def random_text(rng: random.Random) -> str:
    pieces = ["{", "}", "{", "}", "\\boxed", "\\boxed ", "\\fbox", "\\boxedx", " ", "$", "x",
              "12", "\\frac", "\n", "\\{", "\\}", ".", ","]  # fmt: skip
    return "".join(rng.choices(pieces, k=rng.randint(0, 40)))


def test_boxes_are_those_of_the_full_scan() -> None:
    texts, _ = labelled_texts()
    rng = random.Random(7)
    texts += [random_text(rng) for _ in range(5000)]
    for text in texts:
        assert boxed_spans(text) == plain_boxed_spans(text), text
    assert sum(1 for t in texts if boxed_spans(t)) > 2000  # most hold a box


def test_braces_before_the_first_box_change_nothing() -> None:
    """An unclosed or closed brace anywhere before the box: the same box."""
    rng = random.Random(8)
    for _ in range(2000):
        before = "".join(rng.choices(["{", "}", "a", " ", "\\{"], k=rng.randint(0, 12)))
        after = "".join(rng.choices(["{", "}", "b", " "], k=rng.randint(0, 6)))
        text = f"{before}\\boxed{{4{after}}}{after}"
        assert boxed_spans(text) == plain_boxed_spans(text), text


def test_normal_forms_are_those_of_every_rewrite() -> None:
    texts, golds = labelled_texts()
    rng = random.Random(9)
    alphabet = "ab12 .$~\\,;!{}()\t\u00a0\u2009x-=^_"
    answers = golds + [t[-40:] for t in texts]
    answers += ["".join(rng.choices(alphabet, k=rng.randint(0, 16))) for _ in range(20000)]
    for answer in answers + answers:  # the second time from the memo
        assert normalize_answer(answer) == plain_normalize(answer), answer
    assert sum(1 for a in golds if normalize_answer(a) is a) > 300  # the quick return is used


def test_the_quick_return_knows_every_space() -> None:
    """Whitespace is whatever `str.strip` strips: the pattern that lets an answer through
    untouched refuses every such character."""
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    for space in spaces:
        answer = f"1{space}2"
        assert normalize_answer(answer) == plain_normalize(answer)


def test_value_counts_are_remembered_not_changed() -> None:
    _, golds = labelled_texts()
    first = [value_count(g) for g in golds]
    again = [value_count(g) for g in golds]
    assert first == again
    assert first == [_value_count(g) for g in golds]  # what the function itself gives
    assert value_count("3, 8") == 2
    assert value_count("(1, 2)") == 2
    assert value_count("\\frac{1}{2}") == 1


def test_remembered_rules_give_the_rules_own_values() -> None:
    """The math rules' normalisation and rational reading, remembered for short answers,
    give what the functions compute, the first time and from the memo; long answers are
    computed every time and never kept."""
    from pacore.graders import math_rules

    texts, golds = labelled_texts()
    answers = golds + [t[-30:] for t in texts] + ["1/2", "-\\frac34", "0.25", "x" * 300]
    for _ in range(2):
        for answer in answers:
            assert math_rules.normalize(answer) == math_rules._normalize(answer)
            assert math_rules.rational(answer) == math_rules._rational(answer)
    assert "x" * 300 not in math_rules.normalize
    assert math_rules.rational("-\\frac34") == -0.75
