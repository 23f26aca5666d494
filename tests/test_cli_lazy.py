"""Subcommands import their modules only when run: `pacore run` loads no eval, train,
serve or view code, and `pacore --help` lists every command from the static table."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

import pytest

from pacore.cli import COMMANDS, build_parser

NOT_FOR_RUN = ("pacore.train", "pacore.eval", "pacore.serve", "pacore.view", "pyarrow", "starlette")


def _loaded_after(argv: list[str]) -> list[str]:
    """The modules of `NOT_FOR_RUN` a fresh interpreter holds after `pacore.cli.main(argv)`."""
    code = textwrap.dedent(
        f"""
        import sys
        from pacore.cli import main
        try:
            main({argv!r})
        except SystemExit:
            pass
        print("loaded:", *(m for m in {NOT_FOR_RUN!r} if m in sys.modules), file=sys.stderr)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    line = done.stderr.strip().splitlines()[-1].split()
    assert line[0] == "loaded:"
    return line[1:]


@pytest.mark.parametrize("argv", [["run", "--help"], ["--help"], ["run"]])
def test_run_imports_no_other_command(argv: list[str]) -> None:
    assert _loaded_after(argv) == []


def test_help_lists_every_command_as_the_full_parser_does() -> None:
    assert build_parser(["--help"]).format_help() == build_parser().format_help()


def test_the_table_says_what_each_module_says() -> None:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    shown = {action.dest: action.help for action in sub._choices_actions}
    assert shown == {name: command.help for name, command in COMMANDS.items()}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_parses_with_only_its_module(name: str) -> None:
    parser = build_parser([name, "--help"])
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args([name, "--help"])
    assert exit_.value.code == 0
