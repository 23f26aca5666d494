"""PNG plots of an evaluation, like the paper's figures, rendered to bytes.

- `accuracy_vs_ttc`: accuracy against mean TTC per problem (log x), one curve per method
  family with standard-error bars (Figure 1).
- `parallel_vs_sequential`: accuracy against the number of trajectories for single-round
  `pacore` (`K=[N]`) and `seq:N` (`K=[1,...,1]`), the width-versus-depth ablation.
- `prompt_tokens`: the largest single-call input against the number of trajectories, for
  compaction (`pacore`) and full trajectories (`nomp`), with an optional context-limit
  line (Figure 4).

matplotlib is optional (the `eval` extra) and imported only when a plot is drawn. Each
figure is a bare `Figure` on an Agg canvas: no pyplot, no global backend switch, so
plotting is safe next to other users of matplotlib. `report.write_report` writes the bytes.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pacore.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from pacore.eval.summary import MethodSummary

MISSING_MATPLOTLIB = "plots need matplotlib: pip install 'pacore[eval]'"

FAMILY_LABELS = {
    "pacore": "PaCoRe",
    "sc": "self-consistency",
    "seq": "sequential",
    "nomp": "no message passing",
    "single": "single sample",
}

ACCURACY_VS_TTC = "accuracy_vs_ttc.png"
PARALLEL_VS_SEQUENTIAL = "parallel_vs_sequential.png"
PROMPT_TOKENS = "prompt_tokens.png"
PLOT_NAMES = (ACCURACY_VS_TTC, PARALLEL_VS_SEQUENTIAL, PROMPT_TOKENS)
"""Every plot file an evaluation may write."""
PNG_SOURCE = "pacore eval"
"""The `Source` text chunk of every plot: how a later evaluation knows it is its own."""


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def require_matplotlib() -> None:
    """Raise `ConfigError` naming the extra when matplotlib is missing (check it early)."""
    if not matplotlib_available():
        raise ConfigError(MISSING_MATPLOTLIB)


def _figure() -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ConfigError(MISSING_MATPLOTLIB) from exc
    fig = Figure(figsize=(7.0, 4.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Source": PNG_SOURCE})
    return buf.getvalue()


def _label(family: str) -> str:
    return FAMILY_LABELS.get(family, family)


def _families(summaries: Sequence[MethodSummary]) -> list[str]:
    return list(dict.fromkeys(s.family for s in summaries))


def _title(summaries: Sequence[MethodSummary]) -> str:
    return ", ".join(dict.fromkeys(s.dataset for s in summaries))


def _trajectory_axis(ax: Axes, drawn: Sequence[MethodSummary]) -> None:
    """Log-2 x-axis with a plain-number tick at every trajectory count drawn."""
    ticks = sorted({s.trajectories for s in drawn})
    if ticks and ticks[0] > 0:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, labels=[str(t) for t in ticks])
        ax.minorticks_off()
    ax.set_xlabel("trajectories per problem")


def _finish(ax: Axes, title: str) -> None:
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)


def accuracy_vs_ttc(summaries: Sequence[MethodSummary]) -> bytes | None:
    """Accuracy (%) against mean TTC per problem (log x), a curve per family.

    Methods of one family are joined in order of TTC; each point is labelled with its
    method name and carries a standard-error bar. None when no method has both numbers.
    """
    points = [
        s
        for s in summaries
        if s.accuracy is not None and s.mean_ttc_tokens is not None and s.mean_ttc_tokens > 0
    ]
    if not points:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for family in _families(points):
        members = sorted(
            (s for s in points if s.family == family), key=lambda s: s.mean_ttc_tokens or 0.0
        )
        xs = [s.mean_ttc_tokens or 0.0 for s in members]
        ys = [(s.accuracy or 0.0) * 100 for s in members]
        errs = [(s.stderr or 0.0) * 100 for s in members]
        ax.errorbar(
            xs,
            ys,
            yerr=errs,
            marker="o",
            capsize=3,
            linestyle="-" if len(members) > 1 else "none",
            label=_label(family),
        )
        for s, x, y in zip(members, xs, ys, strict=True):
            ax.annotate(s.name, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("mean test-time compute per problem (tokens)")
    ax.set_ylabel("accuracy (%)")
    _finish(ax, _title(points))
    return _png(fig)


def _is_single_round(s: MethodSummary) -> bool:
    return len(s.widths) <= 1


def parallel_vs_sequential(
    summaries: Sequence[MethodSummary],
    *,
    parallel: str = "pacore",
    sequential: str = "seq",
) -> bytes | None:
    """Accuracy against trajectories for `K=[N]` (single-round `parallel` methods, those
    with at most one width in `widths`) against `sequential` methods. None without any."""
    series = {
        parallel: [s for s in summaries if s.family == parallel and _is_single_round(s)],
        sequential: [s for s in summaries if s.family == sequential],
    }
    series = {f: [s for s in ss if s.accuracy is not None] for f, ss in series.items()}
    if not any(series.values()):
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for family, members in series.items():
        if not members:
            continue
        members.sort(key=lambda s: s.trajectories)
        ax.errorbar(
            [s.trajectories for s in members],
            [(s.accuracy or 0.0) * 100 for s in members],
            yerr=[(s.stderr or 0.0) * 100 for s in members],
            marker="o",
            capsize=3,
            label=(
                f"parallel K=[N] ({family})"
                if family == parallel
                else f"sequential K=[1,...,1] ({family})"
            ),
        )
    drawn = [s for ss in series.values() for s in ss]
    _trajectory_axis(ax, drawn)
    ax.set_ylabel("accuracy (%)")
    _finish(ax, f"parallel vs sequential: {_title(drawn)}")
    return _png(fig)


def prompt_tokens(
    summaries: Sequence[MethodSummary],
    *,
    context_limit: int | None = None,
    compacted: str = "pacore",
    full: str = "nomp",
) -> bytes | None:
    """Largest single-call input (mean over results, solid; maximum, dashed) against
    trajectories, for compaction against full trajectories. None without any."""
    fig: Figure | None = None
    drawn: list[MethodSummary] = []
    for family, label in ((compacted, "compaction"), (full, "full trajectories")):
        members = sorted(
            (
                s
                for s in summaries
                if s.family == family and (s.mean_prompt_tokens or s.max_prompt_tokens or 0) > 0
            ),
            key=lambda s: s.trajectories,
        )
        if not members:
            continue
        if fig is None:
            fig = _figure()
            fig.add_subplot()
        ax = fig.axes[0]
        drawn.extend(members)
        xs = [s.trajectories for s in members]
        means = [s.mean_prompt_tokens or s.max_prompt_tokens or 0 for s in members]
        (line,) = ax.plot(xs, means, marker="o", label=f"{label} ({family}), mean")
        maxima = [s.max_prompt_tokens for s in members if s.max_prompt_tokens is not None]
        if len(maxima) == len(members) and maxima != means:
            ax.plot(
                xs,
                maxima,
                linestyle="--",
                marker=".",
                color=line.get_color(),
                label=f"{label} ({family}), max",
            )
    if fig is None:
        return None
    ax = fig.axes[0]
    if context_limit is not None:
        ax.axhline(
            context_limit,
            color="red",
            linestyle=":",
            label=f"context limit ({context_limit:,} tokens)",
        )
    ax.set_yscale("log")
    _trajectory_axis(ax, drawn)
    ax.set_ylabel("largest input of one call (tokens)")
    _finish(ax, f"input tokens: {_title(drawn)}")
    return _png(fig)


def render_all(
    summaries: Sequence[MethodSummary], *, context_limit: int | None = None
) -> dict[str, bytes]:
    """Every plot that has data, as `{file name: PNG bytes}`.

    Raises `ConfigError` when matplotlib is missing.
    """
    require_matplotlib()
    renders: list[tuple[str, Callable[[], bytes | None]]] = [
        (ACCURACY_VS_TTC, lambda: accuracy_vs_ttc(summaries)),
        (PARALLEL_VS_SEQUENTIAL, lambda: parallel_vs_sequential(summaries)),
        (PROMPT_TOKENS, lambda: prompt_tokens(summaries, context_limit=context_limit)),
    ]
    out = {}
    for name, render in renders:
        png = render()
        if png is not None:
            out[name] = png
    return out
