"""The `pacore` entry point: Ctrl-C while pacore's modules import ends quietly."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from types import ModuleType

import pytest

import pacore_cli


class InterruptedImport(importlib.abc.MetaPathFinder):
    """A finder that raises KeyboardInterrupt for one module, as Ctrl-C mid-import would."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if fullname == "pacore.cli":
            raise KeyboardInterrupt
        return None


def test_ctrl_c_during_the_imports_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m == "pacore.cli" or m.startswith("pacore.cli.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [InterruptedImport(), *sys.meta_path])
    assert pacore_cli.main() == 130
    assert capsys.readouterr().err == "pacore: interrupted\n"


def test_the_entry_point_runs_the_command_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["pacore", "run"])
    assert pacore_cli.main() == 2
    assert "give a question" in capsys.readouterr().err
