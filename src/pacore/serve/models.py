"""The chat-completions request as pacore reads it, and which route a model name takes.

Pydantic lives here, at the HTTP boundary, and nowhere else: a valid request becomes
a `ChatRequest`, then a `PacoreConfig` (a frozen value the engine already knows), and
any invalid one an `ApiError` 400 naming the field (`param`).

Model names:
    pacore-<preset>                  PaCoRe with a preset's widths on the default model
    pacore-<preset>:<upstream-model> the same on a model the upstream serves
    any name + "pacore": {...}       PaCoRe with those settings on that model
    any other name                   passed through to the upstream untouched
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
    """The fields of a chat-completions body that PaCoRe honours; others are ignored."""

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


def parse_request(data: Any) -> ChatRequest:
    """A `ChatRequest` from a parsed JSON body; `ApiError` 400 naming the first bad field."""
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(400, f"{where}: {first['msg']}", param=where) from None
    check_messages(request.messages)
    return request


def check_messages(messages: list[dict[str, Any]]) -> None:
    """Every message has a known role and text content; one is a user (or tool) turn."""
    for i, message in enumerate(messages):
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise ApiError(400, f"messages.{i}.role: unknown role {role!r}", param=f"messages.{i}")
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list) or not all(isinstance(p, dict) for p in content):
            raise ApiError(
                400,
                f"messages.{i}.content: must be a string or a list of content parts",
                param=f"messages.{i}.content",
            )
    if not any(m.get("role") in ("user", "tool") for m in messages):
        raise ApiError(400, "messages: the conversation has no user message", param="messages")


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
                f"unknown preset {preset!r} in model {model!r}; "
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
    if max_tokens is not None and max_tokens > limits.max_tokens_limit:
        raise ApiError(
            400,
            f"max_tokens {max_tokens} is above this server's limit of {limits.max_tokens_limit}",
            param="max_tokens",
        )
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
        raise ApiError(400, str(exc), param="pacore.widths") from None
    assert route.widths is not None
    return route.widths


def _check_size(n: int, config: PacoreConfig, limits: ServeConfig) -> None:
    if n > limits.max_n:
        raise ApiError(400, f"n {n} is above this server's limit of {limits.max_n}", param="n")
    trajectories = n * sum(config.all_widths)
    if trajectories > limits.max_trajectories:
        raise ApiError(
            400,
            f"this request asks for {trajectories} trajectories (n {n} x widths "
            f"{list(config.all_widths)}), above this server's limit of "
            f"{limits.max_trajectories}",
            param="pacore.widths",
        )
