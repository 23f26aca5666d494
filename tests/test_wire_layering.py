"""No module outside the wire layer parses OpenAI JSON.

Every module is parsed with `ast`. Reading a field of an OpenAI reply (`x.get("choices")`,
`x["usage"]`, ...) is the wire layer's alone (`backends/openai_compat/wire.py`), and
the modules that receive upstream bytes (the HTTP transport and client, the readiness
probe, serve's passthrough, the embedded backend) decode no JSON themselves.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "pacore"
WIRE = "backends/openai_compat/wire.py"
REPLY_FIELDS = frozenset(
    {
        "choices",
        "delta",
        "finish_reason",
        "reasoning_content",
        "usage",
        "prompt_tokens",
        "completion_tokens",
        "completion_tokens_details",
        "reasoning_tokens",
        "owned_by",
        "max_model_len",
    }
)
NOT_REPLIES = {
    ("cli/options.py", "choices"): "argparse's choices",
    ("config.py", "choices"): "a setting's allowed values",
    ("view/data.py", "usage"): "pacore's own trajectory records",
    ("view/data.py", "completion_tokens"): "pacore's own trajectory records",
}
"""Reads of the same names that are not of an OpenAI reply, and what they read."""
UPSTREAM_EDGE = (
    "backends/openai_compat/client.py",
    "backends/openai_compat/transport.py",
    "backends/openai_compat/readiness.py",
    "backends/openai_compat/usage.py",
    "backends/embedded.py",
    "serve/passthrough.py",
)
"""The modules upstream answers pass through on their way to the wire layer."""


def _key_read(node: ast.AST) -> object:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ):
        return node.args[0].value
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.ctx, ast.Load)
        and isinstance(node.slice, ast.Constant)
    ):
        return node.slice.value
    return None


def _modules() -> list[tuple[str, ast.AST]]:
    return [
        (path.relative_to(SRC).as_posix(), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(SRC.rglob("*.py"))
    ]


def test_only_the_wire_layer_reads_openai_reply_fields() -> None:
    found = []
    for name, tree in _modules():
        if name == WIRE:
            continue
        for node in ast.walk(tree):
            key = _key_read(node)
            if key in REPLY_FIELDS and (name, key) not in NOT_REPLIES:
                found.append(f"{name}:{getattr(node, 'lineno', '?')} reads {key!r}")
    assert found == []


def test_the_upstream_edge_decodes_no_json_itself() -> None:
    modules = dict(_modules())
    found = []
    for name in UPSTREAM_EDGE:
        for node in ast.walk(modules[name]):
            if isinstance(node, ast.Attribute) and node.attr in ("loads", "json"):
                found.append(f"{name}:{node.lineno} calls .{node.attr}")
    assert found == []
