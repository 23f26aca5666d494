"""Model-written programs in the forms models write them, graded right.

Each case is a right program and the same program made wrong (`a - b`, a wrong return),
written the same way: the right one must pass and the wrong one fail. Before, a `~~~`
fence, a `py3` tag, a block in a list item, a byte order mark, a sample output after
the solution, `exit()` at the end, `from __future__ import annotations`, a prompt's
helper function, a `__main__` demo or a `Counter` result made a right program score 0,
and a right draft followed by a wrong final block scored 1.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest

from pacore.graders import GradeInput
from pacore.graders.code_grader import CodeGrader
from pacore.graders.extract import extract_program
from pacore.graders.sandbox import Limits

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")

ADD = GradeInput(
    tests=[
        {"input": "2\n1 2\n3 4\n", "output": "3\n7\n"},
        {"input": "1\n10 -5\n", "output": "5\n"},
    ]
)
RIGHT = (
    "t = int(input())\nfor _ in range(t):\n    a, b = map(int, input().split())\n    print(a + b)\n"
)
WRONG = RIGHT.replace("a + b", "a - b")


@pytest.fixture(scope="module")
def grader() -> Iterator[CodeGrader]:
    with CodeGrader(limits=Limits(wall_s=10.0), unsafe_sandbox=True, workers=4) as code_grader:
        assert isinstance(code_grader, CodeGrader)
        yield code_grader


def _indented(code: str, pad: str) -> str:
    return "".join(pad + line for line in code.splitlines(keepends=True))


STDIN_FORMS: list[Callable[[str], str]] = [
    lambda p: f"Solution:\n~~~python\n{p}~~~\n",
    lambda p: f"```py3\n{p}```\n",
    lambda p: f"```python3.11\n{p}```\n",
    lambda p: (
        f"1. Read the pairs.\n2. Print the sums:\n\n   ```python\n{_indented(p, '   ')}   ```\n"
    ),
    lambda p: f"> ```python\n{_indented(p, '> ')}> ```\n",
    lambda p: f"```python\n\ufeff{p}```\n",
    lambda p: f"\ufeff{p}",
    lambda p: f"```python\n{p}exit()\n```\n",
    lambda p: f"```python\n{p}quit(0)\n```\n",
    lambda p: f"```\n{p}```\nOutput for the sample:\n```\n3\n7\n```\n",
    lambda p: f"```python\n{p}```\nThe judge prints:\n```\nYES\n```\n",
    lambda p: f"Draft:\n```python\n{WRONG if p == RIGHT else RIGHT}```\nFinal:\n```\n{p}```\n",
    lambda p: (
        f"Draft:\n```python\n{WRONG if p == RIGHT else RIGHT}```\nFinal:\n~~~python\n{p}~~~\n"
    ),
]


def test_stdin_programs_in_the_forms_models_write(grader: CodeGrader) -> None:
    items = [(form(p), ADD) for form in STDIN_FORMS for p in (RIGHT, WRONG)]
    grades = grader.grade_many(items)
    scores = [g.score for g in grades]
    expected = [1.0, 0.0] * len(STDIN_FORMS)
    missed = [(i // 2, text[:60], g.reason) for i, ((text, _), g, want) in
              enumerate(zip(items, grades, expected, strict=True)) if g.score != want]  # fmt: skip
    assert missed == [], scores


PROMPT = (
    "from __future__ import annotations\n"
    "from typing import List\n\n\n"
    "def is_even(n: int) -> bool:\n"
    "    return n % 2 == 0\n\n\n"
    "def evens(xs: List[int]) -> List[int]:\n"
    '    """The even numbers of xs, in order."""\n'
)
EVENS = GradeInput(
    tests="def check(candidate):\n    assert candidate([1, 2, 3, 4]) == [2, 4]\n"
    "    assert candidate([]) == []\n",
    entry_point="evens",
    prompt=PROMPT,
)
FUNCTIONAL_FORMS: list[Callable[[str], str]] = [
    # the prompt's helper, used but not rewritten, and its `from __future__` import
    lambda body: (
        f"```python\nfrom __future__ import annotations\n\ndef evens(xs):\n    {body}\n```\n"
    ),
    lambda body: (
        f"```python\ndef evens(xs: List[int]) -> List[int]:\n    {body}\n```\n"
        "Usage:\n```python\nprint(evens([1, 2, 3, 4]))\n```\n"
    ),
    lambda body: (
        f"```python\ndef evens(xs):\n    {body}\n```\n```python\n>>> evens([2])\n[2]\n```\n"
    ),
    lambda body: (
        f"```python\ndef evens(xs):\n    {body}\n\n"
        "if __name__ == '__main__':\n    print(evens(list(map(int, input().split()))))\n```\n"
    ),
    lambda body: (
        f"```python\nimport unittest\n\ndef evens(xs):\n    {body}\n\n"
        "if __name__ == '__main__':\n    unittest.main()\n```\n"
    ),
]
RIGHT_BODY = "return [x for x in xs if is_even(x)]"
WRONG_BODY = "return [x for x in xs if not is_even(x)]"


def test_functional_solutions_in_the_forms_models_write(grader: CodeGrader) -> None:
    items = [(form(b), EVENS) for form in FUNCTIONAL_FORMS for b in (RIGHT_BODY, WRONG_BODY)]
    grades = grader.grade_many(items)
    expected = [1.0, 0.0] * len(FUNCTIONAL_FORMS)
    missed = [(i // 2, g.reason) for i, (g, want) in enumerate(zip(grades, expected, strict=True))
              if g.score != want]  # fmt: skip
    assert missed == []


def test_answers_that_compare_equal_cross_as_plain_data(grader: CodeGrader) -> None:
    """A `Counter`, a named tuple, a huge integer and an exception of the program's own
    class reach the check as what they compare equal to (their built-in base)."""
    tests = (
        "def check(candidate):\n"
        "    assert candidate('abca') == {'a': 2, 'b': 1, 'c': 1}\n"
        "    assert candidate(3) == 3 ** 10000\n"
        "    assert candidate((1, 2)) == (1, 2)\n"
        "    try:\n        candidate(None)\n"
        "    except ValueError:\n        pass\n"
        "    else:\n        raise AssertionError\n"
    )
    sample = GradeInput(tests=tests, entry_point="f", prompt="")
    program = (
        "import collections\n"
        "class Bad(ValueError):\n    pass\n"
        "Pair = collections.namedtuple('Pair', 'a b')\n"
        "def f(x):\n"
        "    if x is None:\n        raise Bad('no input')\n"
        "    if isinstance(x, str):\n        return collections.Counter(x)\n"
        "    if isinstance(x, tuple):\n        return Pair(*x)\n"
        "    return x ** {}\n"
    )
    right, wrong = grader.grade_many(
        [(program.format(10000), sample), (program.format(9999), sample)]
    )
    assert (right.score, right.reason) == (1.0, "passed")
    assert wrong.score == 0.0


def test_the_block_that_holds_the_program_is_chosen() -> None:
    solution = "def f(x):\n    return x\n"
    usage = "print(f(3))\n"
    text = f"```python\n{solution}```\nThen:\n```python\n{usage}```\n"
    assert extract_program(text, entry="f") == solution
    assert extract_program(text) == usage  # no entry known: the last tagged block
    stdin = f"```\n{RIGHT}```\n```\n3\n7\n```\n"
    assert extract_program(stdin, stdin=True) == RIGHT
    assert extract_program("no code here") is None
