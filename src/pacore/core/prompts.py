"""The synthesis prompt P(x, M) and how it slots into a conversation.

The default template is the one PaCoRe-8B was trained on, reproduced byte for
byte as Jinja2 renders it with default settings. It is built here with plain
string operations (no Jinja2 import on the hot path); a test checks both agree.
A custom template is a Jinja2 string with the same two variables,
`original_prompt` and `ref_responses`, rendered with Jinja2 on demand. It must use
both (a template without the references is no synthesis prompt, and a file such as
`/etc/passwd` has neither), no other, and stay under `MAX_TEMPLATE_BYTES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pacore.errors import ConfigError
from pacore.types import Message

DEFAULT_TEMPLATE = (
    "You are given a problem and a list of reference responses. "
    "Your job is to analyze these references and provide your own response.\n"
    "\n"
    "Original Problem:\n"
    "{{ original_prompt }}\n"
    "\n"
    "Reference Responses:\n"
    "{% for response in ref_responses %}\n"
    "Reference {{ loop.index }}:\n"
    "{{ response }}\n"
    "{% endfor %}\n"
    "\n"
    "Now, based on the original problem and reference responses above, "
    "please provide your own comprehensive solution."
)
"""The published synthesis template (Jinja2 source)."""

_HEAD = (
    "You are given a problem and a list of reference responses. "
    "Your job is to analyze these references and provide your own response.\n"
    "\nOriginal Problem:\n"
)
_TAIL = (
    "\n\nNow, based on the original problem and reference responses above, "
    "please provide your own comprehensive solution."
)

Renderer = Callable[[str, Sequence[str]], str]

TEMPLATE_VARIABLES = ("original_prompt", "ref_responses")
"""The variables a synthesis template is rendered with; a custom one must use both."""
MAX_TEMPLATE_BYTES = 1 << 20
"""The largest template accepted (1 MiB): a synthesis prompt is a few hundred bytes."""


def render_default(original_prompt: str, references: Sequence[str]) -> str:
    """Render DEFAULT_TEMPLATE exactly as Jinja2 would, without Jinja2."""
    parts = [_HEAD, original_prompt, "\n\nReference Responses:\n"]
    for i, ref in enumerate(references, 1):
        parts.append(f"\nReference {i}:\n{ref}\n")
    parts.append(_TAIL)
    return "".join(parts)


def make_renderer(template: str | None) -> Renderer:
    """A renderer for `template`; None or the default template gets the fast path."""
    if template is None or template == DEFAULT_TEMPLATE:
        return render_default
    try:
        import jinja2
        import jinja2.meta
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "a custom template needs Jinja2: pip install 'pacore[templates]'"
        ) from exc
    if len(template) > MAX_TEMPLATE_BYTES or len(template.encode()) > MAX_TEMPLATE_BYTES:
        raise ConfigError(f"the template is larger than {MAX_TEMPLATE_BYTES >> 20} MiB")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    try:
        parsed = env.parse(template)
        _check_variables(jinja2.meta.find_undeclared_variables(parsed) - set(env.globals))
        compiled = env.from_string(parsed)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"template syntax error on line {exc.lineno}: {exc.message}") from exc
    except RecursionError:
        raise ConfigError("the template is nested too deeply to compile") from None

    def render(original_prompt: str, references: Sequence[str]) -> str:
        try:
            return str(
                compiled.render(original_prompt=original_prompt, ref_responses=list(references))
            )
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"template uses an unknown variable: {exc}") from exc
        except Exception as exc:  # a template is code: 1/0, a bad filter argument, ...
            raise ConfigError(f"template failed to render: {type(exc).__name__}: {exc}") from exc

    return render


def _check_variables(used: set[str]) -> None:
    """A template uses both `TEMPLATE_VARIABLES` and nothing else (`ConfigError`)."""
    unknown = sorted(used - set(TEMPLATE_VARIABLES))
    if unknown:
        raise ConfigError(
            f"template uses an unknown variable: {unknown[0]!r} (it has "
            f"{' and '.join(TEMPLATE_VARIABLES)})"
        )
    missing = [name for name in TEMPLATE_VARIABLES if name not in used]
    if missing:
        raise ConfigError(
            f"the template never uses {' or '.join(missing)}: a synthesis template shows "
            "the problem (original_prompt) and the references (ref_responses)"
        )


def problem_slot(messages: Sequence[Message]) -> int:
    """Index of the message that holds the "Original Problem": the last user (or tool) turn."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") in ("user", "tool"):
            return i
    raise ConfigError("the conversation has no user message")


def message_text(message: Message) -> str:
    """The text of a message; content given as a list of text parts is joined."""
    content: Any = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type", "text") == "text"
        ]
        return "".join(texts)
    raise ConfigError(f"unsupported message content of type {type(content).__name__}")


def synthesis_messages(
    messages: Sequence[Message],
    references: Sequence[str],
    render: Renderer = render_default,
) -> list[Message]:
    """The chat input of a round: P(x, M) placed in the problem slot.

    With no references (the first round, M_0 empty) the conversation is sent
    unchanged. Otherwise the last user turn's text is wrapped in the template
    and every earlier turn stays as it is.
    """
    if not references:
        return list(messages)
    slot = problem_slot(messages)
    original = messages[slot]
    rewritten = dict(original)
    rewritten["content"] = render(message_text(original), references)
    out = list(messages)
    out[slot] = rewritten
    return out
