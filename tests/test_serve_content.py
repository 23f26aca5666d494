"""What a PaCoRe model of `pacore serve` takes in a message: text only, and a user turn
that says something. Refused content is a 400 naming the message (or part) and costs no
upstream request; a plain upstream model passes any content through untouched."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.fake_server import echo_responder
from tests.serve_helpers import pacore_server

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=20)


REFUSED: list[tuple[list[dict[str, Any]], str, str]] = [
    # (messages, param, what the message says)
    ([{"role": "user", "content": [text("What is in it?"), IMAGE]}], "messages.0.content.1",
     "text only"),
    ([{"role": "user", "content": [IMAGE]}], "messages.0.content.0", "text only"),
    ([{"role": "user", "content": [AUDIO, text("transcribe")]}], "messages.0.content.0",
     "text only"),
    ([{"role": "system", "content": [IMAGE]}, {"role": "user", "content": "hi"}],
     "messages.0.content.0", "text only"),
    ([{"role": "user", "content": [{"type": "text"}]}], "messages.0.content.0.text", "string"),
    ([{"role": "user", "content": ""}], "messages.0.content", "empty"),
    ([{"role": "user", "content": " \n\t "}], "messages.0.content", "empty"),
    ([{"role": "user", "content": None}], "messages.0.content", "empty"),
    ([{"role": "user"}], "messages.0.content", "empty"),
    ([{"role": "user", "content": []}], "messages.0.content", "empty"),
    ([{"role": "user", "content": [text(" "), text("")]}], "messages.0.content", "empty"),
    ([{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
      {"role": "user", "content": ""}], "messages.2.content", "empty"),
]  # fmt: skip


@pytest.mark.parametrize("stream", [False, True])
def test_pacore_models_refuse_non_text_parts_and_empty_user_turns(stream: bool) -> None:
    with pacore_server() as (url, upstream):
        c = client(url)
        for messages, param, said in REFUSED:
            for model in ("pacore-low", "pacore-high:fake-model"):
                with pytest.raises(openai.BadRequestError) as caught:
                    c.chat.completions.create(
                        model=model,
                        messages=messages,  # type: ignore[arg-type]
                        stream=stream,
                    )
                error: dict[str, Any] = caught.value.body  # type: ignore[assignment]
                assert error["param"] == param, (messages, error)
                assert said in error["message"], error
            with pytest.raises(openai.BadRequestError):
                c.chat.completions.create(
                    model="any-model",
                    messages=messages,  # type: ignore[arg-type]
                    extra_body={"pacore": {"widths": [2]}},
                )
        assert upstream.stats.requests == 0


def test_text_parts_reach_every_round() -> None:
    messages: Any = [{"role": "user", "content": [text("What is "), text("6 * 7?")]}]
    with pacore_server(use_n=False) as (url, upstream):
        reply = client(url).chat.completions.create(model="pacore-low", messages=messages)
        bodies = upstream.stats.bodies
    assert reply.choices[0].message.content
    assert len(bodies) == 5
    synthesis = bodies[-1]["messages"][-1]["content"]
    assert "What is 6 * 7?" in synthesis


def test_passthrough_models_take_any_content_untouched() -> None:
    from tests.fake_server import FakeConfig

    with pacore_server(FakeConfig(responder=echo_responder)) as (url, upstream):
        messages: Any = [{"role": "user", "content": [text("What is in it?"), IMAGE]}]
        reply = client(url).chat.completions.create(model="fake-model", messages=messages)
        assert reply.choices[0].message.content == "What is in it?"
        assert upstream.stats.bodies[0]["messages"] == messages
        empty: Any = [{"role": "user", "content": ""}]
        assert client(url).chat.completions.create(model="fake-model", messages=empty)
