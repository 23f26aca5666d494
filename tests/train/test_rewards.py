"""Rewards on hostile outputs: never raise, never hang, always in [0, 1]."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pacore.errors import ConfigError
from pacore.graders.math_grader import MathCheck
from pacore.graders.sandbox import Limits
from pacore.train import rewards
from pacore.train.rewards import RewardModel, answer_text, code_input

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")

CASES = [{"input": "1 2\n", "output": "3\n"}, {"input": "2 2\n", "output": "4\n"}]
SUM = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
BIG = 10_000_000


@pytest.fixture(scope="module")
def model() -> Iterator[RewardModel]:
    # unsafe_sandbox: these programs are ours, so a machine without namespaces runs them too
    options: dict[str, dict[str, Any]] = {
        "code": {"limits": Limits(wall_s=2.0), "workers": 2},
        "math": {"check": MathCheck(workers=1)},
    }
    with RewardModel(unsafe_sandbox=True, grader_options=options) as reward_model:
        yield reward_model


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("The answer is \\boxed{42}.", 1.0),
        ("<think>maybe \\boxed{41}</think>So \\boxed{42}", 1.0),  # compacted first
        ("<think>it is \\boxed{42}</think>I give up.", 0.0),  # the reasoning never counts
        ("no box, no number", 0.0),
        ("\\boxed{41} or \\boxed{42}", 0.0),  # several different boxes: not an answer
        ("\\boxed{42} \\boxed{42}", 1.0),
        ("\x00\xff}}{{\\boxed{", 0.0),
        ("", 0.0),
        ("x" * BIG + "\\boxed{42}", 1.0),
        ("\\boxed{42}" + "x" * BIG, 0.0),
        ("\\boxed{" * 100_000, 0.0),
    ],
)
def test_math_hostile_outputs(model: RewardModel, completion: str, expected: float) -> None:
    started = time.monotonic()
    assert model.reward(completion, "42", kind="math") == expected
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("truth", ["42", 42, {"answer": "42"}, ["42"]])
def test_math_ground_truth_shapes(model: RewardModel, truth: object) -> None:
    assert model.reward("\\boxed{42}", truth, kind="math") == 1.0


@pytest.mark.parametrize("truth", [None, "", {}, object(), [{"a": 1}], "\\frac{"])
def test_ungradable_gold_is_zero(model: RewardModel, truth: object) -> None:
    assert model.reward("\\boxed{42}", truth, kind="math") == 0.0


def test_non_string_completion(model: RewardModel) -> None:
    assert model.reward(None, "42", kind="math") == 0.0  # type: ignore[arg-type]
    assert model.prepare(b"\\boxed{42}") == ""  # type: ignore[arg-type]


def test_a_restated_arithmetic_question_earns_nothing(model: RewardModel) -> None:
    """math-verify evaluates `202 * 312` and accepts it for 63024; a policy trained on
    `pacore train arith` problems learned to restate the question within six steps. The
    `unevaluated arithmetic` rule makes the restatement wrong, boxed or in free text."""
    from pacore.train.arith import ArithSettings, problem

    symbols = {"add": ("+", "+"), "sub": ("-", "-"), "mul": ("*", "\\times")}
    pairs, expected = [], []
    for index in range(40):
        item = problem(ArithSettings(count=40, operations="add,sub,mul"), index)
        a, b = item["operands"]
        plain, latex = symbols[item["operation"]]
        for text in (
            f"The original problem is {a} {plain} {b}.",
            f"The answer is $\\boxed{{{a} {latex} {b}}}$.",
            f"So the answer is {item['answer']}.",
            f"\\boxed{{{item['answer']}}}",
        ):
            pairs.append((text, item["answer"]))
        expected += [0.0, 0.0, 1.0, 1.0]
    assert model.rewards(pairs, kind="math") == expected


def test_batch_rewards(model: RewardModel) -> None:
    got = model.rewards([("\\boxed{1}", "1"), ("\\boxed{2}", "3"), ("", "1")], kind="math")
    assert got == [1.0, 0.0, 0.0]


@linux
@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (SUM, 1.0),
        ("```python\nprint(3)\n```", 0.5),  # the soft reward: the pass rate
        ("```python\nwhile True:\n    pass\n```", 0.0),  # hangs: killed by the wall clock
        ("```python\nimport sys\nsys.exit(0)\n```", 0.0),  # exits early, prints nothing
        ("```python\nimport os\nos._exit(0)\n```", 0.0),
        ("```python\nraise SystemExit(3)\n```", 0.0),
        ("no code at all", 0.0),
        ("```python\n" + "x = 1\n" * 2_000_000 + "```", 0.0),
        ("<think>```python\nprint(3)\n```</think>" + SUM, 1.0),
    ],
)
def test_code_hostile_outputs(model: RewardModel, completion: str, expected: float) -> None:
    started = time.monotonic()
    assert model.reward(completion, CASES, kind="code") == expected
    assert time.monotonic() - started < 20


@linux
def test_code_ground_truth_shapes(model: RewardModel) -> None:
    import json

    assert model.reward(SUM, json.dumps(CASES), kind="code") == 1.0
    assert model.reward(SUM, {"tests": CASES, "time_limit_s": 1}, kind="code") == 1.0
    assert model.reward(SUM, tuple(CASES), kind="code") == 1.0
    check = "def check(candidate):\n    assert candidate(2) == 4\n"
    square = "```python\ndef square(x):\n    return x * x\n```"
    assert model.reward(square, {"tests": check, "entry_point": "square"}, kind="code") == 1.0
    assert model.reward(SUM, None, kind="code") == 0.0


def test_code_input_parsing() -> None:
    assert code_input("[not json").tests == "[not json"
    deep = "[" * 100_000 + "]" * 100_000  # past what Python's parser can nest: a source
    assert code_input(deep).tests == deep
    assert not rewards.has_tests(deep)
    assert code_input(CASES).tests == CASES
    assert code_input(3).tests is None
    assert answer_text(True) == "True"
    assert answer_text([1, 2]) == "1, 2"
    assert answer_text({"ground_truth": 5}) == "5"


def test_unknown_kind_is_a_config_error_never_a_zero_reward() -> None:
    with RewardModel() as reward_model:
        with pytest.raises(ConfigError, match="unknown grader"):
            reward_model.check("poetry")
        with pytest.raises(ConfigError, match="unknown grader"):
            reward_model.reward("x", "y", kind="poetry")


def test_a_missing_math_verify_fails_the_first_reward_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 19: without math-verify every reward was a silent 0.0, `\\boxed{42}` included."""
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "math_verify" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with RewardModel() as reward_model, pytest.raises(ConfigError, match="math-verify") as info:
        reward_model.reward("\\boxed{42}", "42", kind="math")
    assert "\n" not in str(info.value)


