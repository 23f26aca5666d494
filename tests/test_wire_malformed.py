"""Malformed 200 replies, field by field: the wire layer names what is wrong, the backend
fails only that request's samples (retryably), text parts are joined, and an impossible
usage is distrusted and counted from the text.

The cases are the fake server's own `MALFORMATIONS`, applied here to a reply and to a
stream without a server, then served by the fake server to the HTTP backend.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from pacore.backends.openai_compat import OpenAIBackend
from pacore.backends.openai_compat.usage import build_completions, estimate_tokens, prompt_size
from pacore.backends.openai_compat.wire import (
    MAX_COUNT,
    SSEDecoder,
    StreamAssembler,
    Tokens,
    UsageReport,
    WireChoice,
    error_message,
    listed_models,
    logged_usage,
    parse_response,
    read_usage,
)
from pacore.errors import MalformedReply
from pacore.types import SamplingParams
from tests.conftest import FakeSleep
from tests.fake_server import MALFORMATIONS, FakeConfig, FakeServer

TEXT = "The answer is 42."
USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}

MALFORMED: dict[str, tuple[str, str]] = {
    # name: the field named for a whole answer, and for a stream
    "content_int": ("choices[0].message.content", "chunk.choices[0].delta.content"),
    "content_dict": ("choices[0].message.content", "chunk.choices[0].delta.content"),
    "reasoning_int": (
        "choices[0].message.reasoning_content",
        "chunk.choices[0].delta.reasoning_content",
    ),
    "reasoning_list": (
        "choices[0].message.reasoning_content",
        "chunk.choices[0].delta.reasoning_content",
    ),
    "choices_dict": ("choices", "chunk.choices"),
    "choices_str": ("choices", "chunk.choices"),
    "choice_str": ("choices[0]", "chunk.choices[]"),
    "message_str": ("choices[0].message", "chunk.choices[0].delta"),
    "index_str": ("choices[0].index", "chunk.choices[].index"),
    "index_negative": ("choices[0].index", "chunk.choices[].index"),
    "index_huge": ("choices[0].index", "chunk.choices[].index"),
    "finish_int": ("choices[0].finish_reason", "chunk.choices[0].finish_reason"),
    "finish_list": ("choices[0].finish_reason", "chunk.choices[0].finish_reason"),
}
DISTRUSTED = {
    "usage_str",
    "usage_count_str",
    "usage_negative",
    "usage_float",
    "usage_nan",
    "usage_inf",
    "usage_bool",
    "usage_huge",
    "prompt_absurd",
    "prompt_negative",
    "reasoning_tokens_negative",
}
WELL_FORMED = {"content_parts"}


def test_every_malformation_has_an_expected_outcome() -> None:
    assert set(MALFORMATIONS) == set(MALFORMED) | DISTRUSTED | WELL_FORMED


def whole(name: str | None) -> bytes:
    """A whole answer of one choice, spoilt as `name` says."""
    reply: dict[str, Any] = {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": TEXT},
                "finish_reason": "stop",
            }
        ],
        "usage": dict(USAGE),
    }
    if name is not None:
        MALFORMATIONS[name](reply)
    return json.dumps(reply).encode()


def stream(name: str | None) -> bytes:
    """The bytes of a streamed answer of one choice, each chunk spoilt as `name` says."""

    def chunk(delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return {"object": "chat.completion.chunk", "choices": choices, "usage": None}

    usage = chunk(None)
    usage["usage"] = dict(USAGE)
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "The answer"}),
        chunk({"content": " is 42."}),
        chunk({}, "stop"),
        usage,
    ]
    out = b""
    for c in chunks:
        if name is not None:
            MALFORMATIONS[name](c)
        out += b"data: " + json.dumps(c).encode() + b"\n\n"
    return out + b"data: [DONE]\n\n"


def assembled(raw: bytes) -> tuple[list[WireChoice], UsageReport]:
    assembler = StreamAssembler(n=1)
    for event in SSEDecoder().feed(raw):
        assembler.feed(event)
    return assembler.choices(), assembler.report()


# -- the parser --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_whole_answer_names_its_field(name: str) -> None:
    with pytest.raises(MalformedReply) as caught:
        parse_response(whole(name), 1)
    assert caught.value.field == MALFORMED[name][0]
    assert caught.value.retryable
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"malformed reply from the server: {MALFORMED[name][0]} ")


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_stream_names_its_field(name: str) -> None:
    with pytest.raises(MalformedReply) as caught:
        assembled(stream(name))
    assert caught.value.field == MALFORMED[name][1]
    assert caught.value.retryable


@pytest.mark.parametrize("form", [whole, stream])
def test_text_parts_are_joined(form: Any) -> None:
    parse = parse_response if form is whole else assembled
    assert (
        parse(form("content_parts"))[0] == parse(form(None))[0] == [WireChoice(TEXT, None, "stop")]
    )


@pytest.mark.parametrize("name", sorted(DISTRUSTED))
@pytest.mark.parametrize("form", [whole, stream])
def test_an_impossible_usage_is_distrusted_and_counted_from_the_text(form: Any, name: str) -> None:
    parse = parse_response if form is whole else assembled
    choices, report = parse(form(name))
    assert choices == [WireChoice(TEXT, None, "stop")]
    assert report.whole is None
    assert report.distrusted
    messages = [{"role": "user", "content": "What is six times seven?"}]
    (c,) = build_completions(
        choices, report, 0.0, "e", prompt_chars=prompt_size(messages)
    ).completions
    assert c.usage.estimated
    assert c.usage.completion_tokens == estimate_tokens(TEXT)
    assert c.usage.prompt_tokens == ((prompt_size(messages) or 0) + 3) // 4
    assert c.usage.reasoning_tokens is None


def test_a_good_usage_is_used_as_sent() -> None:
    for form, parse in ((whole, parse_response), (stream, assembled)):
        _, report = parse(form(None))
        assert report == UsageReport(whole=Tokens(5, 4))


@pytest.mark.parametrize(
    "value",
    [-1, 1.0, 1.5, "7", True, None, float("nan"), float("inf"), MAX_COUNT + 1, 2**63, 2**64],
)
def test_read_usage_refuses_every_impossible_count(value: Any) -> None:
    usage = read_usage({"prompt_tokens": 3, "completion_tokens": value})
    assert usage == (Tokens(3, None) if value is None else None)
    assert read_usage({"prompt_tokens": value, "completion_tokens": 3}) == (
        Tokens(None, 3) if value is None else None
    )


def test_more_reasoning_than_completion_tokens_is_impossible() -> None:
    details = {"reasoning_tokens": 9}
    assert read_usage({"completion_tokens": 3, "completion_tokens_details": details}) is None
    assert read_usage({"completion_tokens": 9, "completion_tokens_details": details}) == Tokens(
        None, 9, 9
    )


@pytest.mark.parametrize(
    ("usage", "kwargs"),
    [
        (Tokens(100_000, 4), {"prompt_chars": 100}),  # more than the prompt could make
        (Tokens(5000, 4), {"context_window": 4096}),  # more than the window holds
        (Tokens(5, 400), {"max_tokens": 100}),  # more than max_tokens allows
    ],
)
def test_a_usage_that_does_not_fit_its_request_is_distrusted(
    usage: Tokens, kwargs: dict[str, int]
) -> None:
    (c,) = build_completions(
        [WireChoice(TEXT, None, "stop")], UsageReport(whole=usage), 0.0, "e", **kwargs
    ).completions
    assert c.usage.estimated
    assert c.usage.completion_tokens == estimate_tokens(TEXT)
    assert c.usage.prompt_tokens != usage.prompt


def test_a_bad_per_choice_usage_is_distrusted_for_its_choice_only() -> None:
    choices = [WireChoice("a" * 40, None, "stop"), WireChoice("b" * 8, None, "stop")]
    report = UsageReport(per_choice={0: None, 1: Tokens(3, 2)}, distrusted=True)
    first, second = build_completions(choices, report, 0.0, "e").completions
    assert (first.usage.completion_tokens, first.usage.estimated) == (10, True)
    assert (second.usage.completion_tokens, second.usage.estimated) == (2, False)


def test_served_usage_is_logged_only_when_it_could_be_true() -> None:
    assert logged_usage(whole(None)) == {"prompt_tokens": 5, "completion_tokens": 4}
    assert logged_usage(whole("usage_negative")) == {}
    assert logged_usage(whole("usage_nan")) == {}
    assert logged_usage(b"<html>") == {}


# -- through the HTTP backend --------------------------------------------------------

MSGS = [{"role": "user", "content": "What is six times seven?"}]


def backend(url: str, sleep: FakeSleep, retries: int = 0) -> OpenAIBackend:
    return OpenAIBackend(url, model="fake-model", max_retries=retries, sleep=sleep)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_a_malformed_reply_fails_only_its_samples_naming_the_field(
    name: str, streamed: bool, n: int, fake_sleep: FakeSleep
) -> None:
    async with (
        FakeServer(malformed=name, malformed_when="POISON") as srv,
        backend(srv.url, fake_sleep) as be,
    ):
        params = SamplingParams(stream=streamed)
        poisoned = [{"role": "user", "content": "POISON"}]
        bad = await be.complete(poisoned, n, params)
        good = await be.complete(MSGS, n, params)
    assert len(bad) == n
    for c in bad:
        assert c.error_type == "MalformedReply"
        assert c.retryable
        assert c.error is not None
        assert "\n" not in c.error
        field = MALFORMED[name][1 if streamed or n > 1 else 0]
        assert f"malformed reply from the server: {field}" in c.error
    assert all(c.error is None for c in good)  # the next request is not affected


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("name", sorted(DISTRUSTED))
async def test_an_impossible_usage_is_never_recorded(
    name: str, streamed: bool, fake_sleep: FakeSleep
) -> None:
    async with FakeServer(malformed=name) as srv, backend(srv.url, fake_sleep) as be:
        out = await be.complete(MSGS, 3, SamplingParams(stream=streamed))
    for c in out:
        assert c.error is None
        assert c.usage.estimated
        assert c.usage.completion_tokens == estimate_tokens(c.text)
        assert 0 < c.usage.prompt_tokens < 100
        assert c.usage.reasoning_tokens is None


@pytest.mark.parametrize("streamed", [False, True])
async def test_text_parts_from_the_server_are_joined(streamed: bool, fake_sleep: FakeSleep) -> None:
    params = SamplingParams(stream=streamed)
    async with FakeServer() as plain, backend(plain.url, fake_sleep) as be:
        expected = [c.text for c in await be.complete(MSGS, 2, params)]
    async with FakeServer(malformed="content_parts") as srv, backend(srv.url, fake_sleep) as be:
        out = await be.complete(MSGS, 2, params)
    assert [c.text for c in out] == expected
    assert all(c.error is None for c in out)


async def test_a_malformed_reply_is_retried_and_a_good_one_then_used(
    fake_sleep: FakeSleep,
) -> None:
    config = FakeConfig(fail_script=["bad:content_int", "bad:usage_negative"])
    async with FakeServer(config) as srv, backend(srv.url, fake_sleep, retries=2) as be:
        (c,) = await be.complete(MSGS, 1, SamplingParams())
    assert srv.stats.requests == 2  # the malformed one, then a good one (its usage distrusted)
    assert c.error is None
    assert c.usage.estimated
    assert len(fake_sleep.calls) == 1


def test_the_decoder_reads_nan_without_crashing() -> None:
    """orjson refuses NaN; the wire layer falls back to `json` for that event only."""
    events = SSEDecoder().feed(b'data: {"usage": {"completion_tokens": NaN}}\n\n')
    assert len(events) == 1
    assert copy.deepcopy(events[0])["usage"]["completion_tokens"] != 0


DEEP = b"[" * 100_000 + b"]" * 100_000
"""JSON nested past what Python's parser can go (orjson refuses it, `json` recurses)."""


def test_a_body_nested_too_deeply_is_malformed_not_a_crash() -> None:
    with pytest.raises(MalformedReply, match="nested too deeply"):
        parse_response(DEEP, 1)
    with pytest.raises(MalformedReply, match="a stream chunk"):
        SSEDecoder().feed(b"data: " + DEEP + b"\n\n")
    assert logged_usage(DEEP) == {}
    assert error_message(DEEP.decode()).startswith("[[[")
    assert listed_models(DEEP) is None
