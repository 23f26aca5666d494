"""Registries of graders, methods and backends: built-ins first, then entry points.

A fake distribution is installed for real (a `.dist-info` folder on `sys.path`, read
by `importlib.metadata` as any installed package), so names, loading and errors go
through the same code a plugin package would.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from pacore.backends import BACKENDS, make_backend
from pacore.config import BackendConfig
from pacore.errors import ConfigError
from pacore.eval.methods import METHOD_FORMS, PacoreMethod, parse_method
from pacore.graders import GRADERS, GradeInput, get_grader, grader_for, grader_name
from pacore.registry import Registry

PLUGIN = "pacore_fake_plugin"
PLUGIN_SOURCE = """
from pacore.eval.methods import MethodForm, PacoreMethod
from pacore.graders.base import Grade, GraderBase

class VibesGrader(GraderBase):
    name = "vibes"

    def __init__(self, **options):
        self.options = options

    def grade(self, prediction, sample):
        return Grade.decided(prediction.strip() == "good", prediction)

def _twice(name, arg, max_width):
    return PacoreMethod(name, (int(arg), int(arg)), family="twice")

TWICE = MethodForm("twice", "twice:<K>", _twice)
NUMBER = 42

class FakeBackend:
    def __init__(self, config, concurrency):
        self.config, self.concurrency = config, concurrency

def make_fake(config, concurrency):
    return FakeBackend(config, concurrency)
"""
ENTRY_POINTS = """
[pacore.graders]
vibes = pacore_fake_plugin:VibesGrader
broken = pacore_fake_plugin_gone:Nothing
notagrader = pacore_fake_plugin:NUMBER
math = pacore_fake_plugin:VibesGrader

[pacore.methods]
twice = pacore_fake_plugin:TWICE
odd = pacore_fake_plugin:NUMBER

