"""The overview's scaling plot: lines per family, log ticks, a legend that is never cut."""

from __future__ import annotations

import math
import random

from pacore.view.plot import (
    LEFT,
    PALETTE,
    log_ticks,
    marker_path,
    scaling_plot,
    tokens_label,
)

SUMMARY = {
    "methods": {
        "pacore:low": {"family": "pacore", "accuracy": 0.5, "mean_ttc_tokens": 4000},
        "pacore:medium": {"family": "pacore", "accuracy": 0.75, "mean_ttc_tokens": 16000},
        "single": {"family": "single", "accuracy": 0.25, "mean_ttc_tokens": 1000},
        "broken": {"family": "x", "accuracy": None},
    }
}


def test_one_line_per_family_sorted_by_ttc() -> None:
    plot = scaling_plot(SUMMARY)
    assert plot is not None
    assert [s.family for s in plot.series] == ["pacore", "single"]
    low, medium = plot.series[0].points
    assert (low.method, medium.method) == ("pacore:low", "pacore:medium")
    assert low.x < medium.x
    assert medium.y < low.y  # higher accuracy is higher up
    assert plot.series[1].points[0].x > LEFT  # the smallest TTC is inside the axes
    assert scaling_plot({}) is None
    assert scaling_plot({"methods": {"a": {"accuracy": 1.0, "mean_ttc_tokens": 0}}}) is None


def test_ticks_are_readable_token_counts_on_a_log_scale() -> None:
    assert [tokens_label(v) for v in (500, 1000, 2500, 1e4, 1e5, 1e6, 12_376_000)] == [
        "500", "1k", "2.5k", "10k", "100k", "1M", "12.4M",
    ]  # fmt: skip
    assert tokens_label(999_999) == "1M"
    assert log_ticks(3000, 90_000) == [5000, 10_000, 20_000, 50_000]
    assert log_ticks(1000, 3e6) == [1e3, 1e4, 1e5, 1e6]  # too many 1-2-5 steps: decades
    assert log_ticks(4000, 4800) == [4000, 4800]  # none inside: the ends
    plot = scaling_plot(SUMMARY)
    assert plot is not None
    labels = [t.label for t in plot.x_ticks]
    assert labels == ["1k", "2k", "5k", "10k", "20k"]
    xs = [t.at for t in plot.x_ticks]
    assert xs == sorted(xs)
    # Equal ratios are equal distances: a log scale.
    assert math.isclose(xs[3] - xs[0], xs[4] - xs[1], abs_tol=0.2)
    assert [t.label for t in plot.y_ticks] == ["0%", "20%", "40%", "60%", "80%", "100%"]


def test_eight_methods_stay_apart_and_every_label_fits() -> None:
    rng = random.Random(3)
    families = ["pacore", "sc", "seq", "nomp", "single", "plugin-a", "plugin-b", "plugin-c"]
    methods = {
        f"{family}:{'x' * rng.randint(1, 20)}": {
            "family": family,
            "accuracy": rng.random(),
            "mean_ttc_tokens": 10 ** rng.uniform(3, 7),
        }
        for family in families
    }
    plot = scaling_plot({"methods": methods})
    assert plot is not None
    assert len({s.colour for s in plot.series}) == 8 == len(PALETTE)
    assert {s.colour for s in plot.series} == set(PALETTE)
    for s in plot.series:
        for p in s.points:
            assert plot.left <= p.x <= plot.right
            assert plot.top <= p.y <= plot.bottom
    named = [e.text for e in plot.legend if not e.shape]
    assert len(named) == 8
    assert all(any(e.startswith(m + ":") for e in named) for m in methods)
    ys = [e.y for e in plot.legend]
    assert ys == sorted(ys)
    assert ys[-1] < plot.height
    assert plot.legend_x > plot.right  # the legend is beside the axes, not over them
    assert marker_path("circle", 1, 1, 2).startswith("M")
