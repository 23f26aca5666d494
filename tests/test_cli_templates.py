"""`--template FILE` is checked before anything is spent, by every command that takes it.

A template must be a regular file of at most 1 MiB that uses `original_prompt` and
`ref_responses` (and nothing else). Each bad one is one line on stderr, exit 2, no
traceback, no file written, and the backend (an address nothing answers) untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pacore.cli import main

UNUSED_URL = "http://127.0.0.1:9/v1"
"""A backend that must never be contacted (the discard port: nothing answers there)."""


def text(content: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "t.j2"
        path.write_text(content, encoding="utf-8")
        return path

    return make


def fifo(folder: Path) -> Path:
    os.mkfifo(folder / "t.fifo")
    return folder / "t.fifo"


def sparse(folder: Path) -> Path:
    """A 3 GB file (sparse: it costs no disk) that starts like a good template."""
    path = folder / "big.j2"
    with path.open("wb") as fh:
        fh.write(b"{{ original_prompt }}{{ ref_responses }}")
        fh.truncate(3 << 30)
    return path


def over_the_limit(folder: Path) -> Path:
    return text("{{ original_prompt }}{{ ref_responses }}" + " " * (1 << 20))(folder)


BAD: dict[str, tuple[Callable[[Path], Path], str]] = {
    "no variables (/etc/passwd)": (text("root:x:0:0:root:/root:/bin/bash\n"), "never uses"),
    "no references": (text("Solve: {{ original_prompt }}"), "never uses ref_responses"),
    "no problem": (text("{{ ref_responses | join }}"), "never uses original_prompt"),
    "unknown variable": (
        text("{{ original_prompt }}{{ refs }}{{ ref_responses }}"),
        "unknown variable: 'refs'",
    ),
    "a device (/dev/zero)": (lambda _: Path("/dev/zero"), "not a regular file"),
    "a FIFO": (fifo, "not a regular file"),
    "a folder": (lambda folder: folder, "not a regular file"),
    "3 GB": (sparse, "larger than 1 MiB"),
    "just over 1 MiB": (over_the_limit, "larger than 1 MiB"),
    "missing": (lambda folder: folder / "nope.j2", "cannot read template"),
}


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def _argv(command: str, folder: Path, template: Path) -> list[str]:
    # Should a check be missing, the command fails fast rather than wait for the backend.
    common = ["--backend", UNUSED_URL, "--wait-ready", "0", "--retries", "0"]
    common += ["--template", str(template)]
    if command == "run":
        return ["run", "Q?", "--widths", "2", *common]
    if command == "eval":
        data = folder / "d.jsonl"
        data.write_text(json.dumps({"id": "p", "question": "Q?", "answer": "1"}) + "\n")
        return ["eval", "--dataset", str(data), "--method", "pacore:2", "--out",
                str(folder / "out"), "--no-plots", "--quiet", *common]  # fmt: skip
    return ["serve", "--port", "0", "--upstream", UNUSED_URL, "--template", str(template)]


@pytest.mark.parametrize("command", ["run", "eval", "serve"])
@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_template_is_refused_before_anything_is_spent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, case: str
) -> None:
    make, message = BAD[case]
    work = tmp_path / "work"
    work.mkdir()
    template = make(work)
    argv = _argv(command, work, template)
    before = _snapshot(work)
    if command == "serve":  # a server that started would serve until stopped
        done = subprocess.run(
            [sys.executable, "-m", "pacore.cli", *argv], capture_output=True, text=True, timeout=60
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    else:
        code = main(argv)
        out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert message in err
    assert _snapshot(work) == before


def test_a_good_template_is_accepted(tmp_path: Path) -> None:
    from pacore.cli import build_parser
    from pacore.cli.run import plan_run

    template = text("{{ original_prompt }}{% for r in ref_responses %}{{ r }}{% endfor %}")(
        tmp_path
    )
    plan = plan_run(build_parser().parse_args(_argv("run", tmp_path, template)))
    assert plan.config.template == template.read_text()
