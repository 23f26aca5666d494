"""The package as users meet it: the public names, a quick import, one version."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pacore
from pacore.types import Completion, Message, SamplingParams

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
HEAVY = ("aiohttp", "xllamacpp", "math_verify", "jinja2")


def test_every_public_name_resolves() -> None:
    for name in pacore.__all__:
        assert getattr(pacore, name) is not None, name
    assert sorted(pacore.__all__) == pacore.__all__


def test_import_pacore_loads_no_heavy_dependency() -> None:
    code = f"import json, sys, pacore; print(json.dumps([m for m in {HEAVY} if m in sys.modules]))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_backends_load_on_first_use() -> None:
    from pacore.backends import EmbeddedBackend, OpenAIBackend

    assert pacore.OpenAIBackend is OpenAIBackend
    assert pacore.EmbeddedBackend is EmbeddedBackend


def test_version_is_the_installed_distributions() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pacore", "--version"],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["pacore", importlib.metadata.version("pacore")]
    assert pacore.__version__ == importlib.metadata.version("pacore")


class _Echo:
    """A backend that answers every prompt with a boxed 42."""

    name = "echo"

    async def start(self) -> None:
        pass

    async def complete(
        self, messages: Sequence[Message], n: int, params: SamplingParams, **_: object
    ) -> list[Completion]:
        return [Completion(text=r"The answer is \boxed{42}.", finish_reason="stop")] * n

    async def aclose(self) -> None:
        pass


async def test_solve_runs_every_round() -> None:
    config = pacore.PacoreConfig(widths=(3,))
    result = await pacore.solve("What is 6 * 7?", _Echo(), config)
    assert result.status == "ok"
    assert result.widths == (3, 1)
    assert "42" in result.answer
