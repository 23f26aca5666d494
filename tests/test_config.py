"""Widths, presets and config validation."""

from __future__ import annotations

from typing import Any

import pytest

from pacore.config import PRESETS, PacoreConfig, parse_widths, preset_widths
from pacore.errors import ConfigError


def test_published_presets() -> None:
    assert preset_widths("low") == (4,)
    assert preset_widths("medium") == (16,)
    assert preset_widths("high") == (32, 4)
    assert PacoreConfig.from_preset("high").all_widths == (32, 4, 1)


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'ultra'"):
        preset_widths("ultra")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("32,4", (32, 4)), (" 8 ", (8,)), ("1,1,1", (1, 1, 1)), ("16, 2", (16, 2))],
)
def test_parse_widths(text: str, expected: tuple[int, ...]) -> None:
    assert parse_widths(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0", "at least 1"),
        ("4,-1", "at least 1"),
        ("2.5", "not an integer"),
        ("a", "not an integer"),
        ("", "comma-separated"),
        ("4,,2", "comma-separated"),
        ("2000", "above the cap of 1024"),
        ("+4", "not an integer in plain digits"),
        ("8,02", "width '02' has a leading zero; write 2"),
        ("\uff18", "not an integer in plain digits"),
        ("1_6", "not an integer in plain digits"),
    ],
)
def test_bad_widths(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_widths(text)


def test_width_cap_is_configurable() -> None:
    assert parse_widths("2000", max_width=4096) == (2000,)
    with pytest.raises(ConfigError):
        PacoreConfig(widths=(2000,))
    assert PacoreConfig(widths=(2000,), max_width=2000).widths == (2000,)


def test_config_defaults_are_the_published_settings() -> None:
    cfg = PacoreConfig()
    assert cfg.widths == PRESETS["low"]
    assert (cfg.temperature, cfg.top_p) == (1.0, 1.0)
    assert cfg.compaction == "conclusion"
    sampling = cfg.sampling()
    assert sampling.temperature == 1.0
    assert sampling.top_p == 1.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("top_p", 0.0),
        ("max_tokens", 0),
        ("compaction", "summary"),
        ("on_failure", "ignore"),
        ("truncated", "maybe"),
        ("concurrency", 0),
        ("min_references", 0),
        ("widths", ()),
        ("widths", (True,)),
    ],
)
def test_config_rejects_bad_values(field: str, value: Any) -> None:
    with pytest.raises(ConfigError):
        PacoreConfig(**{field: value})


def test_with_options_is_a_validated_copy() -> None:
    cfg = PacoreConfig()
    hot = cfg.with_options(temperature=0.7, widths=(8,))
    assert (hot.temperature, hot.widths, cfg.widths) == (0.7, (8,), (4,))
    with pytest.raises(ConfigError):
        cfg.with_options(widths="0")
