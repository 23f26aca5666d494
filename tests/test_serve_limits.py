"""Server-side ceilings on every per-request option of `pacore serve`, through the openai SDK.

A request over a ceiling is a 400 naming the option (`param`) and the server's limit,
and costs no upstream request; the ceilings are listed on each PaCoRe model of
`/v1/models`; the worst-case upstream work of one request is bounded by `max_samples`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from pacore.cli import build_parser
from pacore.config import PacoreConfig, ServeConfig
from pacore.serve.models import worst_samples
from tests.fake_server import FakeConfig
from tests.serve_helpers import pacore_server

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 6 * 7?"}]
LIMITS = ServeConfig(
    max_n=2, max_tokens_limit=100, max_resamples_limit=3, max_rounds=2, max_trajectories=40,
    max_samples=60,
)  # fmt: skip


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=20)


OVER: list[tuple[dict[str, Any], str, str]] = [
    # (request fields, param, the limit the message names)
    ({"n": 3}, "n", "limit of 2"),
    ({"max_tokens": 101}, "max_tokens", "limit of 100"),
    ({"max_completion_tokens": 101}, "max_completion_tokens", "limit of 100"),
    ({"pacore": {"max_resamples": 1_000_000_000}}, "pacore.max_resamples", "limit of 3"),
    ({"pacore": {"widths": [1, 1, 1]}}, "pacore.widths", "limit of 2"),
    ({"pacore": {"widths": [40]}}, "pacore.widths", "limit of 40"),
    ({"pacore": {"widths": [2000]}}, "pacore.widths", "cap of 1024"),
    ({"n": 2, "pacore": {"preset": "high"}}, "pacore.widths", "limit of 40"),
    ({"pacore": {"widths": [4], "min_references": 5}}, "pacore.min_references", "width 4"),
    ({"pacore": {"widths": [19], "max_resamples": 3}}, "pacore.max_resamples", "limit of 60"),
    ({"pacore": {"compaction": "everything"}}, "pacore.compaction", "conclusion"),
    ({"pacore": {"on_failure": "retry"}}, "pacore.on_failure", "resample"),
    ({"pacore": {"truncated": "shorten"}}, "pacore.truncated", "drop"),
]


def test_every_option_over_its_ceiling_is_a_400_naming_it_and_the_limit() -> None:
    with pacore_server(settings=LIMITS) as (url, upstream):
        c = client(url)
        for asked, param, limit in OVER:
            fields = dict(asked)
            extra = {"pacore": fields.pop("pacore")} if "pacore" in fields else None
            with pytest.raises(openai.BadRequestError) as caught:
                c.chat.completions.create(
                    model="pacore-low", messages=QUESTION, extra_body=extra, **fields
                )
            error: dict[str, Any] = caught.value.body  # type: ignore[assignment]
            assert error["param"] == param, (fields, extra, error)
            assert error["type"] == "invalid_request_error"
            name = param.rsplit(".", 1)[-1]
            assert name in error["message"], error
            assert limit in error["message"], error
        # Up to the ceilings, the same options are served.
        reply = c.chat.completions.create(
            model="pacore-low:custom-model", messages=QUESTION, n=2, max_tokens=100,
            extra_body={"pacore": {"widths": [3, 2], "max_resamples": 3, "min_references": 2}},
        )  # fmt: skip
        assert len(reply.choices) == 2
        # Only the last request reached the upstream.
        assert all(b.get("model") == "custom-model" for b in upstream.stats.bodies)
        assert upstream.stats.requests == len(upstream.stats.bodies) > 0


def test_a_huge_max_resamples_against_a_failing_upstream_costs_nothing() -> None:
    """The issue's case: 1e9 resamples against an upstream that keeps failing made
    88,710 upstream requests. Now it is refused before any."""
    failing = FakeConfig(fail_rate=1.0)
    with pacore_server(failing, retries=0) as (url, upstream):
        with pytest.raises(openai.BadRequestError) as caught:
            client(url).chat.completions.create(
                model="pacore-low",
                messages=QUESTION,
                extra_body={"pacore": {"max_resamples": 1_000_000_000}},
            )
        assert "limit of 8" in caught.value.message
        assert upstream.stats.requests == 0


def test_the_upstream_work_of_an_admitted_request_stays_within_max_samples() -> None:
    failing = FakeConfig(fail_rate=1.0)
    config = PacoreConfig(max_resamples=3)
    settings = ServeConfig(max_samples=worst_samples(1, config))
    with pacore_server(failing, settings=settings, retries=0, use_n=False) as (url, upstream):
        with pytest.raises(openai.APIStatusError) as caught:
            client(url).chat.completions.create(
                model="pacore-low", messages=QUESTION, extra_body={"pacore": {"max_resamples": 3}}
            )
        assert caught.value.status_code == 502
        assert 0 < upstream.stats.requests <= settings.max_samples


def test_the_server_default_resamples_count_in_the_budget() -> None:
    defaults = PacoreConfig(max_resamples=8)
    settings = ServeConfig(max_samples=worst_samples(1, defaults) - 1)
    with pacore_server(defaults=defaults, settings=settings) as (url, upstream):
        with pytest.raises(openai.BadRequestError) as caught:
            client(url).chat.completions.create(model="pacore-low", messages=QUESTION)
        assert caught.value.body["param"] == "pacore.max_resamples"  # type: ignore[index]
        # Without resampling the same request costs its trajectories only.
        reply = client(url).chat.completions.create(
            model="pacore-low", messages=QUESTION, extra_body={"pacore": {"on_failure": "fail"}}
        )
        assert reply.choices[0].message.content
        assert upstream.stats.requests > 0


def test_models_list_the_limits_on_each_pacore_model() -> None:
    with pacore_server(settings=LIMITS) as (url, _):
        models = {m.id: m.model_extra or {} for m in client(url).models.list()}
    low = models["pacore-low"]
    assert low["pacore_widths"] == [4, 1]
    assert low["pacore_limits"] == {
        "n": 2,
        "max_tokens": 100,
        "max_resamples": 3,
        "rounds": 2,
        "width": 1024,
        "trajectories": 40,
        "samples": 60,
        "min_references": "at most the smallest width",
        "content": "text only",
    }
    assert models["pacore-high"]["pacore_limits"] == low["pacore_limits"]
    assert "pacore_limits" not in models["fake-model"]


def test_every_ceiling_is_a_serve_option_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    ceilings = ("max_n", "max_tokens_limit", "max_resamples_limit", "max_rounds")
    fields = {f.name: f for f in dataclasses.fields(ServeConfig)}
    for name in (*ceilings, "max_trajectories", "max_samples"):
        flag = "--" + name.replace("_", "-")
        assert f"{flag} " in help_text, flag
        assert f"(default: {fields[name].default})" in help_text, name
