"""Credentials never leave pacore: `redact_url` on generated URLs, and every output of
`pacore serve` and `pacore run` (HTTP bodies, stream events, log lines, stderr,
`/metrics`, `/v1/models`) searched for the password after driving each upstream fault
against an upstream URL that carries one."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from pacore.cli import main
from pacore.config import BackendConfig, PacoreConfig
from pacore.errors import ConfigError
from pacore.redact import MASK, redact, redact_url
from pacore.serve.app import create_app
from tests.conftest import dead_url
from tests.fake_server import FakeConfig, run_in_thread
from tests.serve_helpers import serving

SECRET = "s3cretPW"
KEY = "k3yVALUE"
ONE = {"widths": [1]}
"""PaCoRe with one round-1 request: each fault script item meets one request."""

USERS = ["", "user", "me%40corp"]
PASSWORDS = [SECRET, f"a:{SECRET}", f"{SECRET}%2Fx", f"p@{SECRET}"]
HOSTS = ["example.com", "127.0.0.1:8000", "[::1]:9", "h"]
TAILS = ["", "/v1", "/v1/", "/v1?x=1", f"/v1?api_key={KEY}&model=m", f"?token={KEY}#frag"]


def generated_urls() -> Iterator[tuple[str, str, str]]:
    """(url, user, the url as it should be shown), built from their parts."""
    for scheme, user, password, host, tail in itertools.product(
        ("http", "https"), USERS, PASSWORDS, HOSTS, TAILS
    ):
        shown_tail = tail.replace(KEY, MASK)
        yield (
            f"{scheme}://{user}:{password}@{host}{tail}",
            user,
            f"{scheme}://{user}:{MASK}@{host}{shown_tail}",
        )


def test_redact_url_removes_every_password_and_key_and_keeps_the_rest() -> None:
    for url, _, shown in generated_urls():
        assert redact_url(url) == shown
        assert SECRET not in shown
        assert KEY not in shown
        assert redact_url(shown) == shown  # idempotent
        assert redact(f"failed on '{url}': refused") == f"failed on '{shown}': refused"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/v1", "https://user@host/v1", "http://h/v1?model=m&keys=1", "x", ""],
)
def test_urls_without_credentials_are_unchanged(url: str) -> None:
    assert redact_url(url) == url
    assert redact(f"see {url}.") == f"see {url}."


def test_a_malformed_backend_url_is_refused_without_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        BackendConfig(backend=(f"ftp://u:{SECRET}@host/v1",))
    assert SECRET not in str(caught.value)
    assert f"u:{MASK}@host" in str(caught.value)


def with_password(url: str) -> str:
    return url.replace("http://", f"http://user:{SECRET}@", 1)


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # aiohttp refuses a URL's credentials beside an Authorization header.
    monkeypatch.delenv("PACORE_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.mark.usefixtures("no_env_key")
def test_no_serve_output_names_the_upstream_password(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    log: list[dict[str, Any]] = []
    seen: list[str] = []
    question = [{"role": "user", "content": "What is 6 * 7?"}]

    def post(url: str, body: dict[str, Any]) -> None:
        r = httpx.post(f"{url}/chat/completions", json=body, timeout=30)
        seen.append(f"{r.status_code} {r.text}")

    faults: list[tuple[Any, dict[str, Any]]] = [
        (500, {"model": "fake-model"}),
        ("drop", {"model": "fake-model"}),
        ("hang", {"model": "fake-model"}),
        ("stall", {"model": "fake-model"}),
        ("stall", {"model": "fake-model", "stream": True}),
        ("drop", {"model": "fake-model", "stream": True}),
        ("drop", {"model": "m", "pacore": ONE}),
        ("drop", {"model": "m", "pacore": ONE, "stream": True}),
        ("stall", {"model": "m", "pacore": ONE, "stream": True}),
    ]
    fake = FakeConfig(fail_script=[f for f, _ in faults], hang_s=30)
    backend: dict[str, Any] = {"wait_ready": 0.0, "retries": 0, "timeout": 0.5, "use_n": False}
    with run_in_thread(fake) as upstream:
        config = BackendConfig(backend=(with_password(upstream.url),), **backend)
        defaults = PacoreConfig(on_failure="fail")
        with serving(create_app(config, defaults, log=log.append)) as url:
            for _, body in faults:
                post(url, {**body, "messages": question})
            models = openai.OpenAI(base_url=url, api_key="x").models.list()
            seen.append(str([m.model_dump() for m in models]))
            seen.append(httpx.get(f"{url[:-3]}/metrics").text)
            seen.append(httpx.get(f"{url[:-3]}/health").text)
        assert upstream.stats.statuses[500] == 1
    # An upstream that cannot be reached at all.
    config = BackendConfig(backend=(with_password(dead_url()),), **backend)
    with serving(create_app(config, log=log.append)) as url:
        post(url, {"model": "pacore-low", "messages": question})
        post(url, {"model": "fake-model", "messages": question})
    outputs = [*seen, *map(str, log), *(r.getMessage() for r in caplog.records)]
    outputs.append(capfd.readouterr().err)
    everything = "\n".join(outputs)
    assert f"user:{MASK}@127.0.0.1" in everything  # the URLs were shown, redacted
    assert SECRET not in everything
    statuses = [502, 502, 504, 504, 504, 502, 502, 502, 504, 502, 502]
    assert [r["status"] for r in log] == statuses


@pytest.mark.usefixtures("no_env_key")
def test_pacore_run_never_prints_the_backend_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "Q", "--backend", with_password(dead_url()), "--wait-ready", "0"]) != 0
    err = capsys.readouterr().err
    assert f"user:{MASK}@" in err
    assert SECRET not in err
