"""The chat-completions request as pacore reads it, and which route a model name takes.

Pydantic lives here, at the HTTP boundary, and nowhere else: a valid request becomes
a `ChatRequest`, then a `PacoreConfig` (a frozen value the engine already knows), and
any invalid one an `ApiError` 400 naming the field (`param`).

Model names:
    pacore-<preset>                  PaCoRe with a preset's widths on the default model
    pacore-<preset>:<upstream-model> the same on a model the upstream serves
    any name + "pacore": {...}       PaCoRe with those settings on that model
    any other name                   passed through to the upstream untouched

A PaCoRe request is held to the server's ceilings (`ServeConfig`), each a 400 naming
the option and the limit: `n`, `max_tokens`, `pacore.max_resamples`, the rounds and each
width of `pacore.widths` (a preset counts as its widths), `pacore.min_references` (at
most the smallest width), and over the whole request its trajectories and its
worst-case upstream samples (`worst_samples`). `/v1/models` lists them
(`advertised_limits`). Its messages are text only, and no user turn is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pacore.config import (
    PRESETS,
    PacoreConfig,
    ServeConfig,
    check_min_references,
    choose_widths,
)
from pacore.core.compaction import CompactionMode
from pacore.errors import ConfigError, InvalidSetting
from pacore.serve.errors import ApiError

PREFIX = "pacore-"
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class PacoreOptions(BaseModel):
    """The request's `pacore` field: the engine settings of this request."""

    model_config = ConfigDict(extra="forbid", strict=True)

    widths: list[int] | None = Field(default=None, min_length=1)
    preset: str | None = None
    compaction: CompactionMode | None = None
    on_failure: Literal["continue", "resample", "fail"] | None = None
    max_resamples: int | None = None
    min_references: int | None = None
    truncated: Literal["drop", "keep"] | None = None


class StreamOptions(BaseModel):
    """`stream_options`: only `include_usage` is read."""

    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields of a chat-completions body that PaCoRe honours; `UNSUPPORTED` ones are
    refused, and others (`user`, `presence_penalty`, ...) are ignored."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1)
    pacore: PacoreOptions | None = None

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage


NULLABLE = frozenset(
    ("stream", "stream_options", "temperature", "top_p", "max_tokens",
     "max_completion_tokens", "seed", "stop", "n", "pacore")
)  # fmt: skip
"""Fields OpenAI's API takes as `null` for "the default" (the SDK sends `n: null`)."""
UNSUPPORTED = {
    "tools": "tool calls",
    "functions": "function calls",
    "tool_choice": "tool calls",
    "function_call": "function calls",
    "response_format": "structured output",
    "logprobs": "log probabilities",
    "top_logprobs": "log probabilities",
    "audio": "audio output",
}
"""Fields that would change the answer's shape, which the synthesis rounds cannot honour:
refused (a plain upstream model passes them through), never silently dropped."""
_UNSET: tuple[Any, ...] = (None, False, "none", "auto", [], {}, {"type": "text"})


def parse_request(data: Any) -> ChatRequest:
    """A `ChatRequest` from a parsed JSON body; `ApiError` 400 naming the first bad field."""
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    for name, what in UNSUPPORTED.items():
        value = data.get(name)
        if not any(value is unset or value == unset for unset in _UNSET):
            raise ApiError(
                400,
                f"{name}: PaCoRe models answer in text and do not support {what}; send this "
                "request to a plain upstream model name instead",
                param=name,
            )
    data = {k: v for k, v in data.items() if v is not None or k not in NULLABLE}
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        if loc and loc[0] == "stop":  # a union: pydantic names its branch (`stop.str`)
            raise ApiError(
                400, "stop: must be a string or a list of strings", param="stop"
            ) from None
        where = ".".join(loc) or None
        raise ApiError(400, f"{where}: {first['msg']}", param=where) from None
    check_messages(request.messages)
    return request


