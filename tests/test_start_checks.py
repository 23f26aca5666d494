"""Settings that could never work are refused at start, with one line and exit 2:
serve defaults above the server's own ceilings (every plain request would be refused),
and credentials given twice (aiohttp refuses every request that carries both)."""

from __future__ import annotations

import pytest

from pacore.cli import main
from tests.fake_server import FakeConfig, run_in_thread


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--max-resamples", "20"],
            "--max-resamples 20 is above the server's --max-resamples-limit 8",
        ),
        (
            ["--max-tokens", "200000"],
            "--max-tokens 200000 is above the server's --max-tokens-limit",
        ),
    ],
)
def test_serve_defaults_above_its_ceilings_are_refused(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["serve", "--upstream", "http://127.0.0.1:9/v1", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert message in err


def test_serve_defaults_within_raised_ceilings_pass_the_check() -> None:
    from pacore.cli import build_parser
    from pacore.cli.serve import plan_serve

    args = build_parser().parse_args(
        ["serve", "--upstream", "http://127.0.0.1:9/v1", "--max-resamples", "20",
         "--max-resamples-limit", "20"]
    )  # fmt: skip
    assert plan_serve(args).defaults.max_resamples == 20


def test_credentials_in_the_url_and_an_api_key_are_refused_before_any_request(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACORE_API_KEY", "sk-test")
    with run_in_thread(FakeConfig()) as server:
        url = server.url.replace("http://", "http://user:secret@")
        assert main(["run", "Q?", "--backend", url]) == 2
        assert server.stats.requests == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "give the credentials once" in err
    assert "secret" not in err
