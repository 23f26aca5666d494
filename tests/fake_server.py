"""A fake OpenAI-compatible chat-completions server for tests and benchmarks.

It speaks just enough of the OpenAI / vLLM HTTP API (`POST /v1/chat/completions`,
streaming included, and `GET /v1/models`) to exercise a client end to end, while
letting the test decide everything a real server would: the text of every choice,
latency, whether `n > 1` is honoured (and up to which `n`), context-length errors,
a model still loading (llama.cpp's 503 "Loading model"), scripted failures
(HTTP error statuses, hung requests, dropped connections) and malformed replies: a
200 whose JSON breaks the format in one named way (`MALFORMATIONS`: `content` as an
int, usage negative, NaN or huge, ...), whole or streamed.

Tokens are words: `count_tokens(text)` is `len(text.split())`. Prompt tokens are the
sum over the messages of the tokens of their content; completion tokens are the
tokens of the generated content plus those of the separate reasoning, if any.

There is no module-level mutable state. A `FakeConfig` describes the behaviour,
`make_app` builds an `aiohttp.web.Application` from it, and a `FakeServer` serves
one on an ephemeral port and records what it saw in a `FakeStats`:

    async with FakeServer(FakeConfig(ttft_s=0.01, supports_n=False)) as srv:
        ...  # point a client at srv.url ("http://127.0.0.1:PORT/v1")
        assert srv.stats.requests == 1

    with run_in_thread(FakeConfig()) as srv:  # from synchronous code
        ...

    python -m tests.fake_server --port 0 --tokens 50 --ttft 0.05 --stats-file s.json

The command line prints the base URL as its first line of output and serves until
it gets SIGTERM or SIGINT, then writes its stats as JSON to `--stats-file`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import re
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from aiohttp import web

__all__ = [
    "MALFORMATIONS",
    "FakeConfig",
    "FakeServer",
    "FakeStats",
    "Responder",
    "ResponderResult",
    "ScriptItem",
    "count_tokens",
    "default_responder",
    "echo_responder",
    "fixed_length_responder",
    "main",
    "make_app",
    "prompt_tokens_of",
    "run_in_thread",
    "split_chunks",
    "truncate_tokens",
]

Message = dict[str, Any]
ResponderResult = str | tuple[str, str | None] | tuple[str, str | None, str | None]
"""What a responder returns: `content`, `(content, finish_reason)` or
`(content, finish_reason, reasoning_content)`. A `None` finish reason means "stop"."""

Responder = Callable[[list[Message], int, dict[str, Any]], ResponderResult]
"""`responder(messages, choice_index, request_body)` -> the output of that choice."""

ScriptItem = int | str | None
"""One entry of `FakeConfig.fail_script`; see there."""

SCRIPT_WORDS = frozenset(
    {"ok", "hang", "stall", "drop", "drop_mid", "end_mid", "no_finish", "context"}
)
SPOIL = "bad:"
"""Prefix of a script item that spoils one reply: `"bad:content_int"`."""

_WORD = re.compile(r"\S+")


# --------------------------------------------------------------------------- tokens


def count_tokens(text: str | None) -> int:
    """The fake tokenizer: one token per whitespace-separated word."""
    return len(text.split()) if text else 0


def truncate_tokens(text: str, max_tokens: int) -> str:
    """The first `max_tokens` words of `text`, keeping the original spacing between them."""
    if max_tokens <= 0:
        return ""
    end = None
    for i, match in enumerate(_WORD.finditer(text)):
        if i == max_tokens - 1:
            end = match.end()
            break
    return text if end is None else text[:end]


def split_chunks(text: str, words_per_chunk: int) -> list[str]:
    """Split `text` into pieces of `words_per_chunk` words whose concatenation is `text`."""
    if not text:
        return []
    starts = [m.start() for m in _WORD.finditer(text)]
    if not starts:
        return [text]
    step = max(1, words_per_chunk)
    cuts = [0, *starts[step::step], len(text)]
    return [text[a:b] for a, b in itertools.pairwise(cuts) if b > a]


def _content_text(content: Any) -> str:
    """The text of a message's `content`, whether a string or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return " ".join(parts)
    return str(content)


def prompt_tokens_of(messages: Iterable[Message]) -> int:
    """Prompt tokens of a request: the sum of the tokens of every message's content."""
    return sum(count_tokens(_content_text(m.get("content"))) for m in messages)


# ----------------------------------------------------------------------- responders


def default_responder(messages: list[Message], index: int, body: dict[str, Any]) -> str:
    """A short deterministic answer with a think block, mentioning the choice index."""
    return f"<think>reasoning about it, sample {index}</think>The answer is \\boxed{{42}}."


def fixed_length_responder(n_words: int, answer: str = "42") -> Responder:
    """A responder whose every output is exactly `n_words` tokens (words) long.

    For `n_words >= 5` the text is `<think> step step ... </think>The answer is
    \\boxed{answer}.`; shorter outputs are just repeated `\\boxed{answer}` words.
    """
    tail = f"</think>The answer is \\boxed{{{answer}}}."

    def respond(messages: list[Message], index: int, body: dict[str, Any]) -> str:
        if n_words <= 0:
            return ""
        if n_words < 5:
            return " ".join([f"\\boxed{{{answer}}}"] * n_words)
        return " ".join(["<think>", *(["step"] * (n_words - 5)), tail])

    return respond