def test_a_grader_that_cannot_run_fails_its_self_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """A math-verify worker that cannot import grades everything as crashed: refused."""
    from pacore.graders import Grade

    with RewardModel(grader_options={"math": {"check": MathCheck(workers=1)}}) as reward_model:
        grader = reward_model.grader("math")

        def crashed(items: Any) -> list[Grade]:
            return [Grade.ungradable("grader crashed") for _ in items]

        monkeypatch.setattr(grader, "grade_many", crashed)
        with pytest.raises(ConfigError, match="self-test graded a right answer as 'grader crash"):
            reward_model.rewards([("\\boxed{1}", "1")], kind="math")


def test_a_grader_that_raises_scores_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    with RewardModel() as reward_model:
        grader = reward_model.grader("exact")

        def boom(*_: object) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(grader, "grade_many", boom)
        monkeypatch.setattr(grader, "grade", boom)
        assert reward_model.rewards([("a", "a"), ("b", "b")], kind="exact") == [0.0, 0.0]
        assert reward_model.errors == 2


def test_refuses_fallback_sandbox_without_permission() -> None:
    options = {"code": {"isolation": "fallback"}}
    with RewardModel(unsafe_sandbox=False, grader_options=options) as reward_model:
        with pytest.raises(ConfigError, match="no namespace isolation"):
            reward_model.check("code")
        with pytest.raises(ConfigError, match="no namespace isolation"):
            reward_model.reward(SUM, CASES, kind="code")


def test_plain_functions_share_one_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACORE_UNSAFE_SANDBOX", "1")
    rewards.close_default_model()
    try:
        assert rewards.math_reward("\\boxed{1/2}", "0.5") == 1.0
        first = rewards.default_model()
        assert first.unsafe_sandbox
        assert rewards.reward("\\boxed{x}", "x", kind="exact") == 1.0
        assert rewards.default_model() is first
        if sys.platform.startswith("linux"):
            assert rewards.code_reward(SUM, CASES) == 1.0
    finally:
        rewards.close_default_model()
    assert rewards.default_model() is not first
    rewards.close_default_model()


def test_clamp() -> None:
    assert rewards._clamp(float("nan")) == 0.0
    assert rewards._clamp(2.0) == 1.0
    assert rewards._clamp(-1.0) == 0.0


REVISED = (
    "<think>Count the pairs.</think>This gives $\\boxed{64}$. Hmm, actually that doesn't "
    "look right: one pair was counted twice. So the corrected result is $\\boxed{63}$."
)


@pytest.mark.parametrize(
    ("completion", "truth", "expected"),
    [
        (REVISED, "63", 1.0),  # self-correction is rewarded (issue 18)
        (REVISED, "64", 0.0),  # the earlier box never counts
        (REVISED.replace("{63}", "{62}").replace("{64}", "{63}"), "63", 0.0),  # right → wrong
        ("\\boxed{41} or \\boxed{42}", "42", 0.0),  # one statement, two values: no answer
    ],
)
def test_the_verl_reward_grades_revisions_by_the_math_grader(
    completion: str, truth: str, expected: float
) -> None:
    """verl's `compute_score` goes through the same math grader as evaluation, so the rule
    for several boxes holds for rewards too."""
    pytest.importorskip("math_verify")
    from pacore.train.verl import compute_score

    try:
        result: Any = compute_score("pacore/math", completion, truth)
        score = result["score"] if isinstance(result, dict) else result
        assert score == expected
    finally:
        rewards.close_default_model()
