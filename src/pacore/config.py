"""The configuration of a PaCoRe run: widths, sampling, compaction, failure policy.

`PacoreConfig` is a frozen value; derive variants with `dataclasses.replace`
or `config.with_options(...)`. Validation happens at construction, so an
invalid config never reaches the engine.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pacore.core.compaction import COMPACTION_MODES, CompactionMode
from pacore.errors import ConfigError, InvalidSetting
from pacore.types import SamplingParams

PRESETS: dict[str, tuple[int, ...]] = {
    "low": (4,),
    "medium": (16,),
    "high": (32, 4),
}
"""The published presets; each is followed by the implicit final width-1 round."""

DEFAULT_MAX_WIDTH = 1024
MAX_WIDTH = 65_536
"""The most trajectories one round (or an evaluation's pool) may ask for, whatever
`max_width` says: a width or pool of a billion would fill memory before the first
request."""
MAX_TOKENS = 2**31 - 1
"""The largest `max_tokens` a request may carry: the servers' count type (a larger one
was sent, and refused by the server, for every request)."""
MAX_RUNS = 100_000
"""The most runs per problem an evaluation may ask for."""

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
            # Plain ASCII digits only: `int` also takes "+4", "04", "4_0" and "４", each
            # of which would name the same widths another way (another method name).
            digits = p[1:] if p.startswith("-") else p
            if not (digits.isascii() and digits.isdigit()):
                raise ConfigError(
                    f"width {p!r} is not an integer in plain digits (widths {text!r})"
                )
            if len(digits) > 1 and digits.startswith("0"):
                raise ConfigError(f"width {p!r} has a leading zero; write {int(p)}")
            values.append(int(p))
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
                f"width {v} is above the cap of {max_width} (raise it with --max-width)"
            )
    return tuple(values)


def preset_widths(name: str) -> tuple[int, ...]:
    """The widths of a named preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def choose_widths(
    widths: str | Sequence[int] | None = None,
    preset: str | None = None,
    *,
    max_width: int = DEFAULT_MAX_WIDTH,
) -> tuple[int, ...] | None:
    """The one reading of "a preset or widths" (run, eval, serve): explicit widths win,
    then the preset; a text that names a preset (`"medium"` in `pacore:medium`) is that
    preset. None when neither is given (the caller's default)."""
    if isinstance(widths, str) and widths.strip() in PRESETS:
        return PRESETS[widths.strip()]
    if widths is not None:
        return parse_widths(
            widths if isinstance(widths, str) else tuple(widths), max_width=max_width
        )
    if preset is not None:
        return preset_widths(preset)
    return None


def check_min_references(
    min_references: int,
    widths: Sequence[int],
    *,
    name: str = "min_references",
    of: str | None = None,
) -> None:
    """Refuse a `min_references` that no synthesis round could ever get: one above the
    width of a round whose messages a synthesis reads (every parallel round's are). Such
    a problem would fail only after that round was spent, so this is checked when the
    plan is made (run, eval's methods, each serve request). `name` is the setting as the
    user wrote it (`--min-references`), `of` what the widths belong to (an eval method).
    """
    if not widths or min_references <= min(widths):
        return
    whose = f" of {of}" if of else ""
    raise InvalidSetting(
        "min_references",
        f"{name} {min_references} is above the width {min(widths)} of a round{whose} "
        f"(widths {list(widths)}): the synthesis after it could never get that many "
        "references",
    )


def setting(
    default: Any,
    doc: str,
    *,
    flag: str | None = None,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    cli: bool = True,
) -> Any:
    """A config field whose default, bounds and help are written once, here.

    `PacoreConfig` and `BackendConfig` check every bound in `__post_init__`,
    and the command line builds its options from the same metadata
    (`pacore.cli.options`), so a default or a bound never drifts between them.
    `flag` overrides the option name (`--<field-name>`); `cli=False` keeps a
    field off the command line.
    """
    meta = {
        "help": doc,
        "flag": flag,
        "minimum": minimum,
        "above": above,
        "maximum": maximum,
        "choices": choices,
        "metavar": metavar,
        "cli": cli,
    }
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


