"""Reports of an evaluation: `summary.json`, `report.md` and PNG plots.

The eval runner condenses each method's graded results into a `MethodSummary`
(`pacore.eval.summary`, with the functions of `pacore.eval.metrics`); this module turns
a list of them into files.
`summary_dict` and `render_markdown` are pure; `write_report` is the only I/O, and it
writes every file atomically (`pacore.io.atomic`), so an interrupted report never
leaves a half-written file behind.

`report.md` holds a table shaped like the paper's Tables 1 and 2: one row per method,
one column per dataset, each cell the accuracy in percent with the mean TTC per problem
in thousands of tokens, e.g. `93.7 (1873k)`; and a second table with the analyses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pacore.eval import plots as _plots
from pacore.eval.metrics import Rate
from pacore.eval.summary import MethodSummary as MethodSummary  # re-exported
from pacore.io import formats
from pacore.io.atomic import atomic_write
from pacore.io.formats import FORMAT_KEY
from pacore.io.guard import check_output
from pacore.io.jsonl import loads

SUMMARY_JSON = "summary.json"
REPORT_MD = "report.md"

MISSING = "—"
"""What a table cell shows when there is no value."""


@dataclass(frozen=True)
class ReportFiles:
    """The files `write_report` wrote."""

    summary_json: Path
    report_md: Path
    plots: tuple[Path, ...]


# ------------------------------------------------------------------------ formats


def format_ttc(tokens: float | None) -> str:
    """Tokens in thousands, as the paper writes them: `1873k`; `5.2k` under 10k."""
    if tokens is None:
        return MISSING
    k = tokens / 1000
    return f"{k:.0f}k" if k >= 10 else f"{k:.1f}k"


def format_percent(fraction: float | None) -> str:
    """A fraction as a percent with one decimal, without the sign: `0.937` -> `93.7`."""
    return MISSING if fraction is None else f"{fraction * 100:.1f}"


def format_cell(accuracy: float | None, mean_ttc_tokens: float | None) -> str:
    """A Table 1/2 cell: accuracy in percent with the mean TTC, e.g. `93.7 (1873k)`."""
    if mean_ttc_tokens is None:
        return format_percent(accuracy)
    return f"{format_percent(accuracy)} ({format_ttc(mean_ttc_tokens)})"


def format_rate(rate: Rate | None) -> str:
    """`25.0% (1/4)`; `— (0/0)` when the denominator is 0; `—` when not measured."""
    if rate is None:
        return MISSING
    if rate.value is None:
        return f"{MISSING} (0/0)"
    return f"{rate.value * 100:.1f}% ({rate.numerator}/{rate.denominator})"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines.extend("| " + " | ".join(_escape(c) for c in row) + " |" for row in rows)
    return lines


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


# ------------------------------------------------------------------------ renders


def _created_text(created: datetime | None) -> str:
    when = created if created is not None else datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _single_dataset(summaries: Sequence[MethodSummary]) -> str:
    datasets = _unique([s.dataset for s in summaries])
    if len(datasets) != 1:
        raise ValueError(
            f"a summary covers one dataset, got {len(datasets)}: {', '.join(datasets) or 'none'}"
        )
    names = [s.name for s in summaries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"methods summarised twice: {', '.join(duplicates)}")
    return datasets[0]


def summary_dict(
    summaries: Sequence[MethodSummary],
    *,
    created: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of `summary.json`: `{"methods": {name: {...}}, "dataset", "created"}`.

    Every summary must be of the same dataset, each method once. `extra` (model, runs,
    pool size, grader...) is merged into the top level.
    """
    dataset = _single_dataset(summaries)
    out: dict[str, Any] = {
        FORMAT_KEY: formats.EVAL_SUMMARY.tag,
        "methods": {s.name: s.to_dict() for s in summaries},
        "dataset": dataset,
        "created": _created_text(created),
    }
    if extra:
        out.update(extra)
    return out


def _round_accuracies(rates: Sequence[Rate]) -> str:
    if not rates:
        return MISSING
    return " → ".join(format_percent(r.value) for r in rates)


def _analysis_row(s: MethodSummary) -> list[str]:
    p = s.pass_at_1
    cross = s.cross_check.per_solution if s.cross_check else None
    outcomes = s.outcomes
    return [
        s.name,
        f"{format_percent(p.mean)} ± {format_percent(p.stderr)}" if p else MISSING,
        f"[{format_percent(p.ci_low)}, {format_percent(p.ci_high)}]" if p else MISSING,
        f"{p.n_problems} × {p.n_runs}" if p else MISSING,
        format_ttc(s.mean_ttc_tokens),
        format_ttc(s.max_context_tokens),
        _round_accuracies(s.accuracy_per_round),
        format_rate(s.emergent),
        MISSING if cross is None else f"{cross:.2f}",
        format_rate(s.solipsism),
        f"{outcomes.failed} / {outcomes.ungradable}" if outcomes else MISSING,
    ]


ANALYSIS_HEADER = (
    "method",
    "accuracy ± s.e.",
    "95% CI",
    "problems × runs",
    "mean TTC",
    "max context",
    "accuracy per round",
    "emergent correctness",
    "cross-checks / solution",
    "solipsism",
    "failed / ungradable",
)


