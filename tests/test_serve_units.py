"""The pure parts of `pacore serve`, and the text streaming both backends now offer."""

from __future__ import annotations

import pytest

from pacore.backends.base import TextKind
from pacore.backends.embedded import _shifted, _StreamReader
from pacore.backends.openai_compat import OpenAIBackend
from pacore.backends.openai_compat.wire import StreamAssembler
from pacore.cli import build_parser
from pacore.cli.serve import plan_serve
from pacore.errors import ConfigError
from pacore.serve.limits import Admission, keys_from
from pacore.serve.stream import ThinkSplitter
from pacore.types import SamplingParams
from tests.fake_server import FakeServer


def split(pieces: list[str]) -> list[tuple[str, str]]:
    splitter = ThinkSplitter()
    out = [p for piece in pieces for p in splitter.feed(piece)] + splitter.flush()
    merged: list[tuple[str, str]] = []
    for kind, text in out:
        if merged and merged[-1][0] == kind:
            merged[-1] = (kind, merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["<think>a b</think>c"], [("reasoning", "a b"), ("content", "c")]),
        (["<th", "ink>a", "</th", "ink>", "c d"], [("reasoning", "a"), ("content", "c d")]),
        ([" \n<think>", "x</think"], [("reasoning", "x</think")]),
        (["plain ", "text</think> more"], [("content", "plain text</think> more")]),
        (["<t"], [("content", "<t")]),
        (["<think></think>"], []),
    ],
)
def test_think_splitter(pieces: list[str], expected: list[tuple[str, str]]) -> None:
    assert split(pieces) == expected


def test_keys_and_admission() -> None:
    assert keys_from(["a", "b"], {"PACORE_SERVE_API_KEYS": " b, c ,"}) == ("a", "b", "c")
    assert keys_from([], {}) == ()
    admission = Admission(per_key=1, queue=5)
    ticket = admission.enter("k")
    ticket.leave()
    ticket.leave()
    assert admission.total == 0
    assert admission.by_key == {}
    admission.enter("-")
    admission.enter("-")  # no keys configured: only the queue limits
    assert admission.total == 2


def test_stream_assembler_and_embedded_reader_report_text() -> None:
    seen: list[tuple[int, TextKind, str]] = []

    def on_text(index: int, kind: TextKind, text: str) -> None:
        seen.append((index, kind, text))

    assembler = StreamAssembler(on_text)
    assembler.feed({"choices": [{"index": 1, "delta": {"reasoning_content": "r", "content": "c"}}]})
    reader = _StreamReader(2, None, (), _shifted(on_text, 4))
    reader({"choices": [{"index": 1, "delta": {"content": "x"}, "finish_reason": None}]})
    assert seen == [(1, "reasoning", "r"), (1, "content", "c"), (5, "content", "x")]
    assert _shifted(None, 3) is None


async def test_openai_backend_streams_text_of_every_sample() -> None:
    async with FakeServer(max_n=2) as srv:
        backend = OpenAIBackend(srv.url, model="fake-model")
        seen: dict[int, str] = {}

        def on_text(index: int, kind: TextKind, text: str) -> None:
            if kind == "content":
                seen[index] = seen.get(index, "") + text

        try:
            got = await backend.complete(
                [{"role": "user", "content": "q"}], 4, SamplingParams(), on_text=on_text
            )
        finally:
            await backend.aclose()
    assert sorted(seen) == [0, 1, 2, 3]
    assert [seen[i] for i in range(4)] == [c.text for c in got]


def test_plan_serve() -> None:
    args = build_parser().parse_args(
        ["serve", "--upstream", "http://127.0.0.1:9/v1", "--api-key", "k", "--temperature", "0.7"]
    )
    plan = plan_serve(args)
    assert plan.backend.backend == ("http://127.0.0.1:9/v1",)
    assert plan.defaults.temperature == 0.7
    assert plan.settings.host == "127.0.0.1"
    assert "k" in plan.settings.api_key
    with pytest.raises(ConfigError, match="--queue"):
        plan_serve(build_parser().parse_args(["serve", "--queue", "0"]))
    embedded = plan_serve(build_parser().parse_args(["serve"]))
    assert embedded.backend.embedded
    assert embedded.defaults.max_tokens == 512


def test_a_timeout_is_told_by_the_errors_type_not_its_text() -> None:
    from pacore.errors import RequestTimeout, ServerError
    from pacore.serve.completions import check
    from pacore.serve.errors import ApiError
    from pacore.types import Completion, Result, RoundResult, Trajectory, Usage

    def failed(exc: Exception) -> Result:
        completion = Completion.failed(exc)
        t = Trajectory(
            0, "", "", "error", None, Usage(), 0.0, error=completion.error,
            error_type=completion.error_type,
        )  # fmt: skip
        rnd = RoundResult(1, 1, (t,), 0, 0)
        return Result("p", "failed", "", "", (rnd,), (1,), 0, 0, 0, 1, 0.0, error=str(exc))

    statuses = []
    for exc in (
        RequestTimeout("no answer within 0.3 s"),
        ServerError("HTTP 500: upstream said RequestTimeout"),  # a server's words
    ):
        with pytest.raises(ApiError) as caught:
            check(failed(exc))
        statuses.append(caught.value.status)
    assert statuses == [504, 502]
