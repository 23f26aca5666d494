""" "A preset or widths" is read once (`pacore.config.choose_widths`), so `pacore run`,
`pacore eval`'s method names and a served request agree on every spelling."""

from __future__ import annotations

import pytest

from pacore.cli import build_parser
from pacore.cli.run import plan_run
from pacore.config import PRESETS, PacoreConfig, ServeConfig, choose_widths
from pacore.errors import ConfigError
from pacore.eval.methods import PacoreMethod, parse_method
from pacore.serve.errors import ApiError
from pacore.serve.models import engine_config, parse_request, route_of

SPELLINGS = [*PRESETS, "16,4", "3", " 8 , 2 "]


def run_widths(*flags: str) -> tuple[int, ...]:
    args = build_parser().parse_args(["run", "Q?", "--backend", "http://127.0.0.1:9", *flags])
    return plan_run(args).config.widths


def served_widths(options: dict[str, object]) -> tuple[int, ...]:
    body = {"model": "pacore", "messages": [{"role": "user", "content": "Q?"}], "pacore": options}
    request = parse_request(body)
    config = engine_config(request, route_of(body), PacoreConfig(), ServeConfig())
    return config.widths


@pytest.mark.parametrize("text", SPELLINGS)
def test_every_surface_reads_a_spelling_the_same_way(text: str) -> None:
    expected = PRESETS.get(text) or tuple(int(p) for p in text.split(","))
    assert choose_widths(text) == expected
    assert run_widths("--widths", text) == expected
    method = parse_method(f"pacore:{text.replace(' ', '')}")
    assert isinstance(method, PacoreMethod)
    assert method.widths == expected
    if text not in PRESETS:  # the API takes widths as a list of integers
        assert served_widths({"widths": list(expected)}) == expected
    if text in PRESETS:
        assert run_widths("--preset", text) == expected
        assert served_widths({"preset": text}) == expected


@pytest.mark.parametrize("text", ["", "0", "4,,2", "x", "2000"])
def test_every_surface_refuses_a_bad_spelling(text: str) -> None:
    with pytest.raises(ConfigError):
        choose_widths(text)
    with pytest.raises(ConfigError):
        run_widths("--widths", text)
    with pytest.raises(ConfigError):
        parse_method(f"pacore:{text}")


@pytest.mark.parametrize("options", [{"widths": [0]}, {"widths": [2000]}, {"preset": "max"}])
def test_a_served_request_refuses_them_with_a_400(options: dict[str, object]) -> None:
    with pytest.raises(ApiError) as caught:
        served_widths(options)
    assert caught.value.status == 400


def test_widths_win_over_a_preset_and_nothing_is_the_default() -> None:
    assert choose_widths("2", "high") == (2,)
    assert choose_widths(None, "high") == (32, 4)
    assert choose_widths(None, None) is None
    assert run_widths() == PacoreConfig().widths