def echo_responder(messages: list[Message], index: int, body: dict[str, Any]) -> str:
    """Returns the text of the last message unchanged (handy to check prompts)."""
    return _content_text(messages[-1].get("content")) if messages else ""


# --------------------------------------------------------------------------- config


@dataclass
class FakeConfig:
    """How the fake server behaves. Fields are read on every request, so a test may
    change them while the server runs, except `base_path`, `fail_seed` and
    `fail_script`, which are read once at start (use `FakeServer.push_script` to add
    to the script of a running server)."""

    model_name: str = "fake-model"
    owned_by: str = "fake"
    """`owned_by` in `/models` (vLLM says "vllm", llama.cpp "llamacpp")."""
    base_path: str = "/v1"
    """Prefix of every route; the client base URL is `http://HOST:PORT{base_path}`."""

    responder: Responder = default_responder
    """Builds the output of each choice; see `Responder` and `ResponderResult`."""

    ttft_s: float = 0.0
    """Time to first token. Non-stream replies sleep `ttft_s + tokens * per_token_s`,
    where `tokens` is the longest choice's completion tokens (choices run in parallel);
    streams sleep `ttft_s`, then `per_token_s` per word of every chunk step."""
    per_token_s: float = 0.0
    chunk_tokens: int = 1
    """Words per streamed content/reasoning delta."""

    supports_n: bool = True
    """When False, `n` is ignored and exactly one choice comes back (llama.cpp, Ollama)."""
    reject_n: bool = False
    """When True, a request with `n > 1` gets HTTP 400 "n > 1 is not supported"."""
    max_n: int | None = None
    """llama.cpp's cap on `n` (its parallel slots): a request asking for more gets its
    HTTP 400 "Field 'n': Value must be between 1 <= value <= MAX"."""
    max_n_named: bool = True
    """When False, the refusal of an `n` above `max_n` does not name the bound."""

    loading_requests: int = 0
    """The first this many requests (chat and `/models` alike) get llama.cpp's answer
    while it loads its model: 503 "Loading model", type `unavailable_error`, no
    `Retry-After`."""
    loading_s: float = 0.0
    """For this many seconds of `clock` after the app is built, every request gets the
    "Loading model" 503 too."""
    clock: Callable[[], float] = time.monotonic
    """The time `loading_s` is counted on (a fake clock in tests)."""

    context_limit: int | None = None
    """Prompt tokens above this get HTTP 400 (vLLM's context-length message); outputs
    are cut so that prompt + completion fits, with finish_reason "length"."""
    context_counts_max_tokens: bool = False
    """vLLM-style: also reject when prompt tokens + `max_tokens` exceed the limit."""

    reasoning_field: str = "reasoning_content"
    """Name of the separate reasoning field in messages and deltas (vLLM: "reasoning")."""
    report_reasoning_tokens: bool = False
    """Add `completion_tokens_details.reasoning_tokens` to the usage."""
    include_usage: bool = True
    """When False, non-stream replies carry no `usage` and streams never send it."""
    usage_style: str = "whole"
    """How usage is reported with `n > 1`: "whole" (vLLM, SGLang, OpenAI: one usage for
    the request, streamed or not), "llama.cpp" (a plain answer's usage counts only the
    first choice; a stream sends one usage chunk per choice, right after its finish) or
    "first_only" (a server that counts only the first choice, streamed or not)."""

    fail_script: list[ScriptItem] = field(default_factory=list)
    """Consumed one entry per chat request, in arrival order:
    an int is an HTTP status to answer with (JSON error body); "hang" sleeps `hang_s`
    before serving normally; "stall" sends a 200's headers (an event stream's when the
    request streams), then nothing for `hang_s`, then drops the connection; "drop"
    closes the connection without any response;
    "drop_mid" (stream only; like "drop" otherwise) sends half the chunks, then drops;
    "end_mid" (stream only; like "ok" otherwise) sends half the chunks, then ends the
    response cleanly, without finish reasons or `[DONE]`; "no_finish" (stream only;
    like "ok" otherwise) streams everything, usage and `[DONE]` included, but every
    finish_reason is null; "context" answers the context-length 400; None or "ok"
    serves normally."""
    hang_s: float = 30.0
    retry_after: float | None = None
    """When set, 429 and 503 answers carry `Retry-After` with this value."""
    fail_rate: float = 0.0
    """Probability that a request (not failed by the script) fails with `fail_rate_status`."""
    fail_rate_status: int = 500
    fail_seed: int = 0

    record_bodies: bool = True
    """Keep every request body in `FakeStats.bodies` (turn off for benchmarks)."""

    malformed: str | None = None
    """A name in `MALFORMATIONS`: the replies (whole, or every chunk of a stream) are
    spoilt that way; None: well formed. A script item `"bad:NAME"` spoils one reply."""
    malformed_when: str | None = None
    """Spoil only the replies to requests whose messages contain this text (None: all)."""

    def __post_init__(self) -> None:
        for item in self.fail_script:
            _check_script_item(item)
        if self.base_path and not self.base_path.startswith("/"):
            self.base_path = "/" + self.base_path
        self.base_path = self.base_path.rstrip("/")


