"""Options shared by every command, generated from the config dataclasses.

`PacoreConfig` and `BackendConfig` declare each field's default, bounds and help
once (`pacore.config.setting`); `add_settings` turns those fields into argparse
options and `settings_from` turns the parsed options back into a validated
config. Options that are not config fields (`--preset`, `--template FILE`,
`--keep-truncated`, `--system`, `--quiet`) are written here, once, for all
commands. Nothing past this module sees an argparse namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import stat
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pacore.config import (
    EMBEDDED_DEFAULT_MAX_TOKENS,
    BackendConfig,
    PacoreConfig,
    choose_widths,
)
from pacore.errors import ConfigError, InvalidSetting

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Settings = TypeVar("Settings", bound="DataclassInstance")

_SAMPLING = ("max_tokens", "temperature", "top_p", "seed", "stream")
_PIPELINE = ("compaction", "on_failure", "max_resamples", "min_references", "max_width")


def flag_of(cls: type[Any], name: str) -> str:
    """The command-line flag of a config field: its `flag` metadata or `--field-name`."""
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}[name]
    return str(meta.get("flag") or "--" + name.replace("_", "-"))


def _scalar(annotation: Any) -> Any:
    """The argparse `type` for a field annotation such as `int | None` or a Literal."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _scalar(args[0])
    if typing.get_origin(annotation) is Literal:
        return str
    if typing.get_origin(annotation) is tuple:
        return str
    return annotation


def _metavar(kind: Any, choices: tuple[str, ...] | None) -> str:
    if choices:
        return "|".join(choices)
    return {int: "N", float: "X"}.get(kind, "TEXT")


def _shown(value: Any) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def output_folder(text: str) -> Path:
    """An argparse type for a folder to write in: never an empty path (an unset
    variable would name the current folder, and the output land among the user's files)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty (an unset variable?); name a folder")
    return Path(text)


def output_file(text: str) -> Path:
    """An argparse type for a file to write: neither empty nor ending with a `/` (which
    names a folder: the file would take the folder's name)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty (an unset variable?); name a file")
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"{text} names a folder; name a file in it")
    return Path(text)


