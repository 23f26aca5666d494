"""Waiting at start-up for servers that are still loading their model.

llama.cpp answers every route with 503 "Loading model" (no `Retry-After`) until its
model is loaded; vLLM refuses connections until then. `probe_models` asks one
endpoint's `/models` what state it is in; `ReadyWait` decides, from the probes of
every endpoint, how long to wait before asking again (0.5 s doubling to 5 s) within
its limit, tells the user on stderr that it is waiting, and gives up with one line
naming each endpoint and what it last said.

Without `--wait-ready`, a server that answers (a 5xx "loading", an empty model list) is
waited for up to `LOADING_WAIT_S`, since it is plainly there, but one that refuses the
connection (or does not answer) and never answered fails at once, with a hint: most
often the URL has a typo or the server is not started. `--wait-ready SECONDS` waits that
long for either.

An endpoint is ready when `/models` answers 200 with a list of models that is not
empty (empty is fine when a model was named), or, when a model was named, answers
any other 4xx (a server without `/models`). A 5xx, a refused connection or a
timeout means "not yet"; 401/403 is an `AuthenticationError` at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pacore.backends.openai_compat.tls import aiohttp
from pacore.backends.openai_compat.transport import API_KEY_ENV
from pacore.backends.openai_compat.wire import (
    describe,
    error_message,
    listed_models,
    model_owner,
    model_window,
)
from pacore.errors import AuthenticationError, ConfigError, ConnectionFailed
from pacore.redact import redact_url

FIRST_POLL_S = 0.5
"""The first wait between two probes; each further wait doubles, up to `LAST_POLL_S`."""
LAST_POLL_S = 5.0
PROGRESS_EVERY_S = 10.0
"""How often a line says that pacore is still waiting."""
LOADING_WAIT_S = 300.0
"""How long a loading server (a 5xx) is waited for when `--wait-ready` was not given."""
WAIT_HINT = "is the server running? --wait-ready SECONDS waits for one that is starting"

ProbeState = Literal["listed", "unlisted", "loading", "unreachable"]


@dataclass(frozen=True)
class Probe:
    """What one endpoint's `/models` said."""

    url: str
    state: ProbeState
    """`listed`: 200 with a model list; `unlisted`: another 4xx (no list to read);
    `loading`: a 5xx; `unreachable`: no answer (refused, reset, timed out)."""
    models: tuple[str, ...] = ()
    said: str = ""
    """What it said when it did not list models: `HTTP 503: Loading model`, an error."""
    context_window: int | None = None
    """The first listed model's context window, when the server says it (vLLM's
    `max_model_len`, llama.cpp's `meta.n_ctx` per slot, or `context_length`)."""
    owner: str | None = None
    """The first listed model's `owned_by`: the server's name on vLLM (`vllm`), SGLang
    (`sglang`) and llama.cpp (`llamacpp`)."""

    def ready(self, named: bool) -> bool:
        """Whether requests may go to this endpoint (`named`: a model was given)."""
        if self.state == "listed":
            return bool(self.models) or named
        return self.state == "unlisted" and named

    @property
    def answered(self) -> bool:
        """Whether the server is up and serving (even if it lists no model)."""
        return self.state in ("listed", "unlisted")

    def __str__(self) -> str:
        """`URL (what it said)`, for the lines the user sees."""
        return f"{self.url} ({self.said or 'lists no models'})"


async def probe_models(
    session: aiohttp.ClientSession, base_url: str, limits: aiohttp.ClientTimeout
) -> Probe:
    """The state of `base_url`'s `/models` now; raises `AuthenticationError` on 401/403.
    The probe, and every message, name the URL without its credentials."""
    shown = redact_url(base_url)
    try:
        async with session.get(f"{base_url}/models", timeout=limits) as resp:
            status, body = resp.status, await resp.text(errors="replace")
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return Probe(shown, "unreachable", said=describe(exc))
    if status in (401, 403):
        raise AuthenticationError(
            f"{shown} refused the API key (HTTP {status}); "
            f"set {API_KEY_ENV[0]} or {API_KEY_ENV[1]}",
            status=status,
        )
    said = f"HTTP {status}: {error_message(body)}"
    if status >= 500:
        return Probe(shown, "loading", said=said)
    if status != 200:
        return Probe(shown, "unlisted", said=said)
    models = listed_models(body)
    if models is None:
        kind = resp.headers.get("Content-Type", "unknown content").split(";")[0]
        raise ConfigError(
            f"{shown}/models answered with {kind}, not an OpenAI model list: this is not "
            "an OpenAI-compatible API (the base URL usually ends in /v1)"
        )
    return Probe(
        shown,
        "listed",
        models=tuple(m["id"] for m in models),
        context_window=next((w for m in models if (w := model_window(m)) is not None), None),
        owner=model_owner(models[0]) if models else None,
    )


