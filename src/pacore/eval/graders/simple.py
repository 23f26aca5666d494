"""Graders that need no math engine: exact (normalised string) and numeric (tolerance).

Both extract the answer like the math grader (`extract.extract_answer`).

- `exact`: equal after `extract.normalize_text` (LaTeX spacing and `\\left`/`\\right`
  dropped, `\\text{...}`-style wrappers unwrapped, whitespace squeezed, case-folded).
  Multiple-choice letters, names, yes/no. A blank gold is ungradable.
- `numeric`: both sides read as one number (`extract.parse_number`: `1,234.5`, `-3/4`,
  `\\frac{3}{4}`, `10\\text{ cm}`, `45^\\circ`, `12\\%`, `1e-3`) and compared with
  `math.isclose(rel_tol, abs_tol)`. A gold that is not a number is ungradable; an
  answer that is not one is wrong.
"""

from __future__ import annotations

import math

from pacore.eval.graders.base import Grade, GradeInput, GraderBase, ungradable, verdict
from pacore.eval.graders.extract import extract_answer, normalize_text, parse_number


def _suffix(rule: str) -> str:
    return "" if rule == "boxed" else f" ({rule})"


class ExactGrader(GraderBase):
    """Normalised string equality."""

    name = "exact"

    def grade(self, prediction: str, sample: GradeInput) -> Grade:
        found = extract_answer(prediction)
        extracted = found.answer if found else None
        if sample.answer is None or not normalize_text(sample.answer):
            return ungradable("no gold answer", extracted)
        if found is None:
            return verdict(False, None, "no answer")
        same = normalize_text(found.answer) == normalize_text(sample.answer)
        return verdict(same, extracted, ("correct" if same else "wrong") + _suffix(found.rule))


class NumericGrader(GraderBase):
    """Numbers equal within a tolerance."""

    name = "numeric"

    def __init__(self, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> None:
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol

    def grade(self, prediction: str, sample: GradeInput) -> Grade:
        found = extract_answer(prediction)
        extracted = found.answer if found else None
        if sample.answer is None:
            return ungradable("no gold answer", extracted)
        gold = parse_number(sample.answer)
        if gold is None:
            return ungradable("gold not a number", extracted)
        if found is None:
            return verdict(False, None, "no answer")
        value = parse_number(found.answer)
        if value is None:
            return verdict(False, extracted, "answer not a number" + _suffix(found.rule))
        close = math.isclose(value, gold, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        return verdict(close, extracted, ("correct" if close else "wrong") + _suffix(found.rule))
