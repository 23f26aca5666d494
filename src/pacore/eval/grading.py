"""Choosing the grader of an evaluation: the one named, or the one the data calls for.

The runner uses a grader as it is (`graders.base.Grader`: `grade_many`, `extract`,
`same`); samples become grader input with `Sample.grade_input()`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pacore.errors import ConfigError
from pacore.eval.datasets import Sample
from pacore.eval.graders import Grader, get_grader


def grader_for(
    name: str | None, samples: Sequence[Sample], *, unsafe_sandbox: bool = False
) -> Grader:
    """The named grader, or the one the data calls for: `code` when records carry tests.

    The code grader is checked before anything is generated: without namespace isolation
    it refuses to run model code unless `unsafe_sandbox` (`--unsafe-sandbox`).
    """
    if name is None:
        name = "code" if any(s.is_code for s in samples) else "math"
    if name != "code":
        return get_grader(name)
    from pacore.eval.graders.code_grader import CodeGrader

    grader = CodeGrader(unsafe_sandbox=unsafe_sandbox)
    try:
        if not any(s.is_code for s in samples):
            raise ConfigError("the code grader needs records with 'tests'")
        grader.check_isolation()
    except BaseException:
        grader.close()
        raise
    return grader