def shown(value: Any, limit: int = 80) -> str:
    """A client's value as an error message or a log line shows it: its `repr`, cut to
    `limit` characters (a 4 MB model name is not echoed back twice)."""
    text = repr(value) if isinstance(value, str) else f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_messages(messages: list[dict[str, Any]]) -> None:
    """Every message has a known role and text content; one is a user (or tool) turn, and
    every user turn says something.

    PaCoRe models take text only: the synthesis rounds rewrite the question as text, so
    an image (or any other non-text part) would reach round 1 and vanish after it. Such
    parts are refused, naming the part; a plain upstream model passes them through."""
    for i, message in enumerate(messages):
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise ApiError(400, f"messages.{i}.role: unknown role {role!r}", param=f"messages.{i}")
        _check_content(i, message.get("content"))
        if role == "user" and not _text_of(message.get("content")).strip():
            raise ApiError(
                400,
                f"messages.{i}.content: the user turn is empty (no text); PaCoRe needs a "
                "question to work on",
                param=f"messages.{i}.content",
            )
    if not any(m.get("role") in ("user", "tool") for m in messages):
        raise ApiError(400, "messages: the conversation has no user message", param="messages")


def _check_content(i: int, content: Any) -> None:
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
        raise ApiError(
            400,
            f"messages.{i}.content: must be a string or a list of content parts",
            param=f"messages.{i}.content",
        )
    for j, part in enumerate(content):
        kind = part.get("type", "text")
        if kind != "text":
            raise ApiError(
                400,
                f"messages.{i}.content.{j}: PaCoRe models take text only, not {kind!r} "
                "parts (a plain upstream model name passes them through)",
                param=f"messages.{i}.content.{j}",
            )
        if not isinstance(part.get("text"), str):
            raise ApiError(
                400,
                f"messages.{i}.content.{j}.text: a text part needs its text as a string",
                param=f"messages.{i}.content.{j}.text",
            )


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part["text"] for part in content)
    return content if isinstance(content, str) else ""


@dataclass(frozen=True)
class Route:
    """Where a request goes: PaCoRe with `widths` on `upstream_model` (None: the default
    model), or, with `widths` None, straight through to the upstream."""

    widths: tuple[int, ...] | None
    upstream_model: str | None
    label: str
    """The model as metrics name it: a preset, `pacore-custom` or `passthrough`."""


def route_of(data: dict[str, Any]) -> Route:
    """The route of a parsed body, read from `model` and `pacore` alone (cheap: a
    passthrough body is never validated further)."""
    model = data.get("model")
    options = data.get("pacore")
    if not isinstance(model, str):
        return Route((), None, "invalid")  # parse_request names the error
    if model.startswith(PREFIX):
        preset, _, upstream = model[len(PREFIX) :].partition(":")
        if preset not in PRESETS:
            raise ApiError(
                400,
                f"unknown preset {shown(preset)} in model {shown(model)}; "
                f"choose one of {', '.join(PREFIX + p for p in PRESETS)}",
                param="model",
                code="model_not_found",
            )
        return Route(PRESETS[preset], upstream or None, PREFIX + preset)
    if options is not None:
        return Route(PRESETS["low"], model, PREFIX + "custom")
    return Route(None, model, "passthrough")


