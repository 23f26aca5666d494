"""The layering of the house, checked on the source: what each package may import.

Every module under `src/pacore` is parsed (never imported) and its imports, lazy ones
inside functions included, are checked against the rules below. A rule is a plain
function over `Import`s: a new rule is one more function and one more test.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
SHARED = ("pacore.graders", "pacore.pool")
"""Pieces eval and train both use: they live outside `eval/`."""


@dataclass(frozen=True)
class Import:
    """One imported name: `from target import name` (`name` None for `import target`)."""

    module: str
    """The importing module, dotted (`pacore.train.records`)."""
    target: str
    """The module imported from, absolute (`pacore.eval.datasets`)."""
    name: str | None
    line: int

    def where(self) -> str:
        """`module:line` for failure messages."""
        return f"{self.module}:{self.line}"


def module_name(path: Path) -> str:
    """`src/pacore/eval/runner.py` -> `pacore.eval.runner` (a package is its `__init__`)."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[Import]:
    """Every import in the file, relative ones made absolute."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, None, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, target] if target else base)
            for alias in node.names:
                yield Import(module, target, alias.name, node.lineno)


def all_imports() -> list[Import]:
    """The imports of every module of the package."""
    return [found for path in sorted((SRC / "pacore").rglob("*.py")) for found in imports(path)]


def within(module: str, package: str) -> bool:
    """Whether `module` is `package` or inside it."""
    return module == package or module.startswith(package + ".")


def private_part(found: Import) -> str | None:
    """The first underscore name the import reaches for (a module or a name), if any."""
    parts = [*found.target.split("."), *([found.name] if found.name else [])]
    return next((p for p in parts if p.startswith("_") and not p.startswith("__")), None)


def test_the_walk_finds_every_module_and_lazy_import() -> None:
    found = all_imports()
    assert len({f.module for f in found}) > 50
    pairs = {(f.module, f.target, f.name) for f in found}
    assert ("pacore.eval.runner", "pacore.graders.base", "Grader") in pairs
    assert ("pacore.cli.eval", "pacore.graders", "grader_for") in pairs  # inside a function


def test_no_module_outside_eval_imports_a_private_name_from_eval() -> None:
    offending = [
        f"{f.where()} imports {private_part(f)} from {f.target}"
        for f in all_imports()
        if within(f.target, "pacore.eval")
        and not within(f.module, "pacore.eval")
        and private_part(f)
    ]
    assert offending == []


def test_no_package_imports_another_packages_private_names() -> None:
    """`pacore.graders._math_worker` is the graders' own; nobody else may reach into it."""

    def home(module: str) -> str:
        return ".".join(module.split(".")[:2])

    offending = [
        f"{f.where()} imports {private_part(f)} from {f.target}"
        for f in all_imports()
        if within(f.target, "pacore") and private_part(f) and home(f.module) != home(f.target)
    ]
    assert offending == []


def test_train_and_view_use_the_shared_packages_not_eval_internals() -> None:
    gone = ("pacore.eval.graders", "pacore.eval.pool", "pacore.eval.grading")
    offending = [
        f"{f.where()} imports {f.target}"
        for f in all_imports()
        if (within(f.module, "pacore.train") or within(f.module, "pacore.view"))
        and any(within(f.target, old) for old in gone)
    ]
    assert offending == []


def test_shared_pieces_do_not_live_under_eval() -> None:
    for old in ("eval/graders", "eval/pool.py", "eval/grading.py"):
        assert not (SRC / "pacore" / old).exists(), old
    for shared in SHARED:
        module = SRC / Path(*shared.split("."))
        assert module.is_dir() or module.with_suffix(".py").is_file(), shared
    # Graders know nothing of eval: they take grader inputs, not eval samples.
    offending = [
        f"{f.where()} imports {f.target}"
        for f in all_imports()
        if any(within(f.module, s) for s in SHARED) and within(f.target, "pacore.eval")
    ]
    assert offending == []
