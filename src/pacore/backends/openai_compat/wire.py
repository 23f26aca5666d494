"""The OpenAI wire format, read and checked in one place: every reply pacore gets.

Pure functions and one small state machine, no I/O. `request_body` builds a
`/chat/completions` request; `parse_response` reads a whole JSON answer; a streamed
answer is cut into events by `SSEDecoder` and assembled by `StreamAssembler` (the
embedded backend feeds it llama.cpp's chunks too). Both give `WireChoice`s and a
`UsageReport`. `listed_models` reads a `/models` list, `logged_usage` the usage of an
answer that serve passes through. No other module parses OpenAI JSON.

Every field read is checked for its type as it is read (a few `type(x) is` tests per
event, nothing more on the hot path of a stream):

- `content` is text: a string, null, or a list of text parts (`[{"type": "text",
  "text": "..."}]`, which some APIs send), joined; parts of other types are skipped.
- Anything else wrong in a 200 (`choices` not a list, a choice or a `message`/`delta`
  not an object, `content` a number, a non-string `reasoning_content`/`reasoning`, a
  `finish_reason` that is not a string, an `index` that is not a whole number from 0
  to `n - 1`, or repeated) raises `MalformedReply` naming the field: that request's
  samples fail, retryably, and the rest of the batch goes on.
- `usage` is never taken as sent: a count that is not a whole number from 0 to
  `MAX_COUNT` (a string, a float, NaN, a bool, a negative or huge number), or a reasoning
  count above the completion count, makes the whole usage distrusted (`None`), and the
  tokens are counted from the text as estimated (`usage.py`, which also checks the
  counts against the request: its prompt, `max_tokens`, the context window).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from pacore.backends.base import TextCallback
from pacore.errors import (
    BackendError,
    ConnectionFailed,
    ContextLengthError,
    MalformedReply,
    RateLimited,
    RequestRejected,
    ServerError,
    one_line,
)
from pacore.io.jsonl import loads as _loads
from pacore.redact import redact
from pacore.types import Message, SamplingParams

DONE = b"[DONE]"
MAX_COUNT = 2**31 - 1
"""The largest token count believed: no request reads or writes two billion tokens, and
anything larger (2^63 and beyond) would not even fit the store."""


fast_loads: Callable[[bytes | str], Any] = orjson.loads
"""A stream event's parser: orjson, ~4x faster than json; an event it refuses goes to
`loads` (`SSEDecoder.feed`)."""


def loads(data: bytes | str) -> Any:
    """JSON as a server sent it, read as the files layer reads JSON (`io.jsonl.loads`:
    orjson's speed, the standard library's values), leniently: a NaN or an Infinity in
    a usage is read, then distrusted, not a crash; nesting past the parser is a
    `ValueError`."""
    return _loads(data, strict=False)


@dataclass(frozen=True)
class WireChoice:
    """One choice as the server sent it, before its tokens are counted."""

    text: str
    reasoning: str | None
    finish_reason: str | None


@dataclass(frozen=True)
class Tokens:
    """A usage the server reported, every count checked (see the module)."""

    prompt: int | None = None
    completion: int | None = None
    reasoning: int | None = None


@dataclass(frozen=True)
class UsageReport:
    """What a server said about the tokens of one answer, in the form it said it.

    `per_choice` maps a choice's index to its own usage (llama.cpp streams one usage
    chunk per choice, right after that choice's finish); `whole` is one usage for the
    whole request (vLLM, SGLang and OpenAI, streamed or not; llama.cpp's plain
    answers, which count only the first choice). Neither: the server sent none. A
    usage the server sent but that could not be true is None, and `distrusted` says so.
    """

    per_choice: dict[int, Tokens | None] | None = None
    whole: Tokens | None = None
    distrusted: bool = False
    """Whether some usage the server sent was impossible, and so not used."""


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


def is_error_object(body: bytes) -> bool:
    """Whether an error answer's body is OpenAI's error object, `{"error": {...}}`."""
    try:
        data = loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and isinstance(data.get("error"), dict)


def error_message(body: str) -> str:
    """The human part of an error body (`error.message`, or the text itself), cut short."""
    try:
        data = loads(body)
    except ValueError:
        return body.strip()[:300]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or err)[:300]
        return str(err)[:300]
    return str(data)[:300]


def stream_error(error: Any) -> BackendError:
    """The pacore error for the `error` object of a stream's event (HTTP or llama.cpp's
    in-process server): a context overflow, a refusal (4xx), or the server's failure."""
    if not isinstance(error, dict):
        return ServerError(f"error in stream: {one_line(repr(error), 300)}")
    message = one_line(str(error.get("message") or error.get("type") or "unknown error"), 300)
    code = error.get("code")
    status = code if type(code) is int else None
    if error.get("type") == "exceed_context_size_error":
        return ContextLengthError(message, status=status)
    if status == 429:
        return RateLimited(f"error in stream: {message}", status=status)
    if status is not None and 400 <= status < 500:
        return RequestRejected(message, status=status)
    return ServerError(f"error in stream: {message}", status=status)