def _check_script_item(item: ScriptItem) -> None:
    if item is None or (isinstance(item, int) and 100 <= item <= 599):
        return
    if isinstance(item, str) and item in SCRIPT_WORDS:
        return
    if isinstance(item, str) and item.startswith(SPOIL) and item[len(SPOIL) :] in MALFORMATIONS:
        return
    raise ValueError(
        f"bad fail_script entry {item!r}: use an HTTP status, {sorted(SCRIPT_WORDS)} "
        f"or {SPOIL}NAME with a NAME in {sorted(MALFORMATIONS)}"
    )


# ---------------------------------------------------------------------------- stats


@dataclass
class FakeStats:
    """What one server saw. Plain counters, safe to read from another thread."""

    requests: int = 0
    """Chat-completion requests received (failed ones included)."""
    model_requests: int = 0
    """`GET /models` requests received."""
    loading: int = 0
    """Requests (of either kind) answered 503 "Loading model"."""
    connections: int = 0
    """TCP connections accepted."""
    in_flight: int = 0
    peak_concurrency: int = 0
    """Most chat requests in progress at the same time."""
    completion_tokens: int = 0
    """Completion tokens over every choice served (and every chunk streamed)."""
    prompt_tokens: int = 0
    """Prompt tokens over every request served, counted once per request."""
    choices: int = 0
    """Choices served."""
    statuses: Counter[int] = field(default_factory=Counter)
    """Count of HTTP statuses answered (streams count as 200 once started)."""
    drops: int = 0
    """Connections dropped on purpose ("drop", "drop_mid")."""
    hangs: int = 0
    stalls: int = 0
    """Requests answered with headers and then nothing ("stall")."""
    cancelled: int = 0
    """Requests whose client went away before the answer was complete."""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    """Every parsed request body, in arrival order (if `record_bodies`)."""

    def reset(self) -> None:
        """Zero every counter in place (in-flight requests stay counted)."""
        in_flight = self.in_flight
        for f in fields(self):
            setattr(self, f.name, f.default_factory() if callable(f.default_factory) else f.default)
        self.in_flight = in_flight
        self.peak_concurrency = in_flight

    def to_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready data (bodies left out)."""
        return {
            "requests": self.requests,
            "model_requests": self.model_requests,
            "loading": self.loading,
            "connections": self.connections,
            "peak_concurrency": self.peak_concurrency,
            "in_flight": self.in_flight,
            "completion_tokens": self.completion_tokens,
            "prompt_tokens": self.prompt_tokens,
            "choices": self.choices,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "drops": self.drops,
            "hangs": self.hangs,
            "stalls": self.stalls,
            "cancelled": self.cancelled,
        }


# ---------------------------------------------------------------------------- state


class _State:
    """Per-application mutable state: config, stats, the script and the random stream."""

    def __init__(self, config: FakeConfig, stats: FakeStats) -> None:
        self.config = config
        self.stats = stats
        self.script: deque[ScriptItem] = deque(config.fail_script)
        self.rng = random.Random(config.fail_seed)
        self.closing = asyncio.Event()
        self.next_id = 0
        self.arrivals = 0
        self.born = config.clock()

    def new_id(self) -> str:
        self.next_id += 1
        return f"chatcmpl-fake-{self.next_id}"


STATE_KEY: web.AppKey[_State] = web.AppKey("fake_server_state", _State)


@dataclass
class _Choice:
    index: int
    content: str
    reasoning: str | None
    finish_reason: str

    @property
    def tokens(self) -> int:
        return count_tokens(self.content) + count_tokens(self.reasoning)


def _error(
    status: int, message: str, err_type: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"message": message, "type": err_type, "param": None, "code": status}}
    return web.json_response(body, status=status, headers=headers)


_ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    408: "TimeoutError",
    429: "RateLimitError",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailableError",
    504: "GatewayTimeout",
}


def _scripted_error(state: _State, status: int) -> web.Response:
    headers = None
    if state.config.retry_after is not None and status in (429, 503):
        headers = {"Retry-After": f"{state.config.retry_after:g}"}
    err_type = _ERROR_TYPES.get(status, "ServerError" if status >= 500 else "ClientError")
    return _error(status, f"fake server: scripted failure (HTTP {status})", err_type, headers)


def _context_error(limit: int, prompt: int, completion: int) -> web.Response:
    message = (
        f"This model's maximum context length is {limit} tokens. However, you requested "
        f"{prompt + completion} tokens ({prompt} in the messages, {completion} in the "
        "completion). Please reduce the length of the messages or completion."
    )
    return _error(400, message, "BadRequestError")


def _bad_request(message: str) -> web.Response:
    return _error(400, message, "BadRequestError")


def _still_loading(state: _State) -> web.Response | None:
    """llama.cpp's 503 while its model loads, or None once it is "loaded"."""
    state.arrivals += 1
    config = state.config
    early = state.arrivals <= config.loading_requests
    if early or config.clock() - state.born < config.loading_s:
        state.stats.loading += 1
        return _error(503, "Loading model", "unavailable_error")
    return None


