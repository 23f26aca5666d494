"""One record -> problem parser, for every command that reads problems.

`pacore run --input`, `pacore eval --dataset`, the `pacore train` pools and
`pacore view --dataset` all read a record's conversation and id here, so a file one
of them accepts, the others accept the same way:

- the conversation: `messages` or `conversation` (a non-empty list of chat messages,
  each with a string `role` and a `content` that is text or a list of content parts
  whose text parts hold text, with at least one user or tool turn: the problem
  slot), else `question`, `problem` or `prompt` (a non-empty string); a field
  mapping may name the question field (dots reach into objects);
- the id: `id`, `task_id` or `problem_id` (a non-empty string or an integer), else
  a default the caller gives (run: a hash of the conversation; eval and pools: the
  record's position);
- every text must be valid Unicode (a lone surrogate parses as JSON but can never be
  written back as UTF-8).

Errors are one-line `ConfigError`s prefixed with `where` (`file:line`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pacore.errors import ConfigError
from pacore.io.formats import FORMAT_KEY
from pacore.io.jsonl import check_unicode
from pacore.types import Message

QUESTION_FIELDS = ("question", "problem", "prompt")
CHAT_FIELDS = ("messages", "conversation")
ID_FIELDS = ("id", "task_id", "problem_id")
CONVERSATION_FIELDS = (*CHAT_FIELDS, *QUESTION_FIELDS)
"""Fields a record's conversation may come from (kept out of its metadata)."""


def get_path(record: Mapping[str, Any], path: str) -> Any:
    """`record["a"]["b"]` for `a.b`; None when any step is missing."""
    if "." not in path:
        return record.get(path)
    value: Any = record
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def expect_object(record: Any, where: str) -> Mapping[str, Any]:
    """`record` when it is a JSON object, else a `ConfigError`."""
    if not isinstance(record, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def conversation(
    record: Mapping[str, Any], where: str, *, question_field: str | None = None
) -> tuple[tuple[Message, ...], str | None]:
    """The messages to send, and the raw question text when the record gives one."""
    chat = None if question_field else next((f for f in CHAT_FIELDS if f in record), None)
    if chat is not None:
        return chat_messages(record[chat], f"{where}: {chat}"), None
    names = (question_field,) if question_field else QUESTION_FIELDS
    name = next((n for n in names if get_path(record, n) is not None), None)
    if name is None:
        wanted = question_field or "question, problem, prompt, messages or conversation"
        raise ConfigError(f"{where}: no question field (looked for {wanted})")
    text = get_path(record, name)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where}: '{name}' must be a non-empty string")
    check_unicode(f"{where}: '{name}'", text)
    return ({"role": "user", "content": text},), text


def chat_messages(raw: Any, where: str) -> tuple[Message, ...]:
    """A checked list of chat messages (see the module docstring); `where` names it."""
    if not isinstance(raw, list | tuple) or not raw:
        raise ConfigError(f"{where} must be a non-empty list of chat messages")
    for i, message in enumerate(raw):
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise ConfigError(f"{where}[{i}] needs a 'role' and a 'content'")
        if not isinstance(message["role"], str):
            raise ConfigError(f"{where}[{i}].role must be a string")
        _check_content(message["content"], f"{where}[{i}].content")
    if not any(m["role"] in ("user", "tool") for m in raw):
        raise ConfigError(f"{where} has no user message")
    for i, message in enumerate(raw):
        if message["role"] == "user" and not _text(message["content"]).strip():
            raise ConfigError(f"{where}[{i}]: the user turn is empty (no text)")
    check_unicode(where, list(raw))
    return tuple(dict(m) for m in raw)


def _text(content: Any) -> str:
    """A checked content's text (its text parts joined)."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)


def _check_content(content: Any, where: str) -> None:
    """A message's content: text, or a list of parts whose text parts hold text."""
    if isinstance(content, str):
        return
    if isinstance(content, list) and all(
        isinstance(part, Mapping) and isinstance(part.get("text", ""), str) for part in content
    ):
        return
    raise ConfigError(
        f"{where} must be a string or a list of content parts, got {type(content).__name__}"
    )


def record_id(
    record: Mapping[str, Any],
    where: str,
    default: str | Callable[[], str],
    *,
    id_field: str | None = None,
) -> str:
    """The record's id (see the module docstring), else `default` (called when it is a
    function: a hash is computed only for a record without an id)."""
    names = (id_field,) if id_field else ID_FIELDS
    raw = next((get_path(record, n) for n in names if get_path(record, n) is not None), None)
    if raw is None:
        return default if isinstance(default, str) else default()
    if isinstance(raw, str | int) and not isinstance(raw, bool) and str(raw) != "":
        check_unicode(f"{where}: the id", raw)
        return str(raw)
    raise ConfigError(f"{where}: the id must be a non-empty string or an integer")


def metadata(record: Mapping[str, Any], used: tuple[str, ...], where: str) -> dict[str, Any]:
    """The record's other fields (its format marker left out), checked for valid Unicode."""
    rest = {k: v for k, v in record.items() if k not in used and k != FORMAT_KEY}
    for name, value in rest.items():
        check_unicode(f"{where}: field {name!r}", name, value)
    return rest
