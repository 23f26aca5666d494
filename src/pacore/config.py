"""The configuration of a PaCoRe run: widths, sampling, compaction, failure policy.

`PacoreConfig` is a frozen value; derive variants with `dataclasses.replace`
or `config.with_options(...)`. Validation happens at construction, so an
invalid config never reaches the engine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from pacore.core.compaction import COMPACTION_MODES, CompactionMode
from pacore.errors import ConfigError
from pacore.types import SamplingParams

PRESETS: dict[str, tuple[int, ...]] = {
    "low": (4,),
    "medium": (16,),
    "high": (32, 4),
}
"""The published presets; each is followed by the implicit final width-1 round."""

DEFAULT_MAX_WIDTH = 1024

FailurePolicy = Literal["continue", "resample", "fail"]
FAILURE_POLICIES: tuple[FailurePolicy, ...] = ("continue", "resample", "fail")
TruncatedPolicy = Literal["drop", "keep"]


def parse_widths(
    text: str | list[int] | tuple[int, ...], *, max_width: int = DEFAULT_MAX_WIDTH
) -> tuple[int, ...]:
    """Widths from text such as "32,4" (or a sequence of ints), validated.

    The final width-1 synthesis round is implicit and must not be written.
    """
    if isinstance(text, str):
        items = [p.strip() for p in text.split(",")]
        if not text.strip() or any(p == "" for p in items):
            raise ConfigError(f"widths must be comma-separated positive integers, got {text!r}")
        values: list[int] = []
        for p in items:
            try:
                values.append(int(p))
            except ValueError:
                raise ConfigError(f"width {p!r} is not an integer (widths {text!r})") from None
    else:
        values = []
        for v in text:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"width {v!r} is not an integer")
            values.append(v)
        if not values:
            raise ConfigError("widths must name at least one round")
    for v in values:
        if v < 1:
            raise ConfigError(f"width {v} must be at least 1")
        if v > max_width:
            raise ConfigError(
                f"width {v} is above the cap of {max_width} (raise it with max_width)"
            )
    return tuple(values)


def preset_widths(name: str) -> tuple[int, ...]:
    """The widths of a named preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


@dataclass(frozen=True)
class PacoreConfig:
    """Everything that decides how one problem is solved."""

    widths: tuple[int, ...] = PRESETS["low"]
    """K_1..K_R, the widths of the parallel rounds; a final width-1 round always follows."""
    temperature: float = 1.0
    """Sampling temperature (published: 1.0). Must be > 0 for the trajectories to differ."""
    top_p: float = 1.0
    """Nucleus sampling (published: 1.0)."""
    max_tokens: int | None = None
    """Generated-token cap per trajectory; None leaves it to the server (published: 131072)."""
    seed: int | None = None
    """Seeds the reference shuffle and, when set, the server's sampling (per sample)."""
    compaction: CompactionMode = "conclusion"
    """What each trajectory passes on: `conclusion`, `full` (ablation) or `answer`."""
    template: str | None = None
    """A Jinja2 synthesis template; None is the published one, byte for byte."""
    truncated: TruncatedPolicy = "drop"
    """A trajectory cut by max_tokens: `drop` it or `keep` its (partial) message."""
    on_failure: FailurePolicy = "resample"
    """Failed trajectories: `continue` with survivors, `resample` them, or `fail` the problem."""
    max_resamples: int = 2
    """With `resample`: how many times a failed slot is sampled again."""
    min_references: int = 1
    """Fewest usable messages a synthesis round may run on; fewer fails the problem."""
    concurrency: int = 64
    """Requests in flight at once, over all problems."""
    max_problems_in_flight: int | None = None
    """Problems worked on at once by `solve_many`; None means `concurrency`."""
    stream: bool = False
    """Stream tokens from the server (live token progress)."""
    extra_body: dict[str, Any] = field(default_factory=dict)
    """Extra JSON fields for every request (e.g. {"top_k": 20})."""
    max_width: int = DEFAULT_MAX_WIDTH
    """The cap on any single width, to catch typos such as 3200."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", parse_widths(self.widths, max_width=self.max_width))
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.compaction not in COMPACTION_MODES:
            raise ConfigError(
                f"unknown compaction {self.compaction!r}; "
                f"choose one of {', '.join(COMPACTION_MODES)}"
            )
        if self.truncated not in ("drop", "keep"):
            raise ConfigError(f"truncated must be 'drop' or 'keep', got {self.truncated!r}")
        if self.on_failure not in FAILURE_POLICIES:
            raise ConfigError(
                f"unknown failure policy {self.on_failure!r}; "
                f"choose one of {', '.join(FAILURE_POLICIES)}"
            )
        if self.max_resamples < 0:
            raise ConfigError("max_resamples must be >= 0")
        if self.min_references < 1:
            raise ConfigError("min_references must be at least 1")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.max_problems_in_flight is not None and self.max_problems_in_flight < 1:
            raise ConfigError("max_problems_in_flight must be at least 1")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> PacoreConfig:
        return cls(widths=preset_widths(name), **overrides)

    def with_options(self, **changes: Any) -> PacoreConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def all_widths(self) -> tuple[int, ...]:
        """Every round's width, the final width-1 round included."""
        return (*self.widths, 1)

    @property
    def problems_in_flight(self) -> int:
        return self.max_problems_in_flight or self.concurrency

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            seed=self.seed,
            stream=self.stream,
            extra_body=dict(self.extra_body),
        )
