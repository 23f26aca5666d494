"""The files layer holds: no module outside `pacore.io` opens an output for writing.

Every module under `src/pacore` is parsed (never imported) and every call that
writes a file is found: `open`/`Path.open`/`os.fdopen` with a writing mode,
`write_text`/`write_bytes`, `os.replace`/`os.rename`/`os.truncate`/`os.open`,
`shutil.move`/`copy*`, `tempfile.mkstemp`/`NamedTemporaryFile`, and Parquet writers.
Outside `pacore.io`, only the places below may write, each for a reason that is not
an output of a command.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.test_layering import SRC, module_name, within

FILES_LAYER = "pacore.io"

ALLOWED: dict[str, str] = {
    "pacore.graders.sandbox": "untrusted code and its stdin go to a private temp folder",
    "pacore.graders._sandbox_boot": "the sandbox child sets up its own private folder",
    "pacore.graders._checker": "a pipe to the checker process, not a file",
    "pacore.train.trl": "TRL saves the trained model folder itself (save_pretrained)",
    "pacore.cli.console": "a stdout that failed is pointed at /dev/null, not at a file",
}
"""Modules outside the files layer that write, and why that is not a command output."""

WRITING_MODES = set("wax+")
CALLS = {
    "write_text", "write_bytes", "replace", "rename", "truncate", "move", "copy",
    "copyfile", "copy2", "mkstemp", "NamedTemporaryFile", "ParquetWriter", "write_table",
    "save_pretrained",
}  # fmt: skip
"""Attribute or function names that write a file, whatever their receiver."""


def _mode(call: ast.Call, position: int) -> str | None:
    """The literal mode of an `open`-like call (positional `position` or `mode=`)."""
    node: ast.expr | None = None
    if len(call.args) > position:
        node = call.args[position]
    for keyword in call.keywords:
        if keyword.arg == "mode":
            node = keyword.value
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None if node is None else "?"  # a mode computed at run time: flagged


def _keyword_mode(call: ast.Call) -> bool:
    return any(k.arg == "mode" for k in call.keywords)


def _writing_flags(call: ast.Call) -> bool:
    """Whether an `os.open` call's flags name a writing flag."""
    names = {n.attr for a in call.args[1:2] for n in ast.walk(a) if isinstance(n, ast.Attribute)}
    return bool(names & {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"})


def _receiver(call: ast.Call) -> str | None:
    """The plain name a method is called on (`os` in `os.replace`), if any."""
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id
    return None


def _open_write(call: ast.Call) -> str | None:
    """builtins.open(path, mode), Path.open(mode), os.open(path, flags)."""
    receiver = _receiver(call)
    if receiver == "os":
        return "os.open for writing" if _writing_flags(call) else None
    method = isinstance(call.func, ast.Attribute)
    mode = _mode(call, 0 if method else 1)
    if method and mode == "?" and not _keyword_mode(call):
        return None  # `webbrowser.open(url)`, `upstream.open(body)`: not a file mode
    if mode is not None and (mode == "?" or WRITING_MODES & set(mode)):
        return f"open(mode={mode!r})"
    return None


def _fdopen_write(call: ast.Call) -> str | None:
    mode = _mode(call, 1)
    return "os.fdopen for writing" if mode in (None, "?") or WRITING_MODES & set(mode) else None


ON_MODULE = {"replace": ("os", "shutil"), "truncate": ("os",), "copy": ("shutil",),
             "move": ("shutil",), "rename": ("os",)}  # fmt: skip
"""Names that write only on these modules (`str.replace`, `dict.copy` do not)."""


def write_of(call: ast.Call) -> str | None:
    """What a call writes, or None when it writes no file."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name == "open":
        return _open_write(call)
    if name == "fdopen":
        return _fdopen_write(call)
    if name in ON_MODULE:
        return name if _receiver(call) in ON_MODULE[name] else None
    return name if name in CALLS else None


def writes(path: Path) -> Iterator[tuple[int, str]]:
    """(line, what) for every call in the file that writes a file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Call) and (what := write_of(node)) is not None:
            yield node.lineno, what


def offenders() -> list[str]:
    found: list[str] = []
    for path in sorted((SRC / "pacore").rglob("*.py")):
        module = module_name(path)
        if within(module, FILES_LAYER) or module in ALLOWED:
            continue
        found.extend(f"{module}:{line}: {what}" for line, what in writes(path))
    return found


def test_the_walk_finds_writes_where_they_are() -> None:
    """A positive control: the files layer itself is full of them."""
    found = {what for path in (SRC / "pacore" / "io").glob("*.py") for _, what in writes(path)}
    assert {"replace", "mkstemp", "open(mode='ab')", "truncate"} <= found


def test_the_walk_catches_each_kind_of_write(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import os, shutil, tempfile\n"
        "open(p, 'w')\n"
        "p.open('a')\n"
        "p.open(mode=mode)\n"
        "p.write_text('x')\n"
        "os.replace(a, b)\n"
        "shutil.move(a, b)\n"
        "tempfile.mkstemp()\n"
        "os.fdopen(fd, 'wb')\n"
        "pq.ParquetWriter(p, s)\n"
        "os.open(p, os.O_WRONLY | os.O_CREAT)\n"
        # not writes:
        "open(p)\n"
        "p.open('rb')\n"
        "'a'.replace('a', 'b')\n"
        "d.copy()\n"
        "replace(obj, x=1)\n"
        "os.open(p, os.O_RDONLY | os.O_NONBLOCK)\n"
        "webbrowser.open(url)\n"
    )
    assert [line for line, _ in writes(source)] == list(range(2, 12))


def test_no_module_outside_the_files_layer_opens_an_output_for_writing() -> None:
    assert offenders() == []


def test_every_allowed_writer_still_writes() -> None:
    """An exception that no longer writes is stale: remove it from ALLOWED."""
    for module in ALLOWED:
        path = SRC / Path(*module.split(".")).with_suffix(".py")
        assert list(writes(path)), module