def check_settings(value: Any) -> None:
    """Check every field of a config dataclass against the bounds in its metadata."""
    for f in dataclasses.fields(value):
        _check(f, getattr(value, f.name))


def check_setting(cls: Any, name: str, value: Any) -> None:
    """Check one value against the bounds of the field `name` of the config class `cls`.

    Code that takes a setting outside a config object (a backend's constructor)
    checks it here, so its bounds are the config's, written once.
    """
    _check({f.name: f for f in dataclasses.fields(cls)}[name], value)


def _check(f: dataclasses.Field[Any], current: Any) -> None:
    if current is None or isinstance(current, bool):
        return
    meta = f.metadata
    choices = meta.get("choices")
    if choices is not None and current not in choices:
        raise InvalidSetting(
            f.name, f"unknown {f.name} {current!r}; choose one of {', '.join(choices)}"
        )
    if not isinstance(current, int | float):
        return
    if not math.isfinite(current):
        raise InvalidSetting(f.name, f"{f.name} must be a finite number, got {current}")
    if meta.get("minimum") is not None and not current >= meta["minimum"]:
        raise InvalidSetting(
            f.name, f"{f.name} must be at least {_num(meta['minimum'])}, got {current}"
        )
    if meta.get("above") is not None and not current > meta["above"]:
        raise InvalidSetting(f.name, f"{f.name} must be above {_num(meta['above'])}, got {current}")
    if meta.get("maximum") is not None and not current <= meta["maximum"]:
        raise InvalidSetting(
            f.name, f"{f.name} must be at most {_num(meta['maximum'])}, got {current}"
        )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class PacoreConfig:
    """Everything that decides how one problem is solved."""

    widths: tuple[int, ...] = setting(
        PRESETS["low"],
        "K_1..K_R, the widths of the parallel rounds; a final width-1 round always follows",
        cli=False,
    )
    temperature: float = setting(
        1.0,
        "sampling temperature (published: 1.0); 0 is greedy decoding, whose parallel "
        "trajectories are all alike",
        minimum=0,
    )
    top_p: float = setting(1.0, "nucleus sampling (published: 1.0)", above=0, maximum=1)
    max_tokens: int | None = setting(
        None,
        "generated-token cap per trajectory; none leaves it to the server "
        "(published: 131072; embedded: 512)",
        minimum=1,
        maximum=MAX_TOKENS,
        metavar="N",
    )
    seed: int | None = setting(
        None, "seeds the reference shuffle and, per sample, the server's sampling", metavar="S"
    )
    compaction: CompactionMode = setting(
        "conclusion",
        "what each trajectory passes on: conclusion (the paper's), full (no compaction, "
        "the ablation) or answer (only the boxed answer)",
        choices=COMPACTION_MODES,
    )
    template: str | None = setting(
        None, "a Jinja2 synthesis template; none is the published one, byte for byte", cli=False
    )
    truncated: TruncatedPolicy = setting(
        "drop",
        "a trajectory cut by max_tokens: drop it or keep its partial message",
        choices=("drop", "keep"),
        cli=False,
    )
    on_failure: FailurePolicy = setting(
        "resample",
        "failed trajectories: continue with the survivors, resample them, or fail the problem",
        choices=FAILURE_POLICIES,
    )
    max_resamples: int = setting(
        2, "with resample: how many times a failed slot is sampled again", minimum=0
    )
    min_references: int = setting(
        1, "fewest usable messages a synthesis round may run on; fewer fails the problem", minimum=1
    )
    concurrency: int = setting(64, "requests in flight at once, over all problems", minimum=1)
    max_problems_in_flight: int | None = setting(
        None, "problems worked on at once; none means the concurrency", minimum=1, cli=False
    )
    stream: bool = setting(False, "stream tokens from the server (live token counts)")
    extra_body: dict[str, Any] = setting({}, "extra JSON fields for every request", cli=False)
    max_width: int = setting(
        DEFAULT_MAX_WIDTH,
        "the cap on any single width, to catch typos such as 3200",
        minimum=1,
        maximum=MAX_WIDTH,
    )

    def __post_init__(self) -> None:
        """Validate every field; an invalid config never reaches the engine."""
        check_setting(PacoreConfig, "max_width", self.max_width)  # the cap before the widths
        object.__setattr__(self, "widths", parse_widths(self.widths, max_width=self.max_width))
        check_settings(self)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> PacoreConfig:
        """The config of a named preset (`low`, `medium`, `high`), with some fields changed."""
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
        """Problems `solve_many` works on at once: `max_problems_in_flight`, or `concurrency`."""
        return self.max_problems_in_flight or self.concurrency

    def sampling(self) -> SamplingParams:
        """The sampling settings every request of a run is sent with."""
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            seed=self.seed,
            stream=self.stream,
            extra_body=dict(self.extra_body),
        )


