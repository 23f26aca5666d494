"""Rewards: the shared graders (`pacore.graders`) as terminal rewards in [0, 1].

    with RewardModel(unsafe_sandbox=False) as model:
        model.reward(completion, ground_truth, kind="math")    # 1.0 or 0.0
        model.reward(completion, tests, kind="code")           # pass rate: the soft reward
        model.rewards([(completion, ground_truth), ...], kind="math")

- math (and `exact`, `numeric`): 1 or 0 by the grader's equivalence of the compacted
  final answer (`pacore.graders.math_grader`: math-verify in a worker pool);
- code: the fraction of tests passed in the sandbox (`code_grader`), the paper's
  soft reward; `ground_truth` is the tests in the eval dataset format (a list of
  `{"input", "output"}` cases, a `check(candidate)` source, or a record with
  `tests`, `entry_point`, `prompt`, `time_limit_s`), or that as JSON text.

The completion is compacted first (the text after the last `</think>`), and a
conclusion longer than `max_chars` keeps only its last `max_chars` characters (the
final answer is at the end; a 10 MB string must not cost seconds of extraction).
Whatever the model wrote, a reward never raises and never hangs: the math pool has
per-item timeouts and kills stuck workers, each program runs under the sandbox's
wall-clock and CPU limits, and any error grading one item is a reward of 0. An
ungradable item (a gold that does not parse) is 0 too; the curriculum drops them.
A grader that cannot run at all is never a silent 0: configuration errors (an
unknown kind, a missing extra such as math-verify, a machine without namespace
isolation when `unsafe_sandbox` is off, a grader that fails its self-test) raise
`ConfigError` with a one-line reason from `RewardModel.check` and from the first
reward call, so an RL run stops at its first step instead of training on zeros.
The self-test (`SELF_TESTS`) grades a known right answer once per kind and process.

`math_reward`, `code_reward` and `reward` are the plain functions RL engines call
(verl's `compute_score`, TRL's reward functions), once per completion, from worker
threads. Starting a math-verify pool or a sandbox per call would cost more than the
grading, so they delegate to one lazily created `RewardModel` per process. That one
default instance is the only module-level state in pacore; it exists because the
engines call plain functions with no place to hold a grader. It is created on first
use under a lock and closed by `close_default_model` (also at exit); code that can
hold an object should build its own `RewardModel` instead. The default honours
`PACORE_UNSAFE_SANDBOX=1` (set it only where namespaces are missing and the code is
trusted enough to run under the fallback sandbox).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self

from pacore.core.compaction import conclusion
from pacore.errors import ConfigError
from pacore.graders import GRADER_NAMES, Grade, GradeInput, Grader, get_grader, grader_name
from pacore.io.jsonl import loads

REWARD_KINDS = GRADER_NAMES
"""The built-in kinds a reward may be computed for (plugins: `pacore.graders.GRADERS`)."""
MAX_CHARS = 20_000
"""Longest conclusion graded; a longer one keeps its last MAX_CHARS characters.