def add_settings(group: Any, cls: type[Any], *, only: tuple[str, ...] = ()) -> None:
    """Add to an argparse group one option per command-line field of `cls` (or of `only`)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli") or (only and f.name not in only):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = "" if default in (None, ()) else f" (default: {_shown(default)})"
        text = f"{meta['help']}{shown}"
        flag = flag_of(cls, f.name)
        kind = _scalar(hints[f.name])
        metavar = meta.get("metavar") or _metavar(kind, meta.get("choices"))
        if flag == "--no-n":
            group.add_argument(flag, dest=f.name, action="store_const", const=False, help=text)
        elif kind is bool:
            group.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        elif typing.get_origin(hints[f.name]) is tuple:
            group.add_argument(flag, dest=f.name, action="append", metavar=metavar, help=text)
        else:
            group.add_argument(flag, dest=f.name, type=kind, metavar=metavar, help=text)


def settings_from(args: argparse.Namespace, cls: type[Settings], **values: Any) -> Settings:
    """A validated config from the options the user gave; the rest keep their defaults.

    A field out of bounds is reported under its flag (`--top-p must be above 0`).
    """
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if f.metadata.get("cli") and getattr(args, f.name, None) is not None
    }
    try:
        return cls(**{**given, **values})
    except InvalidSetting as exc:
        message = str(exc)
        if message.startswith(exc.setting):
            message = flag_of(cls, exc.setting) + message[len(exc.setting) :]
        raise ConfigError(message) from None


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """The backend, sampling and pipeline options of every command that runs the engine."""
    backend = parser.add_argument_group("backend")
    add_settings(backend, BackendConfig)
    add_settings(backend, PacoreConfig, only=("concurrency",))
    add_settings(parser.add_argument_group("sampling"), PacoreConfig, only=_SAMPLING)
    pipeline = parser.add_argument_group("pipeline")
    add_settings(pipeline, PacoreConfig, only=_PIPELINE)
    pipeline.add_argument("--template", type=Path, metavar="FILE", help=_TEMPLATE_HELP)
    pipeline.add_argument(
        "--keep-truncated",
        action="store_true",
        help="pass on trajectories cut by --max-tokens (they are dropped by default)",
    )
    pipeline.add_argument(
        "--system", metavar="TEXT", help="a system message for problems that have none of their own"
    )
    pipeline.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


_TEMPLATE_HELP = "a Jinja2 synthesis template with the variables original_prompt and ref_responses"


def add_width_options(parser: argparse.ArgumentParser) -> None:
    """--preset or --widths (one of them), the final width-1 round being implicit."""
    group = parser.add_argument_group("widths (the final width-1 round is implicit)")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--preset", help="low=[4], medium=[16], high=[32,4] (default: low)")
    choice.add_argument("--widths", help="comma-separated widths, e.g. 32,4")


def backend_config(args: argparse.Namespace, *, used: bool = True) -> BackendConfig:
    """The backend the options name, its GGUF file (if one is given) checked now.
    `used=False` (a report from results already computed) checks the values only: no
    option is refused for the backend it would not apply to, since none is reached."""
    config = settings_from(args, BackendConfig)
    if not used:
        return config
    _refuse_ignored(args, config)
    if config.embedded and config.model_path is not None:
        from pacore.backends.embedded import check_gguf

        check_gguf(config.model_path)
    return config


_EMBEDDED_ONLY = ("model_path", "slots")


def _refuse_ignored(args: argparse.Namespace, config: BackendConfig) -> None:
    """Refuse a backend option the chosen backend would ignore: the embedded model takes
    only --model-path and --slots; a server takes every other one."""
    if config.embedded:
        wrong = [
            flag_of(BackendConfig, f.name)
            for f in dataclasses.fields(BackendConfig)
            if f.metadata.get("cli") and f.name not in ("backend", *_EMBEDDED_ONLY)
            if getattr(args, f.name, None) is not None  # --no-n is given as False
        ]
        if wrong:
            raise ConfigError(f"{wrong[0]} is for a server (--backend URL), not the embedded model")
    elif getattr(args, "slots", None) is not None:
        raise ConfigError("--slots is for the embedded backend, not a server")


def engine_config(args: argparse.Namespace, backend: BackendConfig | None) -> PacoreConfig:
    """The engine config the options describe, its template read and checked now;
    `backend` None when none is used (a report): no backend's defaults apply."""
    max_width = getattr(args, "max_width", None) or PacoreConfig.max_width
    widths = choose_widths(
        getattr(args, "widths", None), getattr(args, "preset", None), max_width=max_width
    )
    values: dict[str, Any] = {}
    if widths is not None:
        values["widths"] = widths
    if args.concurrency is not None:
        values["concurrency"] = args.concurrency
    if args.keep_truncated:
        values["truncated"] = "keep"
    if args.template is not None:
        values["template"] = read_template(args.template)
    embedded = backend is not None and backend.embedded
    if args.max_tokens is None and embedded:
        values["max_tokens"] = EMBEDDED_DEFAULT_MAX_TOKENS
    if embedded and getattr(args, "stream", False):
        raise ConfigError(
            "--stream is for a server (--backend URL): the embedded model streams always"
        )
    return settings_from(args, PacoreConfig, **values)


def read_template(path: Path) -> str:
    """A template file's text, compiled and rendered once so every error shows now.

    Only a regular file is read (a FIFO would hang, `/dev/zero` never ends), and at most
    `MAX_TEMPLATE_BYTES` of it: a larger file is refused before it is read whole.
    """
    from pacore.core.prompts import MAX_TEMPLATE_BYTES, make_renderer

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read template ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{path}: the template is not a regular file")
        data = b""
        while len(data) <= MAX_TEMPLATE_BYTES:
            chunk = os.read(fd, MAX_TEMPLATE_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read template ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_TEMPLATE_BYTES:
        raise ConfigError(f"{path}: the template is larger than {MAX_TEMPLATE_BYTES >> 20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the template is not UTF-8 text") from None
    try:
        make_renderer(text)("Q", ["R"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return text
