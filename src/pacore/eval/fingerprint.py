"""`fingerprint.json`: what the results of an evaluation folder were computed on.

`results.jsonl` is keyed by (id, method, run) alone, so a folder reused with another
dataset whose ids are the same would report the old results under the new name. The
fingerprint pins down what decides a result:

- `problems`: per id, a hash of the problem as sent (its messages, `--system`
  included) and of what it is graded against (answer, or tests and entry point);
- `model`: the name the backend gives its model;
- `settings`: the protocol options that change a result: temperature, top-p, max
  tokens, extra body, seed, pool, grader, compaction, the template (hashed), the
  truncated and failure policies, max resamples and min references. Throughput
  options (jobs, concurrency, timeouts, retries, streaming) are left out.

When the folder holds results, a rerun must match: the same model and settings, and
the same content for every problem it holds results of. New problems (a larger
`--limit`), new methods and more runs extend the folder. Anything else is refused
before anything is written, with one line saying what changed and how to go on
(another `--out`, or moving `results.jsonl` away to start over). A folder without
results takes the new fingerprint; one with results but no fingerprint (written
before pacore had them) is adopted as it is.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacore.config import PacoreConfig
from pacore.core.fingerprint import result_settings
from pacore.core.hashing import stable_hash
from pacore.errors import ConfigError
from pacore.eval.datasets import Sample
from pacore.io.atomic import atomic_write
from pacore.io.jsonl import loads

FINGERPRINT = "fingerprint.json"
FORMAT = 1


def problem_hash(sample: Sample) -> str:
    """A hash of what decides a problem's results: the messages sent, the gold answer or tests."""
    grade = sample.grade_input()
    content = {
        "messages": list(sample.messages),
        "answer": grade.answer,
        "tests": grade.tests,
        "entry_point": grade.entry_point,
        "prompt": grade.prompt,
        "time_limit_s": grade.time_limit_s,
    }
    return stable_hash(json.dumps(content, sort_keys=True, default=str), chars=16)


def protocol_settings(config: PacoreConfig, *, seed: int, pool: int, grader: str) -> dict[str, Any]:
    """The options that change a result (see the module docstring)."""
    return {**result_settings(config), "seed": seed, "pool": pool, "grader": grader}


@dataclass(frozen=True)
class Fingerprint:
    """What an evaluation folder's results were computed on."""

    model: str
    settings: Mapping[str, Any]
    problems: Mapping[str, str]
    """Problem id: `problem_hash`."""

    @classmethod
    def of(cls, samples: Sequence[Sample], model: str, settings: Mapping[str, Any]) -> Fingerprint:
        """The fingerprint of an evaluation about to run."""
        return cls(model, dict(settings), {s.id: problem_hash(s) for s in samples})

    def to_dict(self) -> dict[str, Any]:
        """The content of `fingerprint.json`."""
        return {
            "format": FORMAT,
            "model": self.model,
            "settings": dict(self.settings),
            "problems": dict(self.problems),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Fingerprint:
        """Read `to_dict`'s output back; `ValueError` when it is not one."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a pacore fingerprint")
        model, settings, problems = data.get("model"), data.get("settings"), data.get("problems")
        if not isinstance(model, str) or not isinstance(settings, dict):
            raise ValueError("not a pacore fingerprint")
        if not isinstance(problems, dict) or not all(isinstance(v, str) for v in problems.values()):
            raise ValueError("not a pacore fingerprint")
        return cls(model, settings, problems)

    def extended(self, earlier: Fingerprint) -> Fingerprint:
        """This fingerprint with the problems only `earlier` knows kept."""
        return Fingerprint(self.model, self.settings, {**earlier.problems, **self.problems})

    def setting_difference(
        self, earlier: Fingerprint, only: Collection[str] | None = None
    ) -> str | None:
        """The first result-changing setting that differs from `earlier`, as part of a
        sentence (`temperature 1.0 (now 0.3)`); None when they agree. `only` limits the
        comparison to those settings (the ones a user gave)."""
        return _setting_difference(self, earlier, only)

    def difference(
        self, earlier: Fingerprint, held: Collection[str], *, only_problems: bool = False
    ) -> str | None:
        """What differs from `earlier` for a folder holding results of the ids `held`,
        as part of a sentence; None when its results still hold. `only_problems`
        compares the problems alone (a report computes nothing with the model or the
        settings, so they cannot mix into its results)."""
        if not only_problems and self.model != earlier.model:
            return f"model {earlier.model!r} (now {self.model!r})"
        setting = None if only_problems else self.setting_difference(earlier)
        if setting is not None:
            return setting
        changed = [
            pid
            for pid, digest in self.problems.items()
            if pid in held and earlier.problems.get(pid, digest) != digest
        ]
        if changed:
            return (
                f"other questions or answers under {len(changed)} of the same ids "
                f"(first {changed[0]!r}: another dataset, --fields or --system?)"
            )
        return None


def _setting_difference(
    current: Fingerprint, earlier: Fingerprint, only: Collection[str] | None = None
) -> str | None:
    for name, value in current.settings.items():
        if only is not None and name not in only:
            continue
        if name in earlier.settings and earlier.settings[name] != value:
            return f"{name} {_show(earlier.settings[name])} (now {_show(value)})"
    return None


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if not isinstance(value, str) else repr(value)


def read_fingerprint(out_dir: Path) -> Fingerprint | None:
    """The folder's fingerprint, None when it has none; an unreadable one is a `ConfigError`."""
    path = out_dir / FINGERPRINT
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read ({reason})") from None
    try:
        return Fingerprint.from_dict(loads(text, strict=False))
    except ValueError:
        raise ConfigError(
            f"{path}: not a pacore fingerprint; move it away to start the folder over"
        ) from None


def check_fingerprint(
    out_dir: Path,
    current: Fingerprint,
    held: Collection[str],
    *,
    only_problems: bool = False,
    stored: Mapping[str, str] | None = None,
) -> Fingerprint:
    """Refuse a folder whose results (of the ids `held`) were computed on something
    else; return the fingerprint to write once the run may go ahead.

    A folder without `fingerprint.json` (an earlier pacore's) is adopted, but when it
    stores its problems (`stored`: id to `problem_hash`, from `problems.jsonl`), the
    held results are of those: other questions under their ids are refused too."""
    earlier = read_fingerprint(out_dir)
    if earlier is None and stored and held:
        what = current.difference(Fingerprint("", {}, stored), held, only_problems=True)
        if what is not None:
            raise ConfigError(
                f"{out_dir} holds results computed with {what} (its problems.jsonl says so; "
                f"fingerprint.json is missing); use another --out, or move "
                f"{out_dir / 'results.jsonl'} away to start over"
            )
    if earlier is None or not held:
        return current
    what = current.difference(earlier, held, only_problems=only_problems)
    if what is not None:
        raise ConfigError(
            f"{out_dir} holds results computed with {what}; use another --out, or move "
            f"{out_dir / 'results.jsonl'} away to start over"
        )
    return current.extended(earlier)


def write_fingerprint(out_dir: Path, fingerprint: Fingerprint) -> None:
    """Write `fingerprint.json` atomically."""
    path = out_dir / FINGERPRINT
    text = json.dumps(fingerprint.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)
    atomic_write(path, text + "\n")
