"""Choosing the grader of an evaluation: the one named, or the one the data calls for.

The runner uses a grader as it is (`graders.base.Grader`: `grade_many`, `extract`,
`same`); samples become grader input with `Sample.grade_input()`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pacore.errors import ConfigError
from pacore.eval.datasets import Sample
from pacore.eval.graders import Grader, get_grader


def grader_for(name: str | None, samples: Sequence[Sample]) -> Grader:
    """The named grader, or the one the data calls for: `code` when records carry tests."""
    if name is None:
        name = "code" if any(s.is_code for s in samples) else "math"
    grader = get_grader(name)
    if name == "code" and not any(s.is_code for s in samples):
        grader.close()
        raise ConfigError("the code grader needs records with 'tests'")
    return grader
