"""The two-stage curriculum: which problems are worth training synthesis on.

Stage 1 (naive aggregation fails): every pooled response is graded, and a problem is
kept when `0 < mean accuracy < t` (over the whole pool: a response the pool dropped
as truncated counts as wrong) (the paper: t = 9/24 for math, 15/24 for code),
after quality filters that drop problems whose gold the grader cannot parse,
multi-answer items (a list of answers, several boxes, "or"/"and"/";" between
answers) and duplicates (the question compared after normalisation: case, spacing
and punctuation ignored; the first copy that every other check keeps is kept, and
a later one counts as a duplicate).

Stage 2 (synthesis is neither always nor never right): synthesis episodes are
sampled from a stage-1 checkpoint and graded; a problem is kept when
`0 < synthesis accuracy < 1`.

Each stage reports why every problem went, per source, like the paper's Table 7:
`Counts.to_json()` and `Counts.to_markdown()`, written as `<out>.counts.json` and
`<out>.counts.md`. A problem's source is its id up to the last `/` (`arith/add` for
`arith/add/0-17`), or `-` for ids without one. Everything here is plain data in and
out; grading and sampling happen in the callers.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from pacore.errors import ConfigError
from pacore.graders import Grade
from pacore.train.records import PoolRecord
from pacore.train.rewards import answer_text

DEFAULT_THRESHOLDS = {"math": Fraction(9, 24), "code": Fraction(15, 24)}
"""Stage 1's upper bound t per kind of problem (the paper's); other graders use math's."""

KEPT = "kept"
REASONS_STAGE1 = (
    "no responses",
    "gold unparsable",
    "multi-answer",
    "duplicate",
    "ungradable",
    "all wrong",
    "too easy",
)
REASONS_STAGE2 = ("no responses", "ungradable", "never right", "always right")

_MULTI = re.compile(r"\bor\b|\band\b|;", re.IGNORECASE)
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def parse_threshold(text: str) -> Fraction:
    """`9/24`, `0.375` or `3/8` as an exact fraction in (0, 1]."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"--threshold expects a fraction such as 9/24, got {text!r}") from None
    if not 0 < value <= 1:
        raise ConfigError(f"--threshold must be in (0, 1], got {text}")
    return value


def default_threshold(grader: str) -> Fraction:
    """Stage 1's t for a grader: 15/24 for code, 9/24 otherwise."""
    return DEFAULT_THRESHOLDS.get(grader, DEFAULT_THRESHOLDS["math"])


def source_of(problem_id: str) -> str:
    """The source a problem is counted under: its id up to the last `/`, else `-`."""
    head, sep, _ = problem_id.rpartition("/")
    return head if sep and head else "-"


def normalized_question(record: PoolRecord) -> str:
    """The question compared for duplicates: words only, case folded."""
    return " ".join(re.findall(r"\w+", record.question.casefold()))


def is_multi_answer(ground_truth: Any) -> bool:
    """Whether a math gold holds several answers (see the module docstring)."""
    if isinstance(ground_truth, dict):
        ground_truth = ground_truth.get("answer", ground_truth.get("ground_truth"))
    if isinstance(ground_truth, list | tuple):
        return len(ground_truth) > 1
    text = answer_text(ground_truth)
    if text is None:
        return False
    return len(_BOX.findall(text)) > 1 or _MULTI.search(text) is not None


def accuracy(grades: Sequence[Grade], missing: int = 0) -> Fraction | None:
    """Mean score of the gradable grades (exact), `missing` more responses counted as
    wrong (those the pool dropped as truncated); None when none is gradable."""
    gradable = [g for g in grades if g.correct is not None]
    if not gradable:
        return None
    total = sum((Fraction(g.score).limit_denominator(10**6) for g in gradable), Fraction(0))
    return total / (len(gradable) + max(0, missing))


def gold_unparsable(grades: Sequence[Grade]) -> bool:
    """Whether the grader could not read the gold answer (every grade says so)."""
    return bool(grades) and all(
        g.correct is None and g.reason.startswith(("gold unparsable", "no gold")) for g in grades
    )


