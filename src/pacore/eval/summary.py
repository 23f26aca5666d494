"""`MethodSummary`: everything reported about one method on one dataset, as plain numbers.

The eval runner builds one per method (`runner.summarize`); `report` writes them to
`summary.json` and `report.md`, and `plots` draws them. It lives below both, so neither
imports the other for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pacore.eval.metrics import MarkerStats, OutcomeCounts, PassAt1, Rate


@dataclass(frozen=True)
class MethodSummary:
    """Everything reported about one method on one dataset, as plain numbers.

    Only `name`, `family`, `trajectories` and `dataset` are required; every metric the
    runner did not compute stays None and is reported as missing.
    """

    name: str
    """The method as the user wrote it: `pacore:low`, `pacore:32,4`, `sc:16`, `seq:4`."""
    family: str
    """`pacore`, `sc`, `seq`, `nomp` or `single`: methods of a family share a plot curve."""
    trajectories: int
    """Trajectories per problem: the x-axis of the ablation plots (N of `sc:N`, `seq:N`)."""
    dataset: str
    """The dataset's display name: a column of the report table."""
    pass_at_1: PassAt1 | None = None
    """Accuracy with its intervals; None when nothing could be graded."""
    mean_ttc_tokens: float | None = None
    """Mean effective TTC per problem (`metrics.mean_ttc`)."""
    max_context_tokens: int | None = None
    """The largest input plus output of any single call (`metrics.largest_context`)."""
    mean_prompt_tokens: float | None = None
    """Mean over results of the largest input of any single call (Figure 4's y-axis)."""
    max_prompt_tokens: int | None = None
    """The largest input of any single call over every result."""
    widths: tuple[int, ...] = ()
    """Widths of the rounds before the final width-1 synthesis, e.g. `(32, 4)` for
    `pacore:high`; empty when not applicable or unknown. The parallel-vs-sequential
    plot takes only `pacore` methods with at most one such round."""
    accuracy_per_round: tuple[Rate, ...] = ()
    emergent: Rate | None = None
    """Emergent correctness (`metrics.emergent_correctness`)."""
    cross_check: MarkerStats | None = None
    """Cross-checking markers of the final solutions (`metrics.cross_check_frequency`)."""
    solipsism: Rate | None = None
    """Final answers matching none of their references (`metrics.solipsism_rate`)."""
    outcomes: OutcomeCounts | None = None
    """Results by outcome, infrastructure failures apart (`metrics.count_outcomes`)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """More JSON-ready fields for this method's entry in `summary.json`."""

    @property
    def accuracy(self) -> float | None:
        """pass@1's mean, or None when nothing was graded."""
        return self.pass_at_1.mean if self.pass_at_1 else None

    @property
    def stderr(self) -> float | None:
        """pass@1's standard error, or None when nothing was graded."""
        return self.pass_at_1.stderr if self.pass_at_1 else None

    def to_dict(self) -> dict[str, Any]:
        """This method's entry in `summary.json` (accuracy as a fraction from 0 to 1)."""
        p = self.pass_at_1
        emergent = self.emergent
        solipsism = self.solipsism
        out: dict[str, Any] = {
            "family": self.family,
            "trajectories": self.trajectories,
            "widths": list(self.widths),
            "accuracy": p.mean if p else None,
            "stderr": p.stderr if p else None,
            "ci_low": p.ci_low if p else None,
            "ci_high": p.ci_high if p else None,
            "confidence": p.confidence if p else None,
            "n_problems": p.n_problems if p else None,
            "n_runs": p.n_runs if p else None,
            "mean_ttc_tokens": self.mean_ttc_tokens,
            "max_context_tokens": self.max_context_tokens,
            "mean_prompt_tokens": self.mean_prompt_tokens,
            "max_prompt_tokens": self.max_prompt_tokens,
            "accuracy_per_round": [r.to_dict() for r in self.accuracy_per_round],
            "emergent_correctness": emergent.value if emergent else None,
            "emergent_correctness_counts": (
                [emergent.numerator, emergent.denominator] if emergent else None
            ),
            "cross_check_per_solution": (
                self.cross_check.per_solution if self.cross_check else None
            ),
            "cross_check": self.cross_check.to_dict() if self.cross_check else None,
            "solipsism": solipsism.value if solipsism else None,
            "solipsism_counts": [solipsism.numerator, solipsism.denominator] if solipsism else None,
            "failures": self.outcomes.failed if self.outcomes else None,
            "outcomes": self.outcomes.to_dict() if self.outcomes else None,
        }
        out.update(self.extra)
        return out