def path_hint(probes: Sequence[Probe]) -> str:
    """A hint when an endpoint answered `/models` with 404: its URL is likely missing
    its API path (`/v1`); empty otherwise."""
    if any(p.state == "unlisted" and p.said.startswith("HTTP 404") for p in probes):
        return (
            "; a 404 there usually means the URL lacks the API's path: an OpenAI-compatible "
            "server's URL usually ends in /v1"
        )
    return ""


def print_to_stderr(line: str) -> None:
    """The default way a backend tells the user what it waits for."""
    print(f"pacore: {line}", file=sys.stderr, flush=True)


class ReadyWait:
    """The schedule of probes while no endpoint is ready, and what the user is told."""

    def __init__(
        self,
        limit: float | None,
        *,
        clock: Callable[[], float],
        notify: Callable[[str], None],
    ) -> None:
        """Wait at most `limit` seconds of `clock` from now; say so through `notify`.

        `limit` None (no `--wait-ready`): wait up to `LOADING_WAIT_S` for a server that
        answers "loading", and not at all for one that cannot be reached.
        """
        self.limit = LOADING_WAIT_S if limit is None else limit
        self.explicit = limit is not None
        self._answered = False
        self._clock = clock
        self._notify = notify
        self._started = clock()
        self._next_poll = FIRST_POLL_S
        self._last_told: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the wait began."""
        return self._clock() - self._started

    def pause(self, probes: Sequence[Probe]) -> float:
        """Seconds to wait before probing again, none of `probes` being ready.

        Raises the error to stop with when the limit is spent or waiting cannot help:
        `ConfigError` when every server answers but none lists a model and none was
        named, else `ConnectionFailed`.
        """
        elapsed = self.elapsed
        left = self.limit - elapsed
        self._answered = self._answered or any(p.state != "unreachable" for p in probes)
        if (
            left <= 0
            or all(p.state == "unlisted" for p in probes)
            or not (self.explicit or self._answered)  # refused, and not asked to wait
        ):
            raise self._giving_up(probes)
        waiting = "; ".join(str(p) for p in probes)
        if self._last_told is None:
            self._notify(f"waiting for {waiting}; giving up after {self.limit:g}s")
            self._last_told = elapsed
        elif elapsed - self._last_told >= PROGRESS_EVERY_S:
            self._notify(f"still waiting ({elapsed:.0f}s) for {waiting}")
            self._last_told = elapsed
        pause = min(self._next_poll, left)
        self._next_poll = min(self._next_poll * 2, LAST_POLL_S)
        return pause

    def done(self, probes: Sequence[Probe], named: bool) -> None:
        """Say that the wait is over, if the user was told it had begun."""
        if self._last_told is not None:
            ready = ", ".join(p.url for p in probes if p.ready(named))
            self._notify(f"{ready} ready after {self.elapsed:.0f}s")

    def _giving_up(self, probes: Sequence[Probe]) -> Exception:
        waited = "" if self._last_told is None else f"; waited {self.limit:g}s (--wait-ready)"
        if all(p.answered for p in probes):
            said = "; ".join(f"{p.url}/models answered {p.said}" for p in probes if p.said)
            return ConfigError(
                f"the server lists no models{f' ({said})' if said else ''}; name one with "
                f"--model{waited}{path_hint(probes)}"
            )
        problems = "; ".join(str(p) for p in probes if not p.answered)
        if any(p.state == "loading" for p in probes):
            return ConnectionFailed(f"backend not ready: {problems}{waited}")
        hint = "" if self.explicit or self._answered else f"; {WAIT_HINT}"
        return ConnectionFailed(f"cannot reach backend {problems}{waited}{hint}")
