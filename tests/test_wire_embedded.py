"""The embedded backend reads llama.cpp's chunks through the wire layer: synthetic
chunks (no model needed), spoilt by the fake server's `MALFORMATIONS`, give the same
named failures and the same distrust of impossible usage as the HTTP backend."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pacore.backends.embedded import _StreamReader
from pacore.backends.openai_compat.usage import estimate_tokens, prompt_size
from tests.fake_server import MALFORMATIONS
from tests.test_wire_malformed import DISTRUSTED, MALFORMED

TEXTS = ["The answer is 42.", "It is 42."]
BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "What is six times seven?"}]}


def llama_chunks() -> list[dict[str, Any]]:
    """Two choices as llama.cpp streams them: a usage chunk right after each finish."""

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"choices": [{"index": index, "delta": delta, "finish_reason": finish}]}

    def usage(tokens: int) -> dict[str, Any]:
        return {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": tokens}}

    return [
        chunk(0, {"role": "assistant", "content": ""}),
        chunk(1, {"role": "assistant", "content": ""}),
        chunk(0, {"content": TEXTS[0]}),
        chunk(1, {"content": TEXTS[1]}),
        chunk(1, {}, "stop"),
        usage(3),
        chunk(0, {}, "stop"),
        usage(4),
    ]


def read(name: str | None) -> _StreamReader:
    progress: list[int] = []
    reader = _StreamReader(2, progress.append, [threading.Event()], body=BODY)
    for c in llama_chunks():
        if name is not None:
            MALFORMATIONS[name](c)
        if reader(c):
            break
    return reader


def test_good_chunks_are_counted_per_choice() -> None:
    first, second = read(None).completions(0.0, "embedded:m")
    assert (first.text, second.text) == tuple(TEXTS)
    assert (first.usage.completion_tokens, second.usage.completion_tokens) == (4, 3)
    assert not first.usage.estimated
    assert not second.usage.estimated


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_chunk_fails_the_request_naming_its_field(name: str) -> None:
    out = read(name).completions(0.0, "embedded:m")
    assert len(out) == 2
    for c in out:
        assert c.error_type == "MalformedReply"
        assert c.retryable
        assert c.error is not None
        field = MALFORMED[name][1]  # in a stream, [i] is the choice's index: 0 or 1 here
        assert any(
            f"malformed reply from the server: {f}" in c.error
            for f in (field, field.replace("[0]", "[1]"))
        )


@pytest.mark.parametrize("name", sorted(DISTRUSTED))
def test_an_impossible_usage_chunk_is_counted_from_the_text(name: str) -> None:
    for c, text in zip(read(name).completions(0.0, "e"), TEXTS, strict=True):
        assert c.error is None
        assert c.text == text
        assert c.usage.estimated
        assert c.usage.completion_tokens == estimate_tokens(text)
        assert c.usage.prompt_tokens == ((prompt_size(BODY["messages"]) or 0) + 3) // 4


def test_text_parts_are_joined() -> None:
    assert [c.text for c in read("content_parts").completions(0.0, "e")] == TEXTS


def test_a_choice_index_beyond_the_request_is_named() -> None:
    reader = _StreamReader(1, None, [threading.Event()])
    assert reader({"choices": [{"index": 1, "delta": {"content": "x"}}]}) is True
    (c,) = reader.completions(0.0, "e")
    assert c.error_type == "MalformedReply"
    assert c.error is not None
    assert "only 1 choices were asked" in c.error
