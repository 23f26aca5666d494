"""The wire format of `/chat/completions`: request bodies in, choices out.

Pure functions and one small state machine, no I/O: `request_body` builds a
request, `parse_response` reads a whole JSON answer, and a streamed answer is
cut into events by `SSEDecoder` and assembled by `StreamAssembler`. Both kinds
of answer give `WireChoice`s and the server's usage, if it sent any.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pacore.backends.base import TextCallback
from pacore.errors import ConnectionFailed, ServerError
from pacore.types import Message, SamplingParams

DONE = b"[DONE]"


def _json_loads(data: bytes) -> Any:
    return json.loads(data)


try:  # orjson parses a stream event ~4x faster than json; optional, same results
    import orjson

    fast_loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    fast_loads = _json_loads


@dataclass(frozen=True)
class WireChoice:
    """One choice as the server sent it, before its tokens are counted."""

    text: str
    reasoning: str | None
    finish_reason: str | None


def request_body(model: str, messages: Sequence[Message], params: SamplingParams) -> dict[str, Any]:
    """The body of a request for one choice; `extra_body` may override any field."""
    body: dict[str, Any] = {
        "model": model,
        "messages": list(messages),
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    if params.seed is not None:
        body["seed"] = params.seed
    if params.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    body.update(params.extra_body)
    return body


def error_message(body: str) -> str:
    """The human part of an error body (`error.message`, or the text itself), cut short."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or err)[:300]
        return str(err)[:300]
    return str(data)[:300]


def _reasoning_of(part: dict[str, Any]) -> Any:
    # SGLang and DeepSeek say `reasoning_content`; vLLM says `reasoning`.
    return part.get("reasoning_content") or part.get("reasoning")


def parse_response(raw: bytes) -> tuple[list[WireChoice], UsageReport]:
    """The choices (in index order) and usage of a whole JSON answer."""
    try:
        data = fast_loads(raw)
        ordered = sorted(data["choices"], key=lambda c: c.get("index", 0))
        choices = []
        for ch in ordered:
            msg = ch.get("message") or {}
            text, reasoning = msg.get("content") or "", _reasoning_of(msg) or None
            choices.append(WireChoice(text, reasoning, ch.get("finish_reason")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ServerError(f"malformed response from server: {describe(exc)}") from None
    usage = data.get("usage")
    return choices, UsageReport(whole=usage if isinstance(usage, dict) else None)


class SSEDecoder:
    """Cuts the bytes of a server-sent-event stream into its events, parsed.

    Fed whatever bytes the network delivered, it parses every complete `data:` line
    in them: a stream of one-token events is mostly overhead per await, so reading
    whole network reads rather than line by line halves the client's CPU per event.
    Nothing after `data: [DONE]` is read.
    """

    def __init__(self) -> None:
        """A decoder at the start of a stream."""
        self._pending = b""
        self.done = False
        """Whether `[DONE]` has arrived."""

    def feed(self, data: bytes) -> list[Any]:
        """The events of the lines `data` completes; `ServerError` for one that is not JSON."""
        if self.done:
            return []
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        events = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == DONE:
                self.done = True
                break
            try:
                events.append(fast_loads(payload))
            except ValueError:
                raise ServerError("malformed stream chunk from server") from None
        return events


@dataclass(frozen=True)
class UsageReport:
    """What a server said about the tokens of one answer, in the form it said it.

    `per_choice` maps a choice's index to its own usage (llama.cpp streams one usage
    chunk per choice, right after that choice's finish); `whole` is one usage for the
    whole request (vLLM, SGLang and OpenAI, streamed or not; llama.cpp's plain
    answers, which count only the first choice). Neither: the server sent none.
    """

    per_choice: dict[int, dict[str, Any]] | None = None
    whole: dict[str, Any] | None = None


class StreamAssembler:
    """Assembles the parsed events of one streamed answer into its choices and usage.

    Choices may interleave (`n > 1`); each event's deltas go to its choice's index.
    A usage chunk that follows a choice's finish is noted against that choice, so
    `report()` can tell per-choice usage (one chunk per choice) from a whole
    request's. A choice the stream never finished (no `finish_reason`) makes
    `choices()` raise `ConnectionFailed`: the answer was cut short, even if the
    stream ended cleanly.
    """

    def __init__(self, on_text: TextCallback | None = None) -> None:
        """An assembler that has seen nothing yet; `on_text` gets each text delta as it
        is fed."""
        self._on_text = on_text
        self._text: dict[int, list[str]] = {}
        self._reasoning: dict[int, list[str]] = {}
        self._finish: dict[int, str | None] = {}
        self._unreported: list[int] = []
        self.usages: list[tuple[int | None, dict[str, Any]]] = []
        """Every usage chunk, with the choice that had just finished without one."""
        self.deltas = 0
        """Text deltas received so far (about one token each): what a cut stream cost."""

    @property
    def usage(self) -> dict[str, Any] | None:
        """The last usage the stream reported, if any."""
        return self.usages[-1][1] if self.usages else None

    def feed(self, event: Any) -> int:
        """Take one parsed event; return how many text deltas it carried (about one token each).

        Raises `ServerError` for an error event.
        """
        if not isinstance(event, dict):
            return 0
        if event.get("error"):
            raise ServerError(f"error in stream: {error_message(json.dumps(event))}")
        deltas = 0
        for ch in event.get("choices") or ():
            deltas += self._choice(ch)
        if event.get("usage"):
            owner = self._unreported.pop() if self._unreported else None
            self.usages.append((owner, event["usage"]))
        self.deltas += deltas
        return deltas

    def _choice(self, ch: dict[str, Any]) -> int:
        index = ch.get("index", 0)
        delta = ch.get("delta") or {}
        deltas = 0
        content = delta.get("content")
        if content:
            self._text.setdefault(index, []).append(content)
            deltas += 1
        reasoning = _reasoning_of(delta)
        if reasoning:
            self._reasoning.setdefault(index, []).append(reasoning)
            deltas += 1
        if deltas and self._on_text is not None:
            if reasoning:
                self._on_text(index, "reasoning", reasoning)
            if content:
                self._on_text(index, "content", content)
        reason = ch.get("finish_reason")
        if reason is not None and self._finish.get(index) is None:
            self._unreported.append(index)
        if reason is not None or index not in self._finish:
            self._finish[index] = reason
        return deltas

    def choices(self) -> list[WireChoice]:
        """Every choice seen, in index order; `ConnectionFailed` if one never finished."""
        indices = sorted(set(self._text) | set(self._reasoning) | set(self._finish))
        unfinished = [i for i in indices if self._finish.get(i) is None]
        if unfinished:
            raise ConnectionFailed(
                f"the stream ended before choice {unfinished[0]} finished (no finish_reason)",
                partial_tokens=self.deltas,
            )
        return [
            WireChoice(
                text="".join(self._text.get(i, ())),
                reasoning="".join(self._reasoning[i]) if i in self._reasoning else None,
                finish_reason=self._finish[i],
            )
            for i in indices
        ]

    def report(self) -> UsageReport:
        """The usage as per-choice counts, when each choice got its own, or as a whole."""
        choices = set(self._text) | set(self._reasoning) | set(self._finish)
        owners = [owner for owner, _ in self.usages]
        if len(choices) > 1 and len(owners) == len(choices) and set(owners) == choices:
            return UsageReport(per_choice={o: u for o, u in self.usages if o is not None})
        return UsageReport(whole=self.usage)


def describe(exc: BaseException) -> str:
    """An exception as `Type: message` (just `Type` when it has no message)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
