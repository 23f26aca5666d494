"""The bridge between the graders and the eval runner: samples in, verdicts out.

The runner needs three things from a grader: grades for a batch of texts, the
answer inside a message (for voting and the solipsism analysis), and answer
equivalence (self-consistency clusters answers by it, not by string).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pacore.errors import ConfigError
from pacore.eval.datasets import Sample
from pacore.eval.graders import GradeInput, Grader, extract_answer, get_grader, normalize_answer
from pacore.eval.graders.extract import parse_number
from pacore.eval.runner import Verdict


def grade_input(sample: Sample) -> GradeInput:
    limit = sample.metadata.get("time_limit_s")
    return GradeInput(
        answer=sample.answer,
        tests=sample.tests,
        entry_point=sample.entry_point,
        prompt=sample.prompt,
        time_limit_s=float(limit) if isinstance(limit, int | float) else None,
    )


class EvalGraderAdapter:
    """Wraps a `Grader` for the runner."""

    def __init__(self, grader: Grader) -> None:
        self.grader = grader
        self.name = grader.name

    def grade_batch(self, items: Sequence[tuple[str, Sample]]) -> list[Verdict]:
        grades = self.grader.grade_many([(text, grade_input(s)) for text, s in items])
        return [Verdict(g.score, g.correct, g.extracted, g.reason) for g in grades]

    def extract(self, text: str) -> str | None:
        if self.name == "code":
            return None  # programs are not voted on
        found = extract_answer(text)
        return found.answer if found else None

    def same(self, a: str, b: str) -> bool:
        if normalize_answer(a) == normalize_answer(b):
            return True
        if self.name == "math":
            equivalent = getattr(self.grader, "equivalent", None)
            return bool(equivalent(a, b)) if equivalent is not None else False
        if self.name == "numeric":
            x, y = parse_number(a), parse_number(b)
            return x is not None and y is not None and math.isclose(x, y, rel_tol=1e-6)
        return False

    def close(self) -> None:
        self.grader.close()


def grader_for(name: str | None, samples: Sequence[Sample]) -> EvalGraderAdapter:
    """The named grader, or the one the data calls for: `code` when records carry tests."""
    if name is None:
        name = "code" if any(s.is_code for s in samples) else "math"
    grader = get_grader(name)
    if name == "code" and not any(s.is_code for s in samples):
        grader.close()
        raise ConfigError("the code grader needs records with 'tests'")
    return EvalGraderAdapter(grader)