def stage1_verdict(
    record: PoolRecord,
    grades: Sequence[Grade],
    threshold: Fraction,
    *,
    check_answers: bool,
    pool_size: int | None = None,
) -> str:
    """`kept` or why the problem is dropped, from the grades of its responses.

    The accuracy is over the pool size, as in the paper: the record's `sampled`, else
    `pool_size`, else its responses; the responses missing from it (dropped as
    truncated or empty) count as wrong. Duplicates are judged by the caller
    (`Filter`), which sees every problem.
    """
    if not record.responses:
        return "no responses"
    if check_answers and (record.ground_truth is None or gold_unparsable(grades)):
        return "gold unparsable"
    if check_answers and is_multi_answer(record.ground_truth):
        return "multi-answer"
    size = record.sampled if record.sampled is not None else pool_size
    mean = accuracy(grades, missing=(size or 0) - len(record.responses))
    if mean is None:
        return "ungradable"
    if mean <= 0:
        return "all wrong"
    if mean >= threshold:
        return "too easy"
    return KEPT


def stage2_verdict(grades: Sequence[Grade]) -> str:
    """`kept` when `0 < synthesis accuracy < 1`, else why not."""
    if not grades:
        return "no responses"
    mean = accuracy(grades)
    if mean is None:
        return "ungradable"
    if mean <= 0:
        return "never right"
    if mean >= 1:
        return "always right"
    return KEPT


@dataclass
class Counts:
    """Problems per source and outcome for one stage (the paper's Table 7)."""

    stage: int
    settings: dict[str, Any] = field(default_factory=dict)
    by_source: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def reasons(self) -> tuple[str, ...]:
        """The columns of drop reasons, in order."""
        return REASONS_STAGE1 if self.stage == 1 else REASONS_STAGE2

    def add(self, problem_id: str, verdict: str) -> None:
        """Count one problem's verdict under its source."""
        self.by_source.setdefault(source_of(problem_id), Counter())[verdict] += 1

    def total(self) -> Counter[str]:
        """The verdicts of every source together."""
        out: Counter[str] = Counter()
        for counts in self.by_source.values():
            out.update(counts)
        return out

    def _row(self, counts: Counter[str]) -> dict[str, int]:
        row = {"input": sum(counts.values())}
        row.update({reason: counts[reason] for reason in self.reasons})
        row[KEPT] = counts[KEPT]
        return row

    def to_json(self) -> dict[str, Any]:
        """`{stage, settings, sources: {source: row}, total: row}`; a row counts the input,
        each drop reason and the kept problems."""
        return {
            "stage": self.stage,
            "settings": self.settings,
            "sources": {s: self._row(c) for s, c in sorted(self.by_source.items())},
            "total": self._row(self.total()),
        }

    def to_markdown(self) -> str:
        """The same table in markdown, one row per source and a total."""
        columns = ["input", *self.reasons, KEPT]
        settings = ", ".join(f"{k} {v}" for k, v in self.settings.items())
        lines = [
            f"# Curriculum stage {self.stage}",
            "",
            f"Settings: {settings}." if settings else "",
            "",
            "| source | " + " | ".join(columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        data = self.to_json()
        rows = [*data["sources"].items(), ("**total**", data["total"])]
        for source, row in rows:
            lines.append(f"| {source} | " + " | ".join(str(row[c]) for c in columns) + " |")
        return "\n".join(lines) + "\n"


@dataclass
class Filter:
    """Stage 1 over a stream of problems: duplicates seen so far, and the counts."""

    threshold: Fraction
    check_answers: bool = True
    """Quality filters on the gold answer (math-like graders; not code)."""
    pool_size: int | None = None
    """The accuracy's denominator for records that do not say (`stage1_verdict`)."""
    counts: Counts = field(default_factory=lambda: Counts(stage=1))
    _seen: set[str] = field(default_factory=set)

    def judge(self, record: PoolRecord, grades: Sequence[Grade]) -> str:
        """The verdict of one problem, counted; a repeated question is `duplicate`.

        Only a problem that every other check keeps claims its question: a copy
        dropped for its own reason (no gold, say) is counted under that reason and
        leaves the question to a later copy that passes, so no problem is lost.
        """
        verdict = stage1_verdict(
            record,
            grades,
            self.threshold,
            check_answers=self.check_answers,
            pool_size=self.pool_size,
        )
        if verdict == KEPT:
            key = normalized_question(record)
            if key in self._seen:
                verdict = "duplicate"
            self._seen.add(key)
        self.counts.add(record.id, verdict)
        return verdict