[pacore.backends]
fake = pacore_fake_plugin:make_fake
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package installed as pip would: its module and its `.dist-info` on `sys.path`."""
    (tmp_path / f"{PLUGIN}.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    info = tmp_path / f"{PLUGIN}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pacore-fake-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop(PLUGIN, None)


def _no_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**_: Any) -> Any:
        raise AssertionError("package metadata was read for a built-in name")

    monkeypatch.setattr(metadata, "entry_points", refuse)


# ------------------------------------------------------------------ built-ins


def test_built_in_names_never_read_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_metadata(monkeypatch)
    with get_grader(" Exact ") as grader:
        assert grader.grade("\\boxed{4}", GradeInput(answer="4")).correct is True
    assert grader_name("NUMERIC", tests=False) == "numeric"
    assert grader_name(None, tests=True) == "code"
    assert grader_name(None, tests=False) == "math"
    assert parse_method("pacore:low").family == "pacore"
    backend = make_backend(BackendConfig(backend=("http://127.0.0.1:9/v1",)))
    assert type(backend).__name__ == "OpenAIBackend"


def test_registries_list_their_built_ins_in_order() -> None:
    assert tuple(GRADERS.builtins) == ("code", "exact", "math", "numeric")
    assert tuple(METHOD_FORMS.builtins) == ("pacore", "sc", "seq", "nomp", "single")
    assert tuple(BACKENDS.builtins) == ("openai", "embedded")
    assert (GRADERS.group, METHOD_FORMS.group, BACKENDS.group) == (
        "pacore.graders",
        "pacore.methods",
        "pacore.backends",
    )


def test_built_ins_are_read_only() -> None:
    with pytest.raises(TypeError):
        GRADERS.builtins["mine"] = GRADERS.builtins["math"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: get_grader("vibes"),
            "unknown grader 'vibes'; valid graders: code, exact, math, numeric",
        ),
        (lambda: grader_name("vibes", tests=False), "unknown grader 'vibes'; valid graders: code,"),
        (lambda: parse_method("magic:3"), "unknown method 'magic:3'; use pacore:"),
        (
            lambda: make_backend(BackendConfig(), name="grpc"),
            "unknown backend 'grpc'; valid backends: openai, embedded",
        ),
    ],
)
def test_an_unknown_name_is_one_line_listing_the_known(call: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        call()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- entry points


def test_a_fake_distribution_through_a_patched_entry_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []

    def entry_points(*, group: str) -> list[metadata.EntryPoint]:
        asked.append(group)
        value = "pacore.graders.simple:ExactGrader"
        return [metadata.EntryPoint("same", value, group)] if group == "pacore.graders" else []

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    with get_grader("same") as grader:
        assert type(grader).__name__ == "ExactGrader"
    assert asked == ["pacore.graders"]
    assert GRADERS.names() == ("code", "exact", "math", "numeric", "same")
    assert "same" in GRADERS
    assert "other" not in GRADERS
    assert 3 not in GRADERS


def test_a_plugin_grader_is_found_loaded_and_chosen(plugin: Path) -> None:
    assert "vibes" in GRADERS.names()
    assert grader_name("Vibes", tests=True) == "vibes"  # a name given wins over the data
    with grader_for("vibes", tests=False) as grader:
        assert grader.grade(" good ", GradeInput(answer="x")).correct is True
        assert grader.grade("bad", GradeInput(answer="x")).correct is False
    with pytest.raises(ConfigError, match=r"unknown grader 'nope'; valid graders: .*, vibes$"):
        grader_name("nope", tests=False)


def test_a_built_in_cannot_be_replaced_by_a_plugin(plugin: Path) -> None:
    assert GRADERS.names().count("math") == 1
    assert GRADERS.get("math") is GRADERS.builtins["math"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("broken", r"^grader 'broken' \(pacore_fake_plugin_gone:Nothing\) cannot be loaded: "),
        ("notagrader", r"^grader 'notagrader' \(pacore_fake_plugin:NUMBER\) is not a grader: int$"),
    ],
)
def test_a_bad_entry_point_is_one_line(plugin: Path, name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        grader_name(name, tests=False)
    assert "\n" not in str(caught.value)


def test_a_plugin_method_parses_like_a_built_in(plugin: Path) -> None:
    method = parse_method("twice:3")
    assert isinstance(method, PacoreMethod)
    assert (method.family, method.widths) == ("twice", (3, 3))
    with pytest.raises(ConfigError, match="is not a method: int"):
        parse_method("odd:1")
    with pytest.raises(ConfigError, match=r"unknown method 'magic'; use .* or twice$"):
        parse_method("magic")


def test_a_plugin_backend_is_built_by_name(plugin: Path) -> None:
    config = BackendConfig()
    backend: Any = make_backend(config, concurrency=3, name="fake")
    assert type(backend).__name__ == "FakeBackend"
    assert (backend.config, backend.concurrency) == (config, 3)
    assert BACKENDS.plugin_names() == ("fake",)


def test_one_name_from_two_distributions_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [
        metadata.EntryPoint("twin", "a:Grader", "pacore.graders"),
        metadata.EntryPoint("twin", "b:Grader", "pacore.graders"),
        metadata.EntryPoint("twin", "a:Grader", "pacore.graders"),  # the same one seen twice
    ]
    monkeypatch.setattr(metadata, "entry_points", lambda *, group: points)
    with pytest.raises(
        ConfigError, match=r"^grader 'twin' is provided twice: a:Grader and b:Grader$"
    ):
        GRADERS.get("twin")


def test_a_registry_checks_what_it_loads() -> None:
    numbers: Registry[int] = Registry(
        "number", "pacore.tests.none", {"one": 1}, accepts=lambda x: isinstance(x, int)
    )
    assert numbers.get("one") == 1
    assert numbers.names() == ("one",)
    with pytest.raises(ConfigError, match=r"^unknown number 'two'; valid numbers: one$"):
        numbers.get("two")


def _good(messages: Any, index: int, body: Any) -> str:
    return "<think>thinking</think>good"


def test_pacore_eval_runs_a_plugin_method_with_a_plugin_grader(
    plugin: Path, tmp_path: Path
) -> None:
    from pacore.cli import main
    from tests.fake_server import FakeConfig, run_in_thread

    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "p0", "question": "How is it?", "answer": "good"}\n')
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=_good, record_bodies=False)) as srv:
        argv = ["eval", "--dataset", str(data), "--out", str(out), "--backend", srv.url]
        argv += ["--method", "twice:2", "--grader", "Vibes", "--runs", "2", "--pool", "4"]
        assert main([*argv, "--quiet", "--no-plots"]) == 0
    summary = json.loads((out / "summary.json").read_text())["methods"]
    assert summary["twice:2"]["accuracy"] == 1.0
