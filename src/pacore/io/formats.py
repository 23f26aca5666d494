"""The formats pacore writes, each named and versioned, and the check every reader makes.

A file pacore writes says what it is: result lines and pool records carry
`"format": "pacore.run/1"` (name/version), Parquet files the schema metadata key
`pacore.format`, `traces.sqlite` a `format` row in its `meta` table. A reader accepts its own
format at its version or below (an older file is migrated on reading) and a file
without a marker (written before pacore marked its files), and refuses a newer
version or another format with one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pacore.errors import ConfigError

FORMAT_KEY = "format"
"""The field (JSON) or metadata key suffix (Parquet: `pacore.format`) holding the tag."""


@dataclass(frozen=True)
class Format:
    """A named, versioned file format."""

    name: str
    version: int
    what: str
    """What a file of this format is, for messages: `a pacore run output`."""

    @property
    def tag(self) -> str:
        """`name/version`, as written into files."""
        return f"{self.name}/{self.version}"

    def version_of(self, value: Any, where: str) -> int:
        """The version of a marker read from a file (0 when there is none); `ConfigError`
        for another format or a newer version."""
        if value is None:
            return 0
        name, _, version = str(value).rpartition("/")
        if name != self.name or not version.isdigit():
            raise ConfigError(f"{where}: format {value!r} is not {self.what} ({self.tag})")
        if int(version) > self.version:
            raise ConfigError(
                f"{where}: written by a newer pacore (format {value}; this one reads up to "
                f"{self.tag}): upgrade pacore to read it"
            )
        return int(version)

    def marks(self, value: Any) -> bool:
        """Whether `value` is this format's marker at any version."""
        return isinstance(value, str) and value.rpartition("/")[0] == self.name


RUN_RESULTS = Format("pacore.run", 1, "a pacore run output")
"""Lines of `pacore run --output`: one `Result` each."""
EVAL_RESULTS = Format("pacore.eval", 1, "a pacore eval results file")
"""Lines of an eval folder's `results.jsonl`: one `RunRecord` each."""
POOL = Format("pacore.pool", 1, "a pacore problems or pool file")
"""Records of the PaCoRe-Train format (problems with or without responses)."""
VERL = Format("pacore.verl", 1, "a pacore verl export")
"""The Parquet file `pacore train export --format verl` writes."""
COUNTS = Format("pacore.counts", 1, "a pacore curriculum counts table")
"""The counts table `pacore train filter` writes beside its output."""
TRACES = Format("pacore.traces", 1, "a pacore traces database")
"""An eval folder's `traces.sqlite` (the tag is the `format` row of its `meta` table)."""
EVAL_PROBLEMS = Format("pacore.eval-problems", 1, "an eval folder's stored problems")
"""Lines of an eval folder's `problems.jsonl`: one problem it evaluated each."""
EVAL_SUMMARY = Format("pacore.eval-summary", 1, "an eval folder's summary")
"""An eval folder's `summary.json` (its top-level `format` field)."""
EVAL_REPORT = Format("pacore.eval-report", 1, "an eval folder's report")
"""An eval folder's `report.md` (an HTML comment on its last line names the tag)."""