# -- fields ------------------------------------------------------------------------


def _kind(value: Any) -> str:
    name = type(value).__name__
    return {"dict": "an object", "list": "a list", "NoneType": "null", "str": "a string"}.get(
        name, f"a{'n' if name[0] in 'aeiou' else ''} {name}"
    )


def _text(value: Any, where: str) -> str:
    """`content` as text: a string, null (empty) or a list of text parts, joined."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if type(value) is list:
        texts = []
        for i, part in enumerate(value):
            if type(part) is str:
                texts.append(part)
                continue
            if type(part) is not dict:
                raise MalformedReply(f"{where}[{i}]", f"is {_kind(part)}, not a text part")
            text = part.get("text")
            if type(text) is str:
                texts.append(text)
            elif text is not None or part.get("type", "text") == "text":
                raise MalformedReply(f"{where}[{i}].text", f"is {_kind(text)}, not text")
        return "".join(texts)
    raise MalformedReply(where, f"is {_kind(value)}, not text")


def _reasoning(part: dict[str, Any], where: str) -> str | None:
    # SGLang and DeepSeek say `reasoning_content`; vLLM says `reasoning`.
    value = part.get("reasoning_content")
    name = "reasoning_content"
    if value is None or value == "":
        value, name = part.get("reasoning"), "reasoning"
    if value is None or type(value) is str:
        return value or None
    raise MalformedReply(f"{where}.{name}", f"is {_kind(value)}, not text")


def _finish(choice: dict[str, Any], where: str) -> str | None:
    reason = choice.get("finish_reason")
    if reason is None or type(reason) is str:
        return reason
    raise MalformedReply(f"{where}.finish_reason", f"is {_kind(reason)}, not a string")


def _index(choice: dict[str, Any], default: int, n: int | None, where: str) -> int:
    index = choice.get("index", default)
    if type(index) is not int or index < 0:
        raise MalformedReply(f"{where}.index", f"is {index!r}, not a choice's number")
    if n is not None and index >= n:
        raise MalformedReply(f"{where}.index", f"is {index}, but only {n} choices were asked")
    return index


def _object(value: Any, where: str) -> dict[str, Any]:
    """`value` when it is an object; null as an empty one."""
    if type(value) is dict:
        return value
    if value is None:
        return {}
    raise MalformedReply(where, f"is {_kind(value)}, not an object")


def _choices(value: Any, where: str = "choices") -> list[Any]:
    if type(value) is list:
        return value
    if value is None:
        return []
    raise MalformedReply(where, f"is {_kind(value)}, not a list")


def _count(value: Any) -> int | None:
    """A count as sent, if it could be true; raises `_Impossible` if it could not."""
    if value is None:
        return None
    if type(value) is int and 0 <= value <= MAX_COUNT:
        return value
    raise _Impossible


class _Impossible(Exception):
    """A usage count that cannot be true (internal to `read_usage`)."""


def read_usage(value: Any) -> Tokens | None:
    """A usage object's counts, or None when it is absent or could not be true (a
    count that is not a whole number from 0 to `MAX_COUNT`, more reasoning tokens than
    completion tokens). Never raises: a wrong usage is distrusted, never fatal."""
    if type(value) is not dict:
        return None
    try:
        details = value.get("completion_tokens_details")
        reasoning = _count(details.get("reasoning_tokens")) if type(details) is dict else None
        tokens = Tokens(
            _count(value.get("prompt_tokens")), _count(value.get("completion_tokens")), reasoning
        )
    except _Impossible:
        return None
    if reasoning is not None and tokens.completion is not None and reasoning > tokens.completion:
        return None
    return tokens


def _sent(value: Any) -> bool:
    """Whether a usage field carries something (vLLM sends `usage: null` per chunk)."""
    return value is not None and value != {}


# -- whole answers -------------------------------------------------------------------


def parse_response(raw: bytes, n: int | None = None) -> tuple[list[WireChoice], UsageReport]:
    """The choices (in index order) and usage of a whole JSON answer to a request for
    `n` choices (None: not known). `MalformedReply` for one that breaks the format."""
    try:
        data = loads(raw)
    except ValueError as exc:
        raise MalformedReply("the body", f"is not JSON ({describe(exc)})") from None
    if type(data) is not dict:
        raise MalformedReply("the body", f"is {_kind(data)}, not a chat completion")
    if "choices" not in data:
        raise MalformedReply("choices", "is missing: this is not a chat completion")
    by_index: dict[int, WireChoice] = {}
    for position, ch in enumerate(_choices(data["choices"])):
        where = f"choices[{position}]"
        if type(ch) is not dict:
            raise MalformedReply(where, f"is {_kind(ch)}, not an object")
        index = _index(ch, position, n, where)
        if index in by_index:
            raise MalformedReply(f"{where}.index", f"repeats choice {index}")
        msg = _object(ch.get("message"), f"{where}.message")
        text = _text(msg.get("content"), f"{where}.message.content")
        reasoning = _reasoning(msg, f"{where}.message")
        by_index[index] = WireChoice(text, reasoning, _finish(ch, where))
    sent = data.get("usage")
    usage = read_usage(sent)
    report = UsageReport(whole=usage, distrusted=usage is None and _sent(sent))
    return [by_index[i] for i in sorted(by_index)], report


def logged_usage(raw: bytes) -> dict[str, int]:
    """The token counts of a whole answer serve passed through, for its log line: only
    counts that could be true (none when the body or its usage cannot be read)."""
    try:
        data = loads(raw)
    except ValueError:
        return {}
    usage = read_usage(data.get("usage")) if type(data) is dict else None
    if usage is None:
        return {}
    counts = {"prompt_tokens": usage.prompt, "completion_tokens": usage.completion}
    return {k: v for k, v in counts.items() if v is not None}


# -- model lists ----------------------------------------------------------------------


def listed_models(raw: bytes | str) -> list[dict[str, Any]] | None:
    """The models of a `/models` answer (those with a string `id`), or None when the
    answer is not an OpenAI model list at all."""
    try:
        data = loads(raw)
    except ValueError:
        return None
    listed = data.get("data", data.get("models")) if type(data) is dict else None
    if type(listed) is not list:
        return None
    return [m for m in listed if type(m) is dict and type(m.get("id")) is str]


def model_window(model: dict[str, Any]) -> int | None:
    """A listed model's context window, in the field its server uses (vLLM's
    `max_model_len`, llama.cpp's `meta.n_ctx` per slot, or `context_length`)."""
    meta = model.get("meta")
    for value in (
        model.get("max_model_len"),
        meta.get("n_ctx") if type(meta) is dict else None,
        model.get("context_length"),
    ):
        if type(value) is int and 0 < value <= MAX_COUNT:
            return value
    return None


