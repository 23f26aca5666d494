"""A command's process collects cyclic garbage less often (`collect_less`), keeps a
threshold set higher or collection turned off, and still collects every cycle."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from pacore.cli import GC_FIRST_GENERATION, collect_less, main


@pytest.fixture
def saved_threshold() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    try:
        yield before
    finally:
        gc.set_threshold(*before)


@pytest.mark.parametrize(
    ("first", "expected"),
    [(700, GC_FIRST_GENERATION), (1, GC_FIRST_GENERATION), (50_000, 50_000), (0, 0)],
)
def test_first_threshold_is_raised_only_from_below(
    saved_threshold: tuple[int, int, int], first: int, expected: int
) -> None:
    gc.set_threshold(first, 7, 9)
    collect_less()
    assert gc.get_threshold() == (expected, 7, 9)


def test_a_command_sets_it_before_parsing(saved_threshold: tuple[int, int, int]) -> None:
    gc.set_threshold(700, 10, 10)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert gc.get_threshold() == (GC_FIRST_GENERATION, 10, 10)


def test_cycles_are_still_collected() -> None:
    """With the raised threshold and no explicit `gc.collect`, a cycle made among many
    allocations is freed by the automatic collector."""
    code = textwrap.dedent(
        """
        import gc, weakref
        from pacore.cli import collect_less
        collect_less()
        class Node:
            pass
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        junk = [[i] for i in range(200_000)]  # allocations enough for several collections
        print("freed" if gone() is None else "alive")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "freed"