def render_markdown(
    summaries: Sequence[MethodSummary],
    *,
    title: str = "PaCoRe evaluation",
    plots: Sequence[str] = (),
) -> str:
    """`report.md`'s text (`write_report` adds `REPORT_MARK`): the accuracy table (rows =
    methods, columns = datasets) and analyses.

    Summaries may span several datasets; a method missing from a dataset shows `—`.
    `plots` are file names (relative to the report) to embed at the end.
    """
    methods = _unique([s.name for s in summaries])
    datasets = _unique([s.dataset for s in summaries])
    by_key = {(s.name, s.dataset): s for s in summaries}
    lines = [f"# {_escape(title)}", ""]
    lines.append(
        "Accuracy (pass@1, %) with the mean test-time compute per problem in thousands of tokens."
    )
    lines.append("")
    rows = []
    for m in methods:
        row = [m]
        for d in datasets:
            s = by_key.get((m, d))
            row.append(format_cell(s.accuracy, s.mean_ttc_tokens) if s else MISSING)
        rows.append(row)
    lines.extend(_table(("method", *datasets), rows))
    for d in datasets:
        lines.extend(["", f"## Analyses: {_escape(d)}" if len(datasets) > 1 else "## Analyses", ""])
        confidences = {s.pass_at_1.confidence for s in summaries if s.pass_at_1}
        header = list(ANALYSIS_HEADER)
        if len(confidences) == 1:
            header[2] = f"{next(iter(confidences)) * 100:g}% CI"
        rows = [_analysis_row(s) for s in summaries if s.dataset == d]
        lines.extend(_table(header, rows))
    lines.extend(
        [
            "",
            "Emergent correctness: P(final answer correct | every input message wrong). "
            "Cross-checks: occurrences of “reference”, “参考”, “Ref <n>” and “ref <n>” per final "
            "solution. Solipsism (pacore's measure; the paper has none): final answers that match "
            "none of their references, right (emergent) or wrong. "
            "Failed runs are infrastructure failures, counted apart from wrong answers.",
        ]
    )
    if plots:
        lines.append("")
        lines.extend(f"![{Path(p).stem.replace('_', ' ')}]({p})" for p in plots)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- I/O


def write_report(
    out_dir: Path | str,
    summaries: Sequence[MethodSummary],
    *,
    created: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
    title: str | None = None,
    plots: bool | None = None,
    context_limit: int | None = None,
) -> ReportFiles:
    """Write `summary.json`, `report.md` and the plots into `out_dir` (created if needed).

    `plots`: True draws them and raises `ConfigError` when matplotlib is missing (before
    anything is written); None draws them when matplotlib is installed; False skips
    them. `context_limit` adds the model's context window to the prompt-tokens plot.
    """
    summary = summary_dict(summaries, created=created, extra=extra)
    out = Path(out_dir)
    pngs: dict[str, bytes] = {}
    if plots or (plots is None and _plots.matplotlib_available()):
        pngs = _plots.render_all(summaries, context_limit=context_limit)
    text = render_markdown(
        summaries,
        title=title or f"PaCoRe evaluation: {summary['dataset']}",
        plots=list(pngs),
    )
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / SUMMARY_JSON
    report_path = out / REPORT_MD
    atomic_write(
        summary_path, json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    )
    atomic_write(report_path, text + REPORT_MARK)
    written = []
    for name, png in pngs.items():
        atomic_write(out / name, png)
        written.append(out / name)
    return ReportFiles(summary_json=summary_path, report_md=report_path, plots=tuple(written))


REPORT_MARK = f"\n<!-- written by pacore eval ({formats.EVAL_REPORT.tag}) -->\n"
"""The last line of `report.md`: how a later evaluation knows the file is its own."""


def check_report_outputs(out_dir: Path | str) -> None:
    """Refuse, before anything is written or sent, an `out_dir` holding a `summary.json`,
    `report.md` or plot of the names `write_report` writes that pacore did not write
    (`--out` naming a folder of the user's own): one line, the files untouched."""
    out = Path(out_dir)
    check_output(out / SUMMARY_JSON, owned=_summary_owned, what="summary")
    check_output(out / REPORT_MD, owned=_report_owned, what="report")
    for name in _plots.PLOT_NAMES:
        check_output(out / name, owned=_plot_owned, what="plot")


_OWNED_LIMIT = 64 << 20
"""A larger `summary.json` is not one pacore wrote."""


def _summary_owned(path: Path) -> bool:
    """A JSON object marked `pacore.eval-summary`, or one of an earlier pacore (its
    `methods`, `dataset` and `created`, no marker)."""
    try:
        if path.stat().st_size > _OWNED_LIMIT:
            return False
        data = loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    if FORMAT_KEY in data:
        return formats.EVAL_SUMMARY.marks(data[FORMAT_KEY])
    return isinstance(data.get("methods"), dict) and {"dataset", "created"} <= data.keys()


def _report_owned(path: Path) -> bool:
    """A report ending with `REPORT_MARK`, or an earlier pacore's (its default title)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
            fh.seek(max(0, path.stat().st_size - 256))
            tail = fh.read()
    except OSError:
        return False
    mark = f"({formats.EVAL_REPORT.name}/".encode()
    return mark in tail or head.startswith(b"# PaCoRe evaluation")


def _plot_owned(path: Path) -> bool:
    """A PNG whose text chunks name pacore (or Matplotlib: an earlier pacore's plots)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return head.startswith(b"\x89PNG\r\n\x1a\n") and (
        _plots.PNG_SOURCE.encode() in head or b"Matplotlib" in head
    )