def engine_config(
    request: ChatRequest, route: Route, defaults: PacoreConfig, limits: ServeConfig
) -> PacoreConfig:
    """The engine config of one request: the server's defaults, the route's widths, the
    request's sampling and `pacore` options; `ApiError` 400 when it is invalid or over
    a limit."""
    options = request.pacore or PacoreOptions()
    changes: dict[str, Any] = {"widths": _widths(route, options, defaults)}
    max_tokens = request.max_completion_tokens or request.max_tokens
    asked = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
    _at_most(asked, max_tokens, limits.max_tokens_limit)
    _at_most("pacore.max_resamples", options.max_resamples, limits.max_resamples_limit)
    for name, value in (
        ("temperature", request.temperature),
        ("top_p", request.top_p),
        ("seed", request.seed),
        ("max_tokens", max_tokens),
    ):
        if value is not None:
            changes[name] = value
    for name in ("compaction", "on_failure", "max_resamples", "min_references", "truncated"):
        value = getattr(options, name)
        if value is not None:
            changes[name] = value
    extra = dict(defaults.extra_body)
    if route.upstream_model is not None:
        extra["model"] = route.upstream_model
    if request.stop is not None:
        extra["stop"] = request.stop
    changes["extra_body"] = extra
    try:
        config = defaults.with_options(**changes)
    except InvalidSetting as exc:
        raise ApiError(400, str(exc), param=f"pacore.{exc.setting}") from None
    except ConfigError as exc:
        raise ApiError(400, str(exc), param="pacore") from None
    try:
        check_min_references(config.min_references, config.widths, name="pacore.min_references")
    except InvalidSetting as exc:
        raise ApiError(400, str(exc), param="pacore.min_references") from None
    _check_size(request.n, config, limits)
    return config


def _widths(route: Route, options: PacoreOptions, defaults: PacoreConfig) -> tuple[int, ...]:
    try:
        chosen = choose_widths(options.widths, options.preset, max_width=defaults.max_width)
        if chosen is not None:
            return chosen
    except ConfigError as exc:
        raise ApiError(400, f"pacore.widths: {exc}", param="pacore.widths") from None
    assert route.widths is not None
    return route.widths


def _at_most(name: str, value: int | None, limit: int) -> None:
    """`ApiError` 400 naming the option and the limit when `value` is above it."""
    if value is not None and value > limit:
        raise ApiError(400, f"{name} {value} is above this server's limit of {limit}", param=name)


def _check_size(n: int, config: PacoreConfig, limits: ServeConfig) -> None:
    """The request's whole upstream work within the server's limits: `n`, the rounds,
    the trajectories, and the samples resampling may add to them."""
    _at_most("n", n, limits.max_n)
    if len(config.widths) > limits.max_rounds:
        raise ApiError(
            400,
            f"pacore.widths {list(config.widths)} asks for {len(config.widths)} parallel "
            f"rounds, above this server's limit of {limits.max_rounds}",
            param="pacore.widths",
        )
    trajectories = n * sum(config.all_widths)
    if trajectories > limits.max_trajectories:
        raise ApiError(
            400,
            f"this request asks for {trajectories} trajectories (n {n} x widths "
            f"{list(config.all_widths)}), above this server's limit of "
            f"{limits.max_trajectories}",
            param="pacore.widths",
        )
    samples = worst_samples(n, config)
    if samples > limits.max_samples:
        raise ApiError(
            400,
            f"this request may cost {samples} upstream samples ({trajectories} trajectories "
            f"x (1 + max_resamples {config.max_resamples})), above this server's limit of "
            f"{limits.max_samples}; ask for fewer pacore.max_resamples or trajectories",
            param="pacore.max_resamples",
        )


def worst_samples(n: int, config: PacoreConfig) -> int:
    """The most samples a request can cost: each trajectory once, and when failed ones
    are resampled, each up to `max_resamples` times more."""
    again = config.max_resamples if config.on_failure == "resample" else 0
    return n * sum(config.all_widths) * (1 + again)


def advertised_limits(limits: ServeConfig, defaults: PacoreConfig) -> dict[str, Any]:
    """The request limits as `/v1/models` shows them on each PaCoRe model (`pacore_limits`):
    the largest value each option may take, and the budgets over a whole request."""
    return {
        "n": limits.max_n,
        "max_tokens": limits.max_tokens_limit,
        "max_resamples": limits.max_resamples_limit,
        "rounds": limits.max_rounds,
        "width": defaults.max_width,
        "trajectories": limits.max_trajectories,
        "samples": limits.max_samples,
        "min_references": "at most the smallest width",
        "content": "text only",
    }
