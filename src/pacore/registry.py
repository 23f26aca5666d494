"""Named extension points: the built-ins, then Python entry points, loaded only when asked.

Graders (`pacore.graders`), methods (`pacore.methods`) and backends (`pacore.backends`)
are each one `Registry`. A name that is built in never reads package metadata; any
other name is looked up in the registry's entry point group, and only that entry
point is imported. A plugin package declares its own in its `pyproject.toml`:

    [project.entry-points."pacore.graders"]
    vibes = "my_package.graders:VibesGrader"      # called like a built-in's factory

A built-in name cannot be replaced by a plugin. An unknown name, an entry point that
fails to import and one that is not what the registry holds are each a one-line
`ConfigError` (the first lists the known names).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from pacore.errors import ConfigError, one_line

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

T = TypeVar("T")


@dataclass(frozen=True)
class Registry(Generic[T]):
    """What one extension point knows by name: `builtins`, then entry points of `group`."""

    kind: str
    """What an entry is, for messages: `grader`, `method`, `backend`."""
    group: str
    """The entry point group plugins declare: `pacore.graders`."""
    builtins: Mapping[str, T]
    """The built-in entries, in the order messages list them (read-only once built)."""
    accepts: Callable[[object], bool] = field(default=callable)
    """Whether a loaded entry point is a `T` (a factory is any callable by default)."""

    def __post_init__(self) -> None:
        """Freeze the built-ins: a registry is a constant, never module-level state."""
        object.__setattr__(self, "builtins", MappingProxyType(dict(self.builtins)))

    def _entry_points(self, name: str | None = None) -> list[EntryPoint]:
        from importlib import metadata  # 30 ms: only when a name is not built in

        found = metadata.entry_points(group=self.group)
        unique: dict[str, EntryPoint] = {}
        for entry in found:  # one distribution seen twice on sys.path lists it twice
            if (name is None or entry.name == name) and entry.name not in self.builtins:
                unique.setdefault(f"{entry.name}={entry.value}", entry)
        return list(unique.values())

    def plugin_names(self) -> tuple[str, ...]:
        """The names installed packages add (reads package metadata, imports nothing)."""
        return tuple(sorted({entry.name for entry in self._entry_points()}))

    def names(self) -> tuple[str, ...]:
        """Every known name: the built-ins in their order, then the plugins' sorted."""
        return (*self.builtins, *self.plugin_names())

    def __contains__(self, name: object) -> bool:
        """Whether `name` is built in or installed (imports nothing)."""
        if not isinstance(name, str):
            return False
        return name in self.builtins or bool(self._entry_points(name))

    def unknown(self, name: str) -> ConfigError:
        """The error for a name nobody provides, listing the known ones."""
        listed = ", ".join(self.names())
        return ConfigError(f"unknown {self.kind} {name!r}; valid {self.kind}s: {listed}")

    def get(self, name: str) -> T:
        """The entry called `name`: a built-in, else the one entry point of that name."""
        if name in self.builtins:
            return self.builtins[name]
        entries = self._entry_points(name)
        if not entries:
            raise self.unknown(name)
        if len(entries) > 1:
            values = " and ".join(entry.value for entry in entries)
            raise ConfigError(f"{self.kind} {name!r} is provided twice: {values}")
        (entry,) = entries
        try:
            loaded = entry.load()
        except Exception as exc:
            detail = one_line(f"{type(exc).__name__}: {exc}", 200)
            raise ConfigError(
                f"{self.kind} {name!r} ({entry.value}) cannot be loaded: {detail}"
            ) from None
        if not self.accepts(loaded):
            raise ConfigError(
                f"{self.kind} {name!r} ({entry.value}) is not a {self.kind}: "
                f"{type(loaded).__name__}"
            )
        return cast(T, loaded)
