"""The synthesis prompt: the published template, byte for byte."""

from __future__ import annotations

import random

import jinja2
import pytest

from pacore.core.prompts import (
    DEFAULT_TEMPLATE,
    make_renderer,
    render_default,
    synthesis_messages,
)
from pacore.errors import ConfigError
from pacore.types import Message

PUBLISHED_EXAMPLE = (
    "You are given a problem and a list of reference responses. Your job is to analyze these "
    "references and provide your own response.\n\nOriginal Problem:\nQ?\n\nReference Responses:"
    "\n\nReference 1:\nA1\n\nReference 2:\nA2\n\n\nNow, based on the original problem and "
    "reference responses above, please provide your own comprehensive solution."
)

# The template exactly as the paper's authors published it (PACORE.md), as a file would hold it.
PUBLISHED_SOURCE = """You are given a problem and a list of reference responses. Your job is to analyze these references and provide your own response.

Original Problem:
{{ original_prompt }}

Reference Responses:
{% for response in ref_responses %}
Reference {{ loop.index }}:
{{ response }}
{% endfor %}

Now, based on the original problem and reference responses above, please provide your own comprehensive solution."""  # noqa: E501


def jinja_render(problem: str, refs: list[str]) -> str:
    rendered: str = jinja2.Template(PUBLISHED_SOURCE).render(
        original_prompt=problem, ref_responses=refs
    )
    return rendered


def test_default_template_is_the_published_source() -> None:
    assert DEFAULT_TEMPLATE == PUBLISHED_SOURCE


def test_published_example_byte_for_byte() -> None:
    assert jinja_render("Q?", ["A1", "A2"]) == PUBLISHED_EXAMPLE
    assert render_default("Q?", ["A1", "A2"]) == PUBLISHED_EXAMPLE


@pytest.mark.parametrize(
    ("problem", "refs"),
    [
        ("Q", ["only one"]),
        ("multi\nline\n\nproblem  ", ["  leading space", "trailing newline\n", "\n"]),
        ("braces {{ x }} and {% raw %}", ["{{ not a variable }}", "$\\boxed{\\frac{1}{2}}$"]),
        ("unicode: 参考 ∑", ["Ref 1 参考", "<think>x</think>y"]),
        ("", ["empty problem"]),
    ],
)
def test_fast_renderer_matches_jinja(problem: str, refs: list[str]) -> None:
    assert render_default(problem, refs) == jinja_render(problem, refs)


def test_fast_renderer_matches_jinja_on_random_text() -> None:
    rng = random.Random(7)
    alphabet = "ab \n{}%#<>/\\$参"
    for _ in range(200):
        problem = "".join(rng.choice(alphabet) for _ in range(rng.randrange(30)))
        refs = [
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(30)))
            for _ in range(rng.randrange(1, 6))
        ]
        assert render_default(problem, refs) == jinja_render(problem, refs)


def test_custom_template_renders_with_jinja() -> None:
    render = make_renderer("P={{ original_prompt }}|{{ ref_responses | join(',') }}")
    assert render("x", ["a", "b"]) == "P=x|a,b"
    assert make_renderer(DEFAULT_TEMPLATE) is render_default
    assert make_renderer(None) is render_default


def test_bad_custom_templates_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="syntax"):
        make_renderer("{% for x in %}")
    with pytest.raises(ConfigError, match="unknown variable: 'nope'"):
        make_renderer("{{ original_prompt }}{{ ref_responses }}{{ nope }}")
    render = make_renderer("{{ original_prompt }}{{ ref_responses }}{{ 1/0 }}")
    with pytest.raises(ConfigError, match="failed to render: ZeroDivisionError"):
        render("x", ["a"])


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("root:x:0:0:root:/root:/bin/bash\n", "never uses original_prompt or ref_responses"),
        ("{{ original_prompt }}", "never uses ref_responses"),
        ("{% for r in ref_responses %}{{ r }}{% endfor %}", "never uses original_prompt"),
        ("{{ original_prompt }} {{ references }}", "unknown variable: 'references'"),
        ("{{ original_prompt }}{{ ref_responses }}" + " " * (1 << 20), "larger than 1 MiB"),
        ("{{ original_prompt }}{{ ref_responses }}" + "é" * (1 << 19), "larger than 1 MiB"),
    ],
)
def test_a_custom_template_uses_both_variables_and_no_other(template: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_renderer(template)


def test_loops_filters_and_globals_are_not_variables() -> None:
    render = make_renderer(
        "{{ original_prompt | upper }}{% for r in ref_responses %}{{ loop.index }}{{ r }}"
        "{% endfor %}{% for i in range(2) %}.{% endfor %}"
    )
    assert render("q", ["a", "b"]) == "Q1a2b.."


def test_empty_messages_bypass_the_template() -> None:
    convo = [{"role": "user", "content": "What is 2+2?"}]
    assert synthesis_messages(convo, []) == convo


def test_multi_turn_last_user_message_fills_the_slot() -> None:
    convo = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "Q?"},
    ]
    out = synthesis_messages(convo, ["A1", "A2"])
    assert out[:3] == convo[:3]
    assert out[3] == {"role": "user", "content": PUBLISHED_EXAMPLE}
    assert convo[3]["content"] == "Q?"  # the input is not mutated


def test_tool_observation_is_the_problem_slot() -> None:
    convo: list[Message] = [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": "", "tool_calls": []},
        {"role": "tool", "content": "Q?", "tool_call_id": "1"},
    ]
    out = synthesis_messages(convo, ["A1", "A2"])
    assert out[2]["role"] == "tool"
    assert out[2]["tool_call_id"] == "1"
    assert out[2]["content"] == PUBLISHED_EXAMPLE


def test_list_content_parts_are_joined() -> None:
    convo = [
        {"role": "user", "content": [{"type": "text", "text": "Q"}, {"type": "text", "text": "?"}]}
    ]
    assert synthesis_messages(convo, ["A1", "A2"])[0]["content"] == PUBLISHED_EXAMPLE


def test_conversation_without_user_turn_is_rejected() -> None:
    with pytest.raises(ConfigError, match="no user message"):
        synthesis_messages([{"role": "system", "content": "x"}], ["a"])