def _n_refusal(max_n: int, named: bool) -> web.Response:
    """llama.cpp's refusal of an `n` above its parallel slots (or one naming no bound)."""
    detail = f"must be between 1 <= value <= {max_n}" if named else "is out of range"
    return _error(400, f"Field 'n': Value {detail}", "invalid_request_error")


async def _sleep(state: _State, seconds: float) -> None:
    """Sleep; a long sleep wakes up early when the server is shutting down (short ones
    are cheaper as plain sleeps, and shutdown cancels them anyway)."""
    if seconds <= 0:
        return
    if seconds < 1.0:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state.closing.wait(), seconds)


def _drop(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


# ---------------------------------------------------------------------- malformations

Spoiler = Callable[[dict[str, Any]], None]
"""Spoils one reply (a whole answer, or one chunk of a stream) in place."""


def _bodies(data: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(choice, its `message` or `delta`) of every choice of a reply or chunk."""
    for ch in data.get("choices") or ():
        if isinstance(ch, dict):
            body = ch.get("message", ch.get("delta"))
            if isinstance(body, dict):
                yield ch, body


def _texts(change: Callable[[str], Any]) -> Spoiler:
    """Every non-empty `content` replaced by `change(content)`."""

    def spoil(data: dict[str, Any]) -> None:
        for _, body in _bodies(data):
            if isinstance(body.get("content"), str) and body["content"]:
                body["content"] = change(body["content"])

    return spoil


def _beside_text(key: str, value: Any) -> Spoiler:
    """`key: value` in every message or delta that carries text."""

    def spoil(data: dict[str, Any]) -> None:
        for _, body in _bodies(data):
            if body.get("content"):
                body[key] = value

    return spoil


def _choice_field(key: str, change: Callable[[Any], Any]) -> Spoiler:
    """Every choice's `key` replaced by `change(value)` (only where it is not None)."""

    def spoil(data: dict[str, Any]) -> None:
        for ch in data.get("choices") or ():
            if isinstance(ch, dict) and ch.get(key) is not None:
                ch[key] = change(ch[key])

    return spoil


def _choice_list(change: Callable[[list[Any]], Any]) -> Spoiler:
    """A non-empty `choices` list replaced by `change(choices)`."""

    def spoil(data: dict[str, Any]) -> None:
        if data.get("choices"):
            data["choices"] = change(data["choices"])

    return spoil


def _usage_count(key: str, value: Any) -> Spoiler:
    """The usage's `key` set to `value` (where a usage is sent)."""

    def spoil(data: dict[str, Any]) -> None:
        usage = data.get("usage")
        if isinstance(usage, dict):
            usage[key] = value

    return spoil


def _unspoilt(data: dict[str, Any]) -> None:
    """Leaves a reply as it is."""


def _whole_usage(value: Any) -> Spoiler:
    """The whole usage replaced by `value` (where a usage is sent)."""

    def spoil(data: dict[str, Any]) -> None:
        if isinstance(data.get("usage"), dict):
            data["usage"] = value

    return spoil


def _in_halves(text: str) -> list[dict[str, str]]:
    half = len(text) // 2
    return [{"type": "text", "text": text[:half]}, {"type": "text", "text": text[half:]}]


MALFORMATIONS: dict[str, Spoiler] = {
    # well formed, though unusual: the text as a list of text parts (some APIs send this)
    "content_parts": _texts(_in_halves),
    # malformed: the request's samples must fail, named
    "content_int": _texts(lambda _: 42),
    "content_dict": _texts(lambda text: {"text": text}),
    "reasoning_int": _beside_text("reasoning_content", 7),
    "reasoning_list": _beside_text("reasoning_content", ["a thought"]),
    "choices_dict": _choice_list(lambda cs: {str(i): c for i, c in enumerate(cs)}),
    "choices_str": _choice_list(lambda _: "none"),
    "choice_str": _choice_list(lambda cs: [json.dumps(c) for c in cs]),
    "message_str": _choice_list(
        lambda cs: [{**c, **{k: "text" for k in ("message", "delta") if k in c}} for c in cs]
    ),
    "index_str": _choice_field("index", str),
    "index_negative": _choice_field("index", lambda i: -1 - i),
    "index_huge": _choice_field("index", lambda i: i + 1_000_000),
    "finish_int": _choice_field("finish_reason", lambda _: 1),
    "finish_list": _choice_field("finish_reason", lambda f: [f]),
    # impossible usage: distrusted, the tokens counted from the text
    "usage_str": _whole_usage("lots"),
    "usage_count_str": _usage_count("completion_tokens", "12"),
    "usage_negative": _usage_count("completion_tokens", -25000),
    "usage_float": _usage_count("completion_tokens", 12.5),
    "usage_nan": _usage_count("completion_tokens", float("nan")),
    "usage_inf": _usage_count("completion_tokens", float("inf")),
    "usage_bool": _usage_count("completion_tokens", True),
    "usage_huge": _usage_count("completion_tokens", 2**64),
    "prompt_absurd": _usage_count("prompt_tokens", 10**12),
    "prompt_negative": _usage_count("prompt_tokens", -5),
    "reasoning_tokens_negative": _usage_count(
        "completion_tokens_details", {"reasoning_tokens": -1}
    ),
}
"""Ways to spoil a reply, by name (`FakeConfig.malformed`, script items `"bad:NAME"`)."""


def _spoiler(config: FakeConfig, action: ScriptItem, messages: list[Message]) -> Spoiler:
    """How this request's reply is spoilt (`_unspoilt`: it is not)."""
    if isinstance(action, str) and action.startswith(SPOIL):
        return MALFORMATIONS[action[len(SPOIL) :]]
    if config.malformed is None:
        return _unspoilt
    when = config.malformed_when
    if when is not None and not any(when in _content_text(m.get("content")) for m in messages):
        return _unspoilt
    return MALFORMATIONS[config.malformed]


# -------------------------------------------------------------------------- handlers


def _validate(body: Any) -> tuple[str | None, list[Message], int, int | None, bool]:
    """(error message, messages, n, max_tokens, stream) of a request body."""
    if not isinstance(body, dict):
        return "request body must be a JSON object", [], 1, None, False
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list", [], 1, None, False
    if not all(isinstance(m, dict) and "role" in m for m in messages):
        return "every message must be an object with a 'role'", [], 1, None, False
    n = body.get("n", 1)
    if n is None:
        n = 1
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        return "'n' must be a positive integer", [], 1, None, False
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        return "'max_tokens' must be a positive integer", [], 1, None, False
    stream = bool(body.get("stream", False))
    return None, messages, n, max_tokens, stream


def _make_choice(
    state: _State,
    messages: list[Message],
    index: int,
    body: dict[str, Any],
    budget: int | None,
) -> _Choice:
    result = state.config.responder(messages, index, body)
    reasoning: str | None = None
    finish: str | None = None
    if isinstance(result, tuple):
        content = result[0]
        if len(result) > 1:
            finish = result[1]
        if len(result) > 2:
            reasoning = result[2]
    else:
        content = result
    finish = finish or "stop"
    if budget is not None:
        r_tokens = count_tokens(reasoning)
        if r_tokens + count_tokens(content) > budget:
            if reasoning is not None and r_tokens >= budget:
                reasoning = truncate_tokens(reasoning, budget)
                content = ""
            else:
                content = truncate_tokens(content, budget - r_tokens)
            finish = "length"
    return _Choice(index, content, reasoning, finish)


def _usage(state: _State, prompt: int, choices: Sequence[_Choice]) -> dict[str, Any]:
    completion = sum(c.tokens for c in choices)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if state.config.report_reasoning_tokens:
        reasoning = sum(count_tokens(c.reasoning) for c in choices)
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


async def _models(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.stats.model_requests += 1
    loading = _still_loading(state)
    if loading is not None:
        return loading
    model: dict[str, Any] = {
        "id": state.config.model_name,
        "object": "model",
        "owned_by": state.config.owned_by,
        "created": 0,
    }
    if state.config.context_limit is not None:  # as vLLM lists it
        model["max_model_len"] = state.config.context_limit
    return web.json_response({"object": "list", "data": [model]})


async def _chat(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    stats = state.stats
    stats.requests += 1
    stats.in_flight += 1
    stats.peak_concurrency = max(stats.peak_concurrency, stats.in_flight)
    try:
        response = await _serve_chat(request, state)
    except asyncio.CancelledError:
        stats.cancelled += 1
        raise
    finally:
        stats.in_flight -= 1
    if response is not None:
        stats.statuses[response.status] += 1
        return response
    # The connection was dropped on purpose: nothing can be sent any more.
    raise asyncio.CancelledError


_GO_ON = web.Response(status=599)
"""Sentinel: the script item leaves the request to be served normally."""


async def _serve_chat(request: web.Request, state: _State) -> web.StreamResponse | None:
    config = state.config
    try:
        body: Any = await request.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if config.record_bodies and body is not None:
        state.stats.bodies.append(body)
    loading = _still_loading(state)
    if loading is not None:
        return loading

    action: ScriptItem = state.script.popleft() if state.script else None
    scripted = await _scripted(request, state, action, body)
    if scripted is not _GO_ON:
        return scripted
    if body is None:
        return _bad_request("request body is not valid JSON")
    problem, messages, n, max_tokens, stream = _validate(body)
    if problem is not None:
        return _bad_request(problem)
    if n > 1 and config.reject_n:
        return _bad_request("n > 1 is not supported")
    if config.max_n is not None and n > config.max_n:
        return _n_refusal(config.max_n, config.max_n_named)
    if not config.supports_n:
        n = 1

    prompt = prompt_tokens_of(messages)
    budget = _budget(config, action, prompt, max_tokens)
    if isinstance(budget, web.Response):
        return budget
    choices = [_make_choice(state, messages, i, body, budget) for i in range(n)]
    spoil = _spoiler(config, action, messages)
    if stream:
        return await _stream(request, state, body, prompt, choices, cut=action, spoil=spoil)
    return await _whole(state, prompt, choices, spoil)


async def _scripted(
    request: web.Request, state: _State, action: ScriptItem, body: Any
) -> web.StreamResponse | None:
    """What a script item does before the request is read: an error, a drop, a hang."""
    config = state.config
    if isinstance(action, int):
        return _scripted_error(state, action)
    if action == "drop" or (
        action == "drop_mid" and not (isinstance(body, dict) and body.get("stream"))
    ):
        state.stats.drops += 1
        _drop(request)
        return None
    if action == "stall":
        state.stats.stalls += 1
        streamed = isinstance(body, dict) and body.get("stream")
        kind = "text/event-stream" if streamed else "application/json"
        response = web.StreamResponse(status=200, headers={"Content-Type": kind})
        await response.prepare(request)
        await _sleep(state, config.hang_s)
        _drop(request)
        return None
    if action == "hang":
        state.stats.hangs += 1
        await _sleep(state, config.hang_s)
        if state.closing.is_set():
            _drop(request)
            return None
    if action in (None, "ok") and config.fail_rate > 0 and state.rng.random() < config.fail_rate:
        return _scripted_error(state, config.fail_rate_status)
    return _GO_ON


def _budget(
    config: FakeConfig, action: ScriptItem, prompt: int, max_tokens: int | None
) -> int | web.Response | None:
    """The tokens a choice may generate, or the context-length error to answer with."""
    if config.context_limit is None:
        if action == "context":
            return _context_error(prompt, prompt, max_tokens or 0)
        return max_tokens
    limit = config.context_limit
    asked = max_tokens or 0
    too_long = prompt > limit or (
        config.context_counts_max_tokens and max_tokens is not None and prompt + asked > limit
    )
    if too_long or action == "context":
        return _context_error(limit, prompt, asked)
    room = limit - prompt
    return room if max_tokens is None else min(max_tokens, room)


async def _whole(
    state: _State, prompt: int, choices: list[_Choice], spoil: Spoiler = _unspoilt
) -> web.Response:
    """A non-streamed answer, after the time the longest choice takes."""
    config = state.config
    longest = max(c.tokens for c in choices)
    await _sleep(state, config.ttft_s + longest * config.per_token_s)
    out_choices = []
    for c in choices:
        message: dict[str, Any] = {"role": "assistant", "content": c.content}
        if c.reasoning is not None:
            message[config.reasoning_field] = c.reasoning
        out_choices.append(
            {
                "index": c.index,
                "message": message,
                "logprobs": None,
                "finish_reason": c.finish_reason,
            }
        )
    payload: dict[str, Any] = {
        "id": state.new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": config.model_name,
        "choices": out_choices,
    }
    if config.include_usage:
        counted = choices[:1] if config.usage_style in ("llama.cpp", "first_only") else choices
        payload["usage"] = _usage(state, prompt, counted)
    state.stats.completion_tokens += sum(c.tokens for c in choices)
    state.stats.prompt_tokens += prompt
    state.stats.choices += len(choices)
    spoil(payload)
    return web.json_response(payload)


def _deltas(config: FakeConfig, choices: list[_Choice]) -> list[deque[tuple[str, str]]]:
    """Each choice's stream pieces: its reasoning, then its content."""
    pieces: list[deque[tuple[str, str]]] = []
    for c in choices:
        q: deque[tuple[str, str]] = deque()
        if c.reasoning:
            field = config.reasoning_field
            q.extend((field, p) for p in split_chunks(c.reasoning, config.chunk_tokens))
        q.extend(("content", p) for p in split_chunks(c.content, config.chunk_tokens))
        pieces.append(q)
    return pieces


async def _stream(
    request: web.Request,
    state: _State,
    body: dict[str, Any],
    prompt: int,
    choices: list[_Choice],
    *,
    cut: ScriptItem = None,
    spoil: Spoiler = _unspoilt,
) -> web.StreamResponse | None:
    config = state.config
    stream_options = body.get("stream_options") or {}
    want_usage = bool(
        config.include_usage
        and isinstance(stream_options, dict)
        and stream_options.get("include_usage")
    )
    chunk_id = state.new_id()
    created = int(time.time())

    def chunk(choice_list: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        data: dict[str, Any] = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": config.model_name,
            "choices": choice_list,
        }
        if want_usage:
            data["usage"] = usage
        spoil(data)
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    def delta(index: int, d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": index, "delta": d, "logprobs": None, "finish_reason": finish}

    pieces = _deltas(config, choices)
    total_steps = max((len(q) for q in pieces), default=0)
    stop_after = total_steps // 2 if cut in ("drop_mid", "end_mid") else None

    await _sleep(state, config.ttft_s)
    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
    )
    await response.prepare(request)
    state.stats.prompt_tokens += prompt
    try:
        # One write per step: a chunk for every choice still generating.
        await response.write(
            b"".join(chunk([delta(c.index, {"role": "assistant", "content": ""})]) for c in choices)
        )
        step = 0
        while any(pieces):
            if stop_after is not None and step >= stop_after:
                if cut == "end_mid":
                    await response.write_eof()
                    return response
                state.stats.drops += 1
                _drop(request)
                return None
            step_tokens = 0
            out = []
            for c, q in zip(choices, pieces, strict=True):
                if not q:
                    continue
                key, text = q.popleft()
                words = count_tokens(text)
                step_tokens = max(step_tokens, words)
                state.stats.completion_tokens += words
                out.append(chunk([delta(c.index, {key: text})]))
            await response.write(b"".join(out))
            step += 1
            await _sleep(state, step_tokens * config.per_token_s)
            if state.closing.is_set():
                _drop(request)
                return None
        finishes = [None if cut == "no_finish" else c.finish_reason for c in choices]
        out = [chunk([delta(c.index, {}, f)]) for c, f in zip(choices, finishes, strict=True)]
        if want_usage:
            out = _with_usage_chunks(state, prompt, choices, out, chunk)
        state.stats.choices += len(choices)
        out.append(b"data: [DONE]\n\n")
        await response.write(b"".join(out))
        await response.write_eof()
    except ConnectionError:
        state.stats.cancelled += 1
        return response
    return response


def _with_usage_chunks(
    state: _State,
    prompt: int,
    choices: list[_Choice],
    finishes: list[bytes],
    chunk: Callable[[list[dict[str, Any]], dict[str, Any] | None], bytes],
) -> list[bytes]:
    """The finish chunks with usage chunks where the configured server puts them."""
    style = state.config.usage_style
    if style == "llama.cpp":  # one usage per choice, right after its finish
        out = []
        for c, finish in zip(choices, finishes, strict=True):
            out += [finish, chunk([], _usage(state, prompt, [c]))]
        return out
    counted = choices[:1] if style == "first_only" else choices
    return [*finishes, chunk([], _usage(state, prompt, counted))]


def make_app(config: FakeConfig | None = None, stats: FakeStats | None = None) -> web.Application:
    """An aiohttp application serving `config`, recording into `stats` (new ones if None).

    The state lives in the application (`app[STATE_KEY]`), so several apps can run
    side by side. Connection counting needs `FakeServer`'s site; with a plain
    `web.AppRunner` `stats.connections` stays 0.
    """
    config = config or FakeConfig()
    state = _State(config, stats or FakeStats())
    app = web.Application()
    app[STATE_KEY] = state
    base = config.base_path
    app.router.add_post(f"{base}/chat/completions", _chat)
    app.router.add_get(f"{base}/models", _models)

    async def on_shutdown(app: web.Application) -> None:
        state.closing.set()

    app.on_shutdown.append(on_shutdown)
    return app


# --------------------------------------------------------------------------- serving


class _CountingSite(web.BaseSite):
    """A TCP site that counts every connection it accepts."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, on_connection: Callable[[], None]
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._on_connection = on_connection
        self.bound_port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.bound_port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        on_connection = self._on_connection

        def protocol_factory() -> asyncio.Protocol:
            on_connection()
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(protocol_factory, self._host, self._port)
        self.bound_port = self._server.sockets[0].getsockname()[1]


class FakeServer:
    """Serves a `FakeConfig` on `host`:`port` (an ephemeral port by default).

    Use as `async with FakeServer(config) as srv:` or call `start()` / `stop()`.
    Keyword overrides build or amend the config: `FakeServer(supports_n=False)`.
    """

    def __init__(
        self,
        config: FakeConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 1.0,
        **overrides: Any,
    ) -> None:
        if config is None:
            config = FakeConfig(**overrides)
        elif overrides:
            config = replace(config, **overrides)
        self.config = config
        self.stats = FakeStats()
        self.host = host
        self.port = port
        self.app = make_app(config, self.stats)
        self._state = self.app[STATE_KEY]
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._started = False

    @property
    def url(self) -> str:
        """The base URL for OpenAI clients, e.g. "http://127.0.0.1:PORT/v1"."""
        if not self._started:
            raise RuntimeError("the fake server has not been started")
        return f"http://{self.host}:{self.port}{self.config.base_path}"

    @property
    def script(self) -> deque[ScriptItem]:
        """The rest of the fail script (a deque, consumed from the left)."""
        return self._state.script

    def push_script(self, *items: ScriptItem) -> None:
        """Append entries to the fail script (see `FakeConfig.fail_script`)."""
        for item in items:
            _check_script_item(item)
        self._state.script.extend(items)

    async def start(self) -> FakeServer:
        if self._runner is not None:
            raise RuntimeError("the fake server is already running")
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        site = _CountingSite(runner, self.host, self.port, self._count_connection)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = site.bound_port
        self._runner = runner
        self._started = True
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            self._state.closing.set()
            await runner.cleanup()

    async def __aenter__(self) -> FakeServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _count_connection(self) -> None:
        self.stats.connections += 1


@contextlib.contextmanager
def run_in_thread(
    config: FakeConfig | None = None, *, startup_timeout: float = 10.0, **kwargs: Any
) -> Iterator[FakeServer]:
    """Run a `FakeServer` in a background thread with its own event loop.

    Yields the running server (`.url`, `.stats`, `.config`); stops it and joins the
    thread on exit. Extra keyword arguments go to `FakeServer`.
    """
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        holder["loop"] = asyncio.get_running_loop()
        holder["stop"] = stop
        try:
            server = FakeServer(config, **kwargs)
            await server.start()
        except BaseException as exc:
            holder["error"] = exc
            ready.set()
            return
        holder["server"] = server
        ready.set()
        try:
            await stop.wait()
        finally:
            await server.stop()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="fake-server", daemon=True)
    thread.start()
    if not ready.wait(startup_timeout):
        raise RuntimeError("the fake server did not start in time")
    if "error" in holder:
        thread.join()
        raise holder["error"]
    try:
        yield holder["server"]
    finally:
        loop: asyncio.AbstractEventLoop = holder["loop"]
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(startup_timeout + 30)


# ------------------------------------------------------------------------------ CLI


def _parse_script(text: str) -> list[ScriptItem]:
    items: list[ScriptItem] = []
    for raw in text.split(","):
        word = raw.strip()
        if not word:
            continue
        item: ScriptItem = int(word) if word.isdigit() else word
        _check_script_item(item)
        items.append(item)
    return items


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.fake_server",
        description="Fake OpenAI-compatible chat-completions server (tokens are words).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    p.add_argument("--base-path", default="/v1")
    p.add_argument("--model", default="fake-model", help="model name to report")
    p.add_argument("--owned-by", default="fake", help="owned_by in /models (vLLM: vllm)")
    p.add_argument("--ttft", type=float, default=0.0, help="time to first token, seconds")
    p.add_argument("--per-token", type=float, default=0.0, help="seconds per generated token")
    p.add_argument("--chunk-tokens", type=int, default=1, help="words per streamed delta")
    p.add_argument(
        "--tokens",
        type=int,
        default=None,
        help="every output is exactly N words (think block + answer)",
    )
    p.add_argument("--answer", default="42", help="boxed answer of the --tokens responder")
    p.add_argument("--no-n", action="store_true", help="ignore n and return one choice")
    p.add_argument("--reject-n", action="store_true", help="answer 400 to n > 1")
    p.add_argument("--max-n", type=int, default=None, help="answer llama.cpp's 400 to n above N")
    p.add_argument(
        "--loading-requests", type=int, default=0, help="answer 503 Loading model to the first N"
    )
    p.add_argument(
        "--loading-seconds", type=float, default=0.0, help="answer 503 Loading model for S seconds"
    )
    p.add_argument("--context-limit", type=int, default=None)
    p.add_argument("--fail-rate", type=float, default=0.0, help="probability of HTTP 500")
    p.add_argument("--fail-seed", type=int, default=0)
    p.add_argument("--fail-script", default="", help="comma-separated, e.g. 500,hang,ok,drop,429")
    p.add_argument("--hang", type=float, default=30.0, help="seconds a 'hang' lasts")
    p.add_argument("--retry-after", type=float, default=None)
    p.add_argument("--reasoning-field", default="reasoning_content")
    p.add_argument("--stats-file", default=None, help="write JSON stats here on SIGTERM/SIGINT")
    return p


def config_from_args(args: argparse.Namespace) -> FakeConfig:
    responder = (
        default_responder
        if args.tokens is None
        else fixed_length_responder(args.tokens, args.answer)
    )
    return FakeConfig(
        model_name=args.model,
        owned_by=args.owned_by,
        base_path=args.base_path,
        responder=responder,
        ttft_s=args.ttft,
        per_token_s=args.per_token,
        chunk_tokens=args.chunk_tokens,
        supports_n=not args.no_n,
        reject_n=args.reject_n,
        max_n=args.max_n,
        loading_requests=args.loading_requests,
        loading_s=args.loading_seconds,
        context_limit=args.context_limit,
        fail_rate=args.fail_rate,
        fail_seed=args.fail_seed,
        fail_script=_parse_script(args.fail_script),
        hang_s=args.hang,
        retry_after=args.retry_after,
        reasoning_field=args.reasoning_field,
        record_bodies=False,
    )


async def _serve_until_signal(config: FakeConfig, host: str, port: int) -> dict[str, Any]:
    """Serve until SIGTERM or SIGINT; return the final stats."""
    server = FakeServer(config, host=host, port=port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(server.url, flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
    return server.stats.to_dict()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: print the base URL, serve until killed, then write the stats."""
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats = asyncio.run(_serve_until_signal(config, args.host, args.port))
    if args.stats_file:
        with open(args.stats_file, "w", encoding="utf-8") as fh:
            json.dump(stats, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