def model_owner(model: dict[str, Any]) -> str | None:
    """A listed model's `owned_by`: the server's name on vLLM, SGLang and llama.cpp."""
    owner = model.get("owned_by")
    return owner if type(owner) is str and owner else None


# -- streams --------------------------------------------------------------------------


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
        """The events of the lines `data` completes; `MalformedReply` for one that is
        not JSON."""
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
                events.append(_lenient(payload))
        return events


def _lenient(payload: bytes) -> Any:
    try:
        return loads(payload)
    except ValueError:
        raise MalformedReply("a stream chunk", "is not JSON") from None


CHARS_PER_TOKEN_CUT = 6
"""Characters a token, at most, for what a cut stream cost: more than tokens average in
prose or code (about 4), so a server that sends a token a delta is counted by its
deltas, exactly, and one that sends several a delta is not counted as one."""


class StreamAssembler:
    """Assembles the parsed events of one streamed answer into its choices and usage.

    Choices may interleave (`n > 1`); each event's deltas go to its choice's index.
    A usage chunk that follows a choice's finish is noted against that choice, so
    `report()` can tell per-choice usage (one chunk per choice) from a whole
    request's. A choice the stream never finished (no `finish_reason`) makes
    `choices()` raise `ConnectionFailed`: the answer was cut short, even if the
    stream ended cleanly. An event that breaks the format raises `MalformedReply`
    from `feed`; an error event raises its error (`stream_error`).
    """

    def __init__(self, on_text: TextCallback | None = None, n: int | None = None) -> None:
        """An assembler that has seen nothing yet, for a request of `n` choices (None:
        not known); `on_text` gets each text delta as it is fed."""
        self._on_text = on_text
        self._n = n
        self._limit = n if n is not None else MAX_COUNT
        self._text: dict[int, list[str]] = {}
        self._reasoning: dict[int, list[str]] = {}
        self._finish: dict[int, str | None] = {}
        self._unreported: list[int] = []
        self.usages: list[tuple[int | None, Tokens | None]] = []
        """Every usage chunk (None: one that could not be true), with the choice that
        had just finished without one."""
        self.deltas = 0
        """Text deltas received so far (about one token each): what a cut stream cost."""
        self.finished: list[int] = []
        """The indices of the choices as they finished, in order."""

    @property
    def usage(self) -> Tokens | None:
        """The last usage the stream reported, if any (None too if it was impossible)."""
        return self.usages[-1][1] if self.usages else None

    def feed(self, event: Any) -> int:
        """Take one parsed event; return how many text deltas it carried (about one token each).

        Raises the error of an error event, `MalformedReply` for a malformed one.
        """
        if type(event) is not dict:
            raise MalformedReply("a stream chunk", f"is {_kind(event)}, not an object")
        if event.get("error"):
            raise stream_error(event["error"])
        deltas = 0
        choices = event.get("choices")
        if choices:
            for ch in _choices(choices, "chunk.choices"):
                deltas += self._choice(ch)
        usage = event.get("usage")
        if usage is not None and usage != {}:
            owner = self._unreported.pop() if self._unreported else None
            self.usages.append((owner, read_usage(usage)))
        self.deltas += deltas
        return deltas

    def _choice(self, ch: Any) -> int:
        if type(ch) is not dict:
            raise MalformedReply("chunk.choices[]", f"is {_kind(ch)}, not an object")
        index = ch.get("index", 0)
        if type(index) is not int or not 0 <= index < self._limit:
            _index(ch, 0, self._n, "chunk.choices[]")
        delta = ch.get("delta")
        if type(delta) is not dict:
            delta = _object(delta, f"chunk.choices[{index}].delta")
        content = delta.get("content")
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if (content is not None and type(content) is not str) or (
            reasoning is not None and type(reasoning) is not str
        ):
            content, reasoning = _delta_texts(delta, index)
        deltas = 0
        if content:
            self._text.setdefault(index, []).append(content)
            deltas += 1
        if reasoning:
            self._reasoning.setdefault(index, []).append(reasoning)
            deltas += 1
        if deltas and self._on_text is not None:
            if reasoning:
                self._on_text(index, "reasoning", reasoning)
            if content:
                self._on_text(index, "content", content)
        reason = ch.get("finish_reason")
        if reason is not None or index not in self._finish:
            self._note_finish(ch, index, reason)
        return deltas

    def _note_finish(self, ch: dict[str, Any], index: int, reason: Any) -> None:
        if reason is not None:
            if type(reason) is not str:
                _finish(ch, f"chunk.choices[{index}]")
            if self._finish.get(index) is None:
                self._unreported.append(index)
                self.finished.append(index)
        self._finish[index] = reason

    def choices(self) -> list[WireChoice]:
        """Every choice seen, in index order; `ConnectionFailed` if one never finished."""
        indices = sorted(set(self._text) | set(self._reasoning) | set(self._finish))
        unfinished = [i for i in indices if self._finish.get(i) is None]
        if unfinished:
            raise ConnectionFailed(
                f"the stream ended before choice {unfinished[0]} finished (no finish_reason)",
                partial_tokens=self.spent(),
            )
        return [self._assembled(i, self._finish[i]) for i in indices]

    def choice(self, index: int) -> WireChoice | None:
        """Choice `index` as assembled, or None while it has not finished."""
        reason = self._finish.get(index)
        return None if reason is None else self._assembled(index, reason)

    def _assembled(self, index: int, reason: str | None) -> WireChoice:
        reasoning = self._reasoning.get(index)
        return WireChoice(
            text="".join(self._text.get(index, ())),
            reasoning="".join(reasoning) if reasoning is not None else None,
            finish_reason=reason,
        )

    def report(self) -> UsageReport:
        """The usage as per-choice counts, when each choice got its own, or as a whole."""
        choices = set(self._text) | set(self._reasoning) | set(self._finish)
        owners = [owner for owner, _ in self.usages]
        distrusted = any(u is None for _, u in self.usages)
        if len(choices) > 1 and len(owners) == len(choices) and set(owners) == choices:
            per_choice = {o: u for o, u in self.usages if o is not None}
            return UsageReport(per_choice=per_choice, distrusted=distrusted)
        return UsageReport(whole=self.usage, distrusted=self.usage is None and distrusted)

    def spent(self) -> int:
        """About the tokens a cut stream had generated: a token a text delta (most
        servers send one a delta), or a token per `CHARS_PER_TOKEN_CUT` characters
        received when that is more (a server that sends several tokens a delta)."""
        parts = itertools.chain(*self._text.values(), *self._reasoning.values())
        chars = sum(len(part) for part in parts)
        return max(self.deltas, -(-chars // CHARS_PER_TOKEN_CUT))

    def text_deltas(self, index: int) -> int:
        """The text deltas choice `index` got (about one token each)."""
        return len(self._text.get(index, ())) + len(self._reasoning.get(index, ()))


def _delta_texts(delta: dict[str, Any], index: int) -> tuple[str, str | None]:
    """A delta's content and reasoning the slow way: text parts joined, anything else
    that is not text a `MalformedReply`."""
    where = f"chunk.choices[{index}].delta"
    return _text(delta.get("content"), f"{where}.content"), _reasoning(delta, where)


def describe(exc: BaseException) -> str:
    """An exception as `Type: message` (just `Type` when it has no message), without the
    credentials of any URL it names (aiohttp's errors name the URL they failed on)."""
    text = redact(str(exc).strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