The final answer and the last program are at the end. The bound is also a time bound:
the shared extraction rules are quadratic on some inputs (20,000 characters of
unclosed `\\boxed{` cost ~2 s, 70,000 cost 23 s), so the tail is what keeps a hostile
completion from stalling a training step."""
SELF_TESTS: dict[str, tuple[str, str]] = {"math": ("The answer is \\boxed{42}.", "42")}
"""A right (completion, gold) per kind, graded once before the first reward: a grader
whose worker cannot import its library (math-verify, its ANTLR runtime) grades every
answer as crashed, which would otherwise read as a reward of 0."""


def answer_text(ground_truth: Any) -> str | None:
    """The gold answer of a math ground truth: a string or number, a list of them
    (joined by `, `), or a record with an `answer`; None when there is none."""
    if isinstance(ground_truth, Mapping):
        ground_truth = ground_truth.get("answer", ground_truth.get("ground_truth"))
    if ground_truth is None or isinstance(ground_truth, Mapping):
        return None
    if isinstance(ground_truth, bool | int | float | str):
        text = str(ground_truth).strip()
        return text or None
    if (
        isinstance(ground_truth, list | tuple)
        and ground_truth
        and all(isinstance(v, int | float | str) for v in ground_truth)
    ):
        return ", ".join(str(v) for v in ground_truth)
    return None


def code_input(ground_truth: Any) -> GradeInput:
    """The grader input of a code ground truth (see the module docstring)."""
    if isinstance(ground_truth, str) and ground_truth.lstrip().startswith(("[", "{")):
        # a check() source that happens to start with a bracket stays a source
        with contextlib.suppress(ValueError):  # nested too deeply included
            ground_truth = loads(ground_truth, strict=False)
    if isinstance(ground_truth, Mapping):
        return GradeInput.from_record(ground_truth)
    if isinstance(ground_truth, str | list | tuple):
        return GradeInput(
            tests=list(ground_truth) if isinstance(ground_truth, tuple) else ground_truth
        )
    return GradeInput()


def has_tests(ground_truth: Any) -> bool:
    """Whether a ground truth is code tests: a list of `{"input", "output"}` cases or a
    record with `tests`, or either as JSON text. What `grader_name(tests=...)` is told
    about pool data, so export, filter and the verl reward decide code or math alike."""
    if isinstance(ground_truth, str) and ground_truth.lstrip().startswith(("[", "{")):
        with contextlib.suppress(ValueError):  # nested too deeply included
            ground_truth = loads(ground_truth, strict=False)
    if isinstance(ground_truth, Mapping):
        return "tests" in ground_truth
    return (
        isinstance(ground_truth, list)
        and bool(ground_truth)
        and all(isinstance(case, Mapping) for case in ground_truth)
    )


def reward_kind(ground_truth: Any, kind: str | None = None) -> str:
    """The reward kind of a problem: `kind` when given, else code for tests, math
    otherwise (what the export, the verl reward and the TRL reward all decide)."""
    return grader_name(kind, tests=kind is None and has_tests(ground_truth))


def gold_text(ground_truth: Any, kind: str) -> str | None:
    """A problem's ground truth as a trainer's text column holds it: for math its gold
    answer (`answer_text`: a record's `answer`, a list joined), for code its tests as
    JSON; None when a math problem has no gold answer (it cannot be rewarded: JSON's
    `null` would reward the answer "null")."""
    if kind == "math" or (kind != "code" and not has_tests(ground_truth)):
        return answer_text(ground_truth)
    if isinstance(ground_truth, str):
        return ground_truth
    return json.dumps(ground_truth, ensure_ascii=False)


def check_golds(records: Iterable[Any], kind: str | None) -> None:
    """Refuse problems whose reward could not be right: a math problem with no gold
    answer (`gold_text` None), naming how many and the first. The one check every
    trainer's data goes through (the TRL rows, the verl export, a problem at a time)."""
    missing = [
        r.id
        for r in records
        if gold_text(r.ground_truth, reward_kind(r.ground_truth, kind)) is None
    ]
    if missing:
        raise ConfigError(
            f"{len(missing)} problem(s) have no gold answer to reward (first: {missing[0]!r}); "
            "drop them from the pool (`pacore train filter --stage 1` does)"
        )


def grade_input(ground_truth: Any, kind: str) -> GradeInput:
    """What the `kind` grader needs besides the completion."""
    if kind == "code":
        return code_input(ground_truth)
    return GradeInput(answer=answer_text(ground_truth))


class RewardModel:
    """The graders behind the rewards, created on first use and reused; close when done.

    `unsafe_sandbox` lets the code grader run under the fallback sandbox where the
    machine has no namespace isolation; `grader_options` go to `get_grader` per kind
    (e.g. `{"math": {"check": MathCheck(workers=2)}}`).
    """

    def __init__(
        self,
        *,
        unsafe_sandbox: bool = False,
        max_chars: int = MAX_CHARS,
        grader_options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """A model with no grader started yet (see the class docstring)."""
        self.unsafe_sandbox = unsafe_sandbox
        self.max_chars = max_chars
        self.grader_options = dict(grader_options or {})
        self.errors = 0
        """Items whose grading raised (each scored 0)."""
        self._graders: dict[str, Grader] = {}
        self._checked: set[str] = set()
        self._lock = threading.Lock()

    def grader(self, kind: str) -> Grader:
        """The grader of `kind`, created once; raises `ConfigError` for a bad kind or setup."""
        name = kind.strip().lower()
        with self._lock:
            found = self._graders.get(name)
            if found is None:
                options = dict(self.grader_options.get(name, {}))
                if name == "code":
                    options.setdefault("unsafe_sandbox", self.unsafe_sandbox)
                found = get_grader(name, **options)
                self._graders[name] = found
            return found

    def check(self, kind: str) -> None:
        """Raise `ConfigError` now if rewards of `kind` cannot be computed here."""
        grader = self.grader(kind)
        check_isolation = getattr(grader, "check_isolation", None)
        if check_isolation is not None:
            check_isolation()
        name = kind.strip().lower()
        if name in SELF_TESTS and name not in self._checked:
            completion, gold = SELF_TESTS[name]
            grade = grader.grade(self.prepare(completion), grade_input(gold, name))
            if grade.correct is not True:
                raise ConfigError(
                    f"the {name} grader cannot run here: its self-test graded a right "
                    f"answer as {grade.reason or 'wrong'!r} (check math-verify and its ANTLR "
                    "runtime: pip install 'pacore[eval]')"
                )
            self._checked.add(name)

    def prepare(self, completion: str) -> str:
        """The compacted completion the grader sees: the conclusion, its tail if huge."""
        if not isinstance(completion, str):  # engines may hand over None or bytes
            return ""  # type: ignore[unreachable]
        text = conclusion(completion)
        return text[-self.max_chars :] if len(text) > self.max_chars else text

    def grades(self, items: Sequence[tuple[str, Any]], *, kind: str) -> list[Grade]:
        """The grades of (completion, ground truth) pairs; a failure grades 0, never raises.

        The grader and the kind are checked first (`ConfigError`), as in `check`.
        """
        self.check(kind)
        grader = self.grader(kind)
        name = kind.strip().lower()
        batch = [(self.prepare(c), grade_input(t, name)) for c, t in items]
        try:
            return grader.grade_many(batch)
        except Exception:  # one bad item must not cost the batch: grade them one by one
            return [self._grade_one(grader, text, sample) for text, sample in batch]

    def _grade_one(self, grader: Grader, text: str, sample: GradeInput) -> Grade:
        try:
            return grader.grade(text, sample)
        except Exception as exc:
            self.errors += 1
            return Grade.ungradable(f"grader error: {type(exc).__name__}")

    def rewards(self, items: Sequence[tuple[str, Any]], *, kind: str) -> list[float]:
        """Rewards in [0, 1] for (completion, ground truth) pairs; never raises on model
        output. A grader that cannot run (`check`) raises `ConfigError`: never a silent 0."""
        try:
            grades = self.grades(items, kind=kind)
        except ConfigError:
            raise
        except Exception:
            self.errors += len(items)
            return [0.0] * len(items)
        return [_clamp(g.score) for g in grades]

    def reward(self, completion: str, ground_truth: Any, *, kind: str) -> float:
        """The reward of one completion, in [0, 1]; `ConfigError` as in `rewards`."""
        return self.rewards([(completion, ground_truth)], kind=kind)[0]

    def close(self) -> None:
        """Close every grader started (pools, sandboxes)."""
        with self._lock:
            graders, self._graders = list(self._graders.values()), {}
        for grader in graders:
            grader.close()

    def __enter__(self) -> Self:
        """The model itself, closed on leaving the block."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the graders."""
        self.close()


def _clamp(score: float) -> float:
    if score != score:  # NaN
        return 0.0
    return min(1.0, max(0.0, float(score)))


class _Default:
    """The per-process default `RewardModel`, created lazily (see the module docstring)."""

    lock = threading.Lock()
    model: RewardModel | None = None


def default_model() -> RewardModel:
    """The process's default `RewardModel`, created on first use."""
    with _Default.lock:
        if _Default.model is None:
            unsafe = os.environ.get("PACORE_UNSAFE_SANDBOX", "") in ("1", "true", "yes")
            _Default.model = RewardModel(unsafe_sandbox=unsafe)
            atexit.register(close_default_model)
        return _Default.model


def close_default_model() -> None:
    """Close the default `RewardModel` (a later call creates a new one)."""
    with _Default.lock:
        model, _Default.model = _Default.model, None
    if model is not None:
        model.close()


def reward(completion: str, ground_truth: Any, *, kind: str) -> float:
    """The reward of one completion for `kind` (a grader name), in [0, 1]; raises only
    `ConfigError`, when the grader cannot run (see `RewardModel.rewards`)."""
    return default_model().reward(completion, ground_truth, kind=kind)


def math_reward(completion: str, ground_truth: Any) -> float:
    """1.0 when the compacted final answer equals the ground truth, else 0.0; see `reward`."""
    return reward(completion, ground_truth, kind="math")


def code_reward(completion: str, ground_truth: Any) -> float:
    """The fraction of the ground truth's tests the completion's program passes; see `reward`."""
    return reward(completion, ground_truth, kind="code")