EMBEDDED = "embedded"
"""The backend name that selects the in-process llama.cpp model."""
EMBEDDED_DEFAULT_MAX_TOKENS = 512
"""The token cap per trajectory when the embedded model runs and none is given."""


@dataclass(frozen=True)
class BackendConfig:
    """Which model serves the samples, and how requests to it behave."""

    backend: tuple[str, ...] = setting(
        (),
        "an OpenAI-compatible base URL such as http://127.0.0.1:8000/v1 (repeat it for "
        "several endpoints), or 'embedded' (the default)",
        metavar="URL|embedded",
    )
    model: str | None = setting(
        None, "the model name on the server (the first it lists)", metavar="NAME"
    )
    model_path: str | None = setting(
        None, "the GGUF file for the embedded backend (SmolLM2-135M)", metavar="FILE"
    )
    slots: int = setting(4, "embedded: sequences decoded together", minimum=1, metavar="N")
    timeout: float = setting(
        600.0, "the timeout per request, in seconds", above=0, metavar="SECONDS"
    )
    retries: int = setting(5, "retries per request", minimum=0, metavar="N")
    backoff: float = setting(
        0.2, "the first retry waits up to this many seconds, doubling", minimum=0, metavar="S"
    )
    use_n: bool | None = setting(None, "never send n > 1; one request per sample", flag="--no-n")
    wait_ready: float | None = setting(
        None,
        "at start, wait up to this long for a server that is still loading its model "
        "(HTTP 503) or not yet listening (connection refused); 0 does not wait. Without "
        "it, a 503 is waited for up to 300 s and a refused connection fails at once",
        minimum=0,
        metavar="SECONDS",
    )

    def __post_init__(self) -> None:
        """Validate the fields and the combination of targets."""
        object.__setattr__(self, "backend", tuple(self.backend))
        check_settings(self)
        if self.embedded:
            return
        if EMBEDDED in self.backend:
            raise ConfigError("'embedded' cannot be mixed with server URLs in --backend")
        if self.model_path is not None:
            raise ConfigError("--model-path is for the embedded backend; use --model for a server")
        from pacore.backends.openai_compat.endpoints import normalize_base_url

        for url in self.backend:
            normalize_base_url(url)

    @property
    def embedded(self) -> bool:
        """True when the samples come from the in-process model."""
        return self.backend in ((), (EMBEDDED,))


@dataclass(frozen=True)
class EvalSettings:
    """The evaluation protocol's sizes: runs per problem, the round-1 pool, jobs at once."""

    runs: int = setting(
        4, "independent runs per problem; pass@1 is their mean", minimum=1, maximum=MAX_RUNS
    )
    pool: int = setting(
        64,
        "round-1 trajectories generated once per problem (the paper: 512)",
        minimum=1,
        maximum=MAX_WIDTH,
    )
    jobs: int = setting(
        128,
        "(problem, method, run) jobs at once: a problem's jobs share its pool, so about "
        "jobs / (runs x methods) problems are in flight",
        minimum=1,
    )
    limit: int | None = setting(None, "only the first N problems", minimum=1)

    def __post_init__(self) -> None:
        """Validate every field."""
        check_settings(self)


