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
from collections.abc import Sequence

from pacore.graders.base import Grade, GradeInput, GraderBase
from pacore.graders.extract import (
    extract_answer,
    normalize_answer,
    normalize_text,
    parse_number,
)


def _suffix(rule: str) -> str:
    return "" if rule == "boxed" else f" ({rule})"


class ExactGrader(GraderBase):
    """Normalised string equality."""

    name = "exact"

    def grade_quick(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade | None]:
        """Every grade: string work only, nothing to wait on."""
        return list(self.grade_many(items))

    def grade(self, prediction: str, sample: GradeInput) -> Grade:
        """Grade by normalised string equality."""
        found = extract_answer(prediction)
        extracted = found.answer if found else None
        if sample.answer is None or not normalize_text(sample.answer):
            return Grade.ungradable("no gold answer", extracted)
        if found is None:
            return Grade.decided(False, None, "no answer")
        equal = self.same(found.answer, sample.answer)
        return Grade.decided(
            equal, extracted, ("correct" if equal else "wrong") + _suffix(found.rule)
        )

    def same(self, a: str, b: str) -> bool:
        """Equal after `extract.normalize_text` (the rule answers are graded by)."""
        return normalize_text(a) == normalize_text(b)


class NumericGrader(GraderBase):
    """Numbers equal within a tolerance."""

    name = "numeric"

    def grade_quick(self, items: Sequence[tuple[str, GradeInput]]) -> list[Grade | None]:
        """Every grade: parsing numbers only, nothing to wait on."""
        return list(self.grade_many(items))

    def __init__(self, *, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> None:
        """Numbers within `rel_tol` (relative) or `abs_tol` (absolute) are equal."""
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol

    def grade(self, prediction: str, sample: GradeInput) -> Grade:
        """Grade by numeric closeness; a gold that is not a number is ungradable."""
        found = extract_answer(prediction)
        extracted = found.answer if found else None
        if sample.answer is None:
            return Grade.ungradable("no gold answer", extracted)
        gold = parse_number(sample.answer)
        if gold is None:
            return Grade.ungradable("gold not a number", extracted)
        if found is None:
            return Grade.decided(False, None, "no answer")
        value = parse_number(found.answer)
        if value is None:
            return Grade.decided(False, extracted, "answer not a number" + _suffix(found.rule))
        close = self._close(value, gold)
        return Grade.decided(
            close, extracted, ("correct" if close else "wrong") + _suffix(found.rule)
        )

    def same(self, a: str, b: str) -> bool:
        """The same normal form, or two numbers within the grader's tolerance."""
        if normalize_answer(a) == normalize_answer(b):
            return True
        x, y = parse_number(a), parse_number(b)
        return x is not None and y is not None and self._close(x, y)

    def _close(self, x: float, y: float) -> bool:
        return math.isclose(x, y, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
