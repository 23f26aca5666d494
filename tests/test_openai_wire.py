"""The wire format and the token accounting of the OpenAI-compatible backend, without I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pacore.backends.openai_compat.usage import build_completions, estimate_tokens, split_tokens
from pacore.backends.openai_compat.wire import (
    SSEDecoder,
    StreamAssembler,
    Tokens,
    UsageReport,
    WireChoice,
    error_message,
    parse_response,
    request_body,
)
from pacore.errors import ConnectionFailed, MalformedReply, ServerError
from pacore.types import SamplingParams

MSGS = [{"role": "user", "content": "hi"}]


def event(index: int | None = None, finish: str | None = None, **delta: str) -> dict[str, Any]:
    """A chat.completion.chunk with one choice's delta (or no choice when `index` is None)."""
    if index is None:
        return {"object": "chat.completion.chunk", "choices": []}
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    return {"object": "chat.completion.chunk", "choices": [choice]}


def sse(*events: Any) -> bytes:
    """The bytes of a stream carrying `events` (a str is sent as is, e.g. "[DONE]")."""
    return b"".join(
        b"data: " + (e.encode() if isinstance(e, str) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    )


# -- requests ----------------------------------------------------------------------


def test_request_body() -> None:
    """Sampling settings become fields; streaming asks for usage; extra_body wins."""
    plain = request_body("m", MSGS, SamplingParams())
    assert plain == {"model": "m", "messages": MSGS, "temperature": 1.0, "top_p": 1.0}
    params = SamplingParams(
        temperature=0.6, max_tokens=9, seed=3, stream=True, extra_body={"top_k": 20, "top_p": 0.9}
    )
    body = request_body("m", MSGS, params)
    assert body["max_tokens"] == 9
    assert body["seed"] == 3
    assert body["top_k"] == 20
    assert body["top_p"] == 0.9
    assert body["temperature"] == 0.6
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


# -- whole answers -----------------------------------------------------------------


def test_parse_response_orders_choices_and_reads_both_reasoning_fields() -> None:
    """Choices come back in index order, with `reasoning_content` or vLLM's `reasoning`."""
    raw = {
        "choices": [
            {"index": 1, "message": {"content": "b", "reasoning": "rb"}, "finish_reason": "length"},
            {"index": 0, "message": {"content": "a", "reasoning_content": "ra"},
             "finish_reason": "stop"},
            {"index": 2, "message": {"content": None}, "finish_reason": "stop"},
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5},
    }  # fmt: skip
    choices, usage = parse_response(json.dumps(raw).encode())
    assert choices == [
        WireChoice("a", "ra", "stop"),
        WireChoice("b", "rb", "length"),
        WireChoice("", None, "stop"),
    ]
    assert usage == UsageReport(whole=Tokens(prompt=3, completion=5))
    _, no_usage = parse_response(b'{"choices": [], "usage": "n/a"}')
    assert no_usage == UsageReport(distrusted=True)  # sent, but not a usage: not used


@pytest.mark.parametrize("raw", [b"<html>", b"[]", b'{"choices": 3}', b'{"object": "x"}'])
def test_parse_response_rejects_what_is_not_a_completion(raw: bytes) -> None:
    """A 200 that is not a chat completion is a (retryable) server error."""
    with pytest.raises(ServerError, match="malformed reply"):
        parse_response(raw)


def test_error_message() -> None:
    """The server's message is found in the usual error shapes, and cut short."""
    assert error_message('{"error": {"message": "bad"}}') == "bad"
    assert error_message('{"detail": "missing field"}') == "missing field"
    assert error_message('{"error": "plain"}') == "plain"
    assert error_message("  <html>bad gateway</html> ") == "<html>bad gateway</html>"
    assert len(error_message("x" * 1000)) == 300


# -- streams -----------------------------------------------------------------------


def test_decoder_handles_lines_split_across_reads() -> None:
    """Events are cut out of whatever reads the network delivers; nothing after [DONE]."""
    data = sse(event(0, content="a"), event(0, "stop"), "[DONE]", event(0, content="late"))
    decoder = SSEDecoder()
    events = []
    for i in range(0, len(data), 7):
        events += decoder.feed(data[i : i + 7])
    assert events == [event(0, content="a"), event(0, "stop")]
    assert decoder.done
    assert decoder.feed(sse(event(0, content="more"))) == []


def test_decoder_skips_comments_and_rejects_bad_json() -> None:
    """SSE comments and other fields are ignored; a data line that is not JSON is an error."""
    decoder = SSEDecoder()
    assert decoder.feed(b': keep-alive\n\nevent: ping\ndata: {"a": 1}\n\n') == [{"a": 1}]
    with pytest.raises(MalformedReply, match="stream chunk is not JSON"):
        decoder.feed(b"data: {not json\n\n")


def test_assembler_interleaved_choices_with_reasoning_and_usage() -> None:
    """n > 1: deltas go to their index; usage comes in its own chunk; deltas are counted."""
    assembler = StreamAssembler()
    events = [
        event(0, role="assistant", content=""),
        event(1, role="assistant", content=""),
        event(1, reasoning_content="think "),
        event(0, reasoning="ponder"),
        event(1, reasoning_content="more"),
        event(0, content="A"),
        event(1, content="B"),
        event(0, content="A", finish="stop"),
        event(1, "length"),
        {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 6}},
    ]
    deltas = [assembler.feed(e) for e in events]
    assert deltas == [0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    assert assembler.choices() == [
        WireChoice("AA", "ponder", "stop"),
        WireChoice("B", "think more", "length"),
    ]
    assert assembler.usage == Tokens(prompt=4, completion=6)


def test_assembler_keeps_a_finish_reason_once_given() -> None:
    """A later chunk with a null finish_reason (e.g. vLLM's usage chunk) does not undo it."""
    assembler = StreamAssembler()
    for e in (event(0, content="x"), event(0, "stop"), event(0), {"usage": None}):
        assembler.feed(e)
    assert assembler.choices() == [WireChoice("x", None, "stop")]
    assert assembler.usage is None


def test_assembler_rejects_a_choice_that_never_finished() -> None:
    """A stream that ends with a choice unfinished was cut: a retryable failure, not `ok`."""
    assembler = StreamAssembler()
    for e in (event(0, content="done"), event(1, content="half"), event(0, "stop")):
        assembler.feed(e)
    with pytest.raises(ConnectionFailed, match="choice 1") as caught:
        assembler.choices()
    assert caught.value.retryable


def test_assembler_of_an_empty_stream_has_no_choices() -> None:
    """A stream with no choice at all yields none (the client reports that separately)."""
    assembler = StreamAssembler()
    assembler.feed(event())
    assert assembler.choices() == []


def test_assembler_raises_an_error_event() -> None:
    """An error sent mid-stream is a server error carrying the server's message."""
    with pytest.raises(ServerError, match="overloaded"):
        StreamAssembler().feed({"error": {"message": "overloaded", "code": 503}})


# -- token accounting ----------------------------------------------------------------


def test_split_tokens_is_exact_and_proportional() -> None:
    """Largest-remainder split: the parts add up to the total."""
    assert split_tokens(10, [1, 1]) == [5, 5]
    assert split_tokens(10, [3, 1]) == [8, 2]
    assert split_tokens(7, [0, 0, 0]) == [3, 2, 2]
    assert split_tokens(5, []) == []
    for total, weights in ((101, [7, 13, 29]), (3, [1, 1, 1, 1]), (0, [4, 2])):
        assert sum(split_tokens(total, weights)) == total


def test_one_choice_gets_the_usage_exactly() -> None:
    """With one choice the reported usage is that choice's, not estimated."""
    usage = {"prompt_tokens": 5, "completion_tokens": 9,
             "completion_tokens_details": {"reasoning_tokens": 4}}  # fmt: skip
    (c,) = build_completions([WireChoice("abc", "r", "stop")], usage, 0.5, "http://x").completions
    assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (5, 9)
    assert c.usage.reasoning_tokens == 4
    assert not c.usage.estimated
    assert (c.text, c.reasoning, c.finish_reason, c.latency_s, c.endpoint) == (
        "abc", "r", "stop", 0.5, "http://x")  # fmt: skip


def test_several_choices_share_the_usage() -> None:
    """With n > 1 the totals are split by text length and marked estimated."""
    choices = [WireChoice("a" * 30, "r" * 10, "stop"), WireChoice("b" * 10, None, "stop")]
    usage = {"prompt_tokens": 5, "completion_tokens": 20,
             "completion_tokens_details": {"reasoning_tokens": 6}}  # fmt: skip
    first, second = build_completions(choices, usage, 0.0, "e").completions
    assert (first.usage.completion_tokens, second.usage.completion_tokens) == (16, 4)
    assert (first.usage.reasoning_tokens, second.usage.reasoning_tokens) == (6, 0)
    assert first.usage.estimated
    assert second.usage.estimated
    assert first.usage.prompt_tokens == second.usage.prompt_tokens == 5


def test_no_usage_is_estimated_from_the_text() -> None:
    """A server that reports nothing gets about four characters a token, never zero."""
    (c,) = build_completions([WireChoice("x" * 17, None, "stop")], None, 0.0, "e").completions
    assert c.usage.completion_tokens == estimate_tokens("x" * 17) == 5
    assert c.usage.estimated
    assert c.usage.reasoning_tokens is None


def chunk(index: int | None, text: str = "", finish: str | None = None) -> dict[str, object]:
    """One stream event: a delta (and maybe a finish) for choice `index`."""
    if index is None:
        return {"choices": []}
    return {"choices": [{"index": index, "delta": {"content": text}, "finish_reason": finish}]}


def usage_event(tokens: int) -> dict[str, object]:
    """A usage chunk as llama.cpp and vLLM send it: no choices, one usage."""
    return {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": tokens}}


def test_a_usage_chunk_after_each_finish_counts_each_choice_exactly() -> None:
    """llama.cpp streams one usage per choice right after that choice's finish."""
    assembler = StreamAssembler()
    for event in [chunk(0, "aaaa"), chunk(1, "bb"), chunk(1, "", "stop"), usage_event(3),
                  chunk(0, "aa"), chunk(0, "", "length"), usage_event(8)]:  # fmt: skip
        assembler.feed(event)
    report = assembler.report()
    assert report.per_choice is not None
    assert report.per_choice == {0: Tokens(7, 8), 1: Tokens(7, 3)}
    counted = build_completions(assembler.choices(), report, 0.0, "e", max_tokens=8)
    assert counted.trusted
    assert [c.usage.completion_tokens for c in counted.completions] == [8, 3]
    assert not any(c.usage.estimated for c in counted.completions)
    assert assembler.deltas == 3


def test_one_usage_chunk_for_several_choices_is_the_whole_requests() -> None:
    """vLLM and OpenAI send one usage for all choices, at the end."""
    assembler = StreamAssembler()
    for event in [chunk(0, "aaaa"), chunk(1, "bbbb"), chunk(0, "", "stop"),
                  chunk(1, "", "stop"), usage_event(10)]:  # fmt: skip
        assembler.feed(event)
    report = assembler.report()
    assert report == UsageReport(whole=Tokens(prompt=7, completion=10))
    counted = build_completions(assembler.choices(), report, 0.0, "e")
    assert counted.trusted
    assert sum(c.usage.completion_tokens for c in counted.completions) == 10
    assert all(c.usage.estimated for c in counted.completions)


@pytest.mark.parametrize(
    ("finishes", "max_tokens", "total", "trusted"),
    [
        (["length", "length", "length"], 40, 40, False),  # llama.cpp: the first choice only
        (["length", "length", "length"], 40, 120, True),
        (["length", "stop"], 40, 41, True),
        (["length", "stop"], 40, 40, False),
        (["stop", "stop"], None, 2, True),  # nothing proves it short
        (["length", "length"], None, 2, True),  # no cap asked: a length may be the context's
    ],
)
def test_a_whole_usage_that_cannot_cover_its_choices_is_not_trusted(
    finishes: list[str], max_tokens: int | None, total: int, trusted: bool
) -> None:
    choices = [WireChoice("some text", None, f) for f in finishes]
    report = UsageReport(whole=Tokens(prompt=3, completion=total))
    counted = build_completions(choices, report, 0.0, "e", max_tokens=max_tokens)
    assert counted.trusted is trusted
    if not trusted:  # measured from the text instead, and said to be an estimate
        assert all(
            c.usage.completion_tokens == estimate_tokens("some text") for c in counted.completions
        )
        assert all(c.usage.estimated for c in counted.completions)


def test_a_cut_stream_says_how_many_tokens_it_had_streamed() -> None:
    assembler = StreamAssembler()
    for event in [chunk(0, "a"), chunk(0, "b"), chunk(1, "c")]:
        assembler.feed(event)
    with pytest.raises(ConnectionFailed, match="no finish_reason") as info:
        assembler.choices()
    assert info.value.partial_tokens == 3