@dataclass(frozen=True)
class ServeConfig:
    """How `pacore serve` listens, whom it lets in, and the limits on what it takes.

    Limits on a request's shape (trajectories, samples, rounds, `max_tokens`, `n`,
    `max_resamples`) answer 400, since sending it again cannot help; limits on load (per
    key, the queue) answer 429, and the body size 413. The shape limits bound the
    upstream work of one request: at most `max_samples` samples, each an upstream
    request retried at most `--retries` times.
    """

    host: str = setting("127.0.0.1", "the address to listen on (loopback only by default)")
    port: int = setting(8000, "the port to listen on; 0 picks a free one", minimum=0, maximum=65535)
    insecure_no_auth: bool = setting(
        False,
        "serve a --host other than loopback without --api-key: anyone who reaches the port "
        "spends your tokens",
    )
    api_key: tuple[str, ...] = setting(
        (),
        "a bearer key clients must send (repeat it for several; also PACORE_SERVE_API_KEYS, "
        "comma-separated); none lets everyone in",
        metavar="KEY",
    )
    max_trajectories: int = setting(
        512,
        "the most trajectories one request may ask for: n x the sum of its widths, "
        "final rounds included",
        minimum=1,
        metavar="N",
    )
    max_n: int = setting(
        8, "the largest n (independent answers) one request may ask for", minimum=1
    )
    max_tokens_limit: int = setting(
        131072, "the largest max_tokens a request may ask for", minimum=1, metavar="N"
    )
    max_resamples_limit: int = setting(
        8,
        "the largest pacore.max_resamples a request may ask for (the server's own "
        "--max-resamples applies when it asks for none)",
        minimum=0,
        metavar="N",
    )
    max_rounds: int = setting(
        4,
        "the most parallel rounds (entries of pacore.widths) one request may ask for; "
        "each is a sequential wait",
        minimum=1,
        metavar="N",
    )
    max_samples: int = setting(
        1536,
        "the most upstream samples one request may cost at worst: its trajectories x "
        "(1 + max_resamples) when failed trajectories are resampled, else its trajectories",
        minimum=1,
        metavar="N",
    )
    per_key: int = setting(
        64,
        "requests one API key may have in progress at once (with --api-key)",
        minimum=1,
        metavar="N",
    )
    queue: int = setting(
        1024, "requests the server works on at once, over all keys; more get 429", minimum=1
    )
    max_body: int = setting(
        4 * 1024 * 1024, "the largest request body in bytes; larger gets 413", minimum=1
    )
    keepalive: float = setting(
        10.0,
        "seconds of silence after which a stream gets an SSE comment, so proxies keep it open",
        above=0,
        metavar="SECONDS",
    )

    def __post_init__(self) -> None:
        """Validate every field."""
        object.__setattr__(self, "api_key", tuple(self.api_key))
        check_settings(self)


@dataclass(frozen=True)
class EdgeConfig:
    """The network edge of `pacore serve` and `pacore view` (`pacore.http_edge`): which
    Host and Origin headers it answers, how long a client may take, how many connections
    it holds, and how it stops."""

    allow_host: tuple[str, ...] = setting(
        (),
        "a name clients may reach this server by, besides 127.0.0.1, localhost and [::1] "
        "('NAME' on any port, 'NAME:PORT' on one; '*' any, for a proxy that checks Host); "
        "repeat it",
        metavar="NAME",
    )
    allow_origin: tuple[str, ...] = setting(
        (),
        "a web page origin (https://app.example.com) whose scripts may call this server; "
        "repeat it; none by default",
        metavar="ORIGIN",
    )
    header_timeout: float = setting(
        10.0,
        "seconds a client has to send a request's line and headers; then it is closed",
        above=0,
        metavar="SECONDS",
    )
    body_timeout: float = setting(
        30.0,
        "seconds a client has to send a request's body once its headers are in",
        above=0,
        metavar="SECONDS",
    )
    idle_timeout: float = setting(
        5.0,
        "seconds a kept-alive connection may wait between requests",
        above=0,
        metavar="SECONDS",
    )
    max_connections: int = setting(
        1024,
        "open connections at most (lowered to fit the open-file limit); more are closed at once",
        minimum=1,
        metavar="N",
    )
    shutdown_grace: float = setting(
        5.0,
        "seconds requests in progress get to finish after Ctrl-C or SIGTERM; "
        "then each is answered with an error",
        minimum=0,
        metavar="SECONDS",
    )

    def __post_init__(self) -> None:
        """Validate every field."""
        object.__setattr__(self, "allow_host", tuple(self.allow_host))
        object.__setattr__(self, "allow_origin", tuple(self.allow_origin))
        check_settings(self)
