"""Reports: summary.json shape, report.md tables, PNG plots, atomic writes."""

from __future__ import annotations

import builtins
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pacore.errors import ConfigError, StorageError
from pacore.eval import plots
from pacore.eval.metrics import (
    MarkerStats,
    OutcomeCounts,
    PassAt1,
    Rate,
    cross_check_frequency,
    pass_at_1,
)
from pacore.eval.report import (
    format_cell,
    format_rate,
    format_ttc,
    render_markdown,
    summary_dict,
    write_report,
)
from pacore.eval.summary import MethodSummary
from pacore.io.atomic import atomic_write

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CREATED = datetime(2026, 1, 20, 12, 0, 0, tzinfo=UTC)


def passing(mean: float, stderr: float = 0.01, n_problems: int = 30, n_runs: int = 8) -> PassAt1:
    return PassAt1(
        mean=mean,
        stderr=stderr,
        ci_low=mean - 2 * stderr,
        ci_high=mean + 2 * stderr,
        n_problems=n_problems,
        n_runs=n_runs,
        n_scores=n_problems * n_runs,
    )


def summary(
    name: str,
    family: str,
    trajectories: int,
    accuracy: float,
    ttc: float,
    *,
    dataset: str = "AIME 2025",
    widths: tuple[int, ...] = (),
    prompt: float | None = None,
    **kwargs: Any,
) -> MethodSummary:
    return MethodSummary(
        name=name,
        family=family,
        trajectories=trajectories,
        dataset=dataset,
        pass_at_1=passing(accuracy),
        mean_ttc_tokens=ttc,
        max_context_tokens=40_000,
        mean_prompt_tokens=prompt,
        max_prompt_tokens=int(prompt * 1.2) if prompt else None,
        widths=widths,
        **kwargs,
    )


def paper_like() -> list[MethodSummary]:
    """Every family, with the paper's headline numbers where it has them."""
    return [
        summary("single", "single", 1, 0.841, 50_000, prompt=200),
        summary(
            "pacore:low",
            "pacore",
            5,
            0.897,
            255_000,
            widths=(4,),
            prompt=4_000,
            emergent=Rate(1, 4),
            cross_check=cross_check_frequency(["Reference 1 and 参考", "ref 2"]),
            solipsism=Rate(3, 30),
            outcomes=OutcomeCounts(correct=200, wrong=38, ungradable=1, failed=1),
            accuracy_per_round=(Rate(50, 100), Rate(9, 10)),
        ),
        summary("pacore:medium", "pacore", 17, 0.925, 908_000, widths=(16,), prompt=16_000),
        summary("pacore:high", "pacore", 37, 0.937, 1_873_400, widths=(32, 4), prompt=32_000),
        summary("sc:16", "sc", 16, 0.859, 773_000),
        summary("sc:64", "sc", 64, 0.851, 3_094_000),
        summary("seq:4", "seq", 4, 0.86, 200_000, widths=(1, 1, 1, 1)),
        summary("seq:16", "seq", 16, 0.87, 800_000, widths=(1,) * 16),
        summary("nomp:4", "nomp", 5, 0.88, 260_000, widths=(4,), prompt=200_000),
        summary("nomp:16", "nomp", 17, 0.5, 700_000, widths=(16,), prompt=800_000),
    ]


# ------------------------------------------------------------------------ formats


def test_cell_formatting_like_the_paper() -> None:
    assert format_cell(0.937, 1_873_400) == "93.7 (1873k)"
    assert format_cell(0.841, 50_000) == "84.1 (50k)"
    assert format_cell(1.0, 5_230) == "100.0 (5.2k)"
    assert format_cell(None, 12_000) == "— (12k)"
    assert format_cell(0.5, None) == "50.0"
    assert format_ttc(None) == "—"
    assert format_ttc(999) == "1.0k"
    assert format_rate(Rate(1, 4)) == "25.0% (1/4)"
    assert format_rate(Rate(0, 0)) == "— (0/0)"
    assert format_rate(None) == "—"


# ------------------------------------------------------------------- summary.json


def test_summary_json_shape_and_values() -> None:
    data = summary_dict(paper_like(), created=CREATED, extra={"model": "m", "runs": 8})
    assert data["dataset"] == "AIME 2025"
    assert data["created"] == "2026-01-20T12:00:00Z"
    assert data["model"] == "m"
    assert list(data["methods"])[:2] == ["single", "pacore:low"]
    low = data["methods"]["pacore:low"]
    for key in (
        "accuracy",
        "stderr",
        "ci_low",
        "ci_high",
        "mean_ttc_tokens",
        "max_context_tokens",
        "n_problems",
        "n_runs",
        "emergent_correctness",
        "cross_check_per_solution",
        "solipsism",
        "failures",
    ):
        assert key in low, key
    assert low["accuracy"] == pytest.approx(0.897)
    assert 0.0 <= low["accuracy"] <= 1.0
    assert low["stderr"] == pytest.approx(0.01)
    assert low["mean_ttc_tokens"] == 255_000
    assert low["max_context_tokens"] == 40_000
    assert (low["n_problems"], low["n_runs"]) == (30, 8)
    assert low["emergent_correctness"] == pytest.approx(0.25)
    assert low["emergent_correctness_counts"] == [1, 4]
    assert low["cross_check_per_solution"] == pytest.approx(1.5)
    assert low["solipsism"] == pytest.approx(0.1)
    assert low["failures"] == 1
    assert low["outcomes"]["ungradable"] == 1
    assert low["accuracy_per_round"][1] == {"value": 0.9, "numerator": 9, "denominator": 10}
    assert low["widths"] == [4]
    # Not measured: null, not 0.
    assert data["methods"]["sc:16"]["emergent_correctness"] is None
    assert data["methods"]["sc:16"]["failures"] is None
    json.dumps(data, allow_nan=False)


def test_summary_of_an_ungraded_method_and_extra_fields() -> None:
    ungraded = MethodSummary(
        "single", "single", 1, "d", mean_ttc_tokens=10.0, extra={"grader": "none"}
    )
    entry = summary_dict([ungraded], created=CREATED)["methods"]["single"]
    assert entry["accuracy"] is None
    assert entry["stderr"] is None
    assert entry["grader"] == "none"
    assert ungraded.accuracy is None


def test_summary_from_real_pass_at_1() -> None:
    p = pass_at_1({"a": [1.0, 0.0], "b": [1.0, 1.0]})
    entry = MethodSummary("single", "single", 1, "d", pass_at_1=p).to_dict()
    assert entry["accuracy"] == pytest.approx(0.75)
    assert (entry["ci_low"], entry["ci_high"]) == (p.ci_low, p.ci_high)


def test_summary_rejects_mixed_datasets_and_duplicate_methods() -> None:
    a = summary("single", "single", 1, 0.5, 10, dataset="A")
    with pytest.raises(ValueError, match="one dataset"):
        summary_dict([a, summary("sc:4", "sc", 4, 0.5, 10, dataset="B")])
    with pytest.raises(ValueError, match="twice"):
        summary_dict([a, a])
    with pytest.raises(ValueError, match="one dataset, got 0"):
        summary_dict([])


# ---------------------------------------------------------------------- report.md


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """The cells of the rows of the first table whose header starts with `header_start`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def test_report_md_accuracy_table_like_table_1() -> None:
    summaries = [
        *paper_like(),
        summary("pacore:high", "pacore", 37, 0.945, 1_796_000, dataset="HMMT 2025"),
        summary("sc:256", "sc", 256, 0.847, 12_376_000, dataset="HMMT 2025"),
    ]
    text = render_markdown(summaries)
    assert "| method | AIME 2025 | HMMT 2025 |" in text
    rows = {r[0]: r[1:] for r in table_rows(text, "| method | AIME 2025 |")}
    assert rows["pacore:high"] == ["93.7 (1873k)", "94.5 (1796k)"]
    assert rows["single"] == ["84.1 (50k)", "—"]
    assert rows["sc:256"] == ["—", "84.7 (12376k)"]
    assert "## Analyses: HMMT 2025" in text


def test_report_md_analysis_table() -> None:
    text = render_markdown(paper_like())
    header = "| method | accuracy ± s.e. | 95% CI | problems × runs |"
    assert header in text
    rows = table_rows(text, header)
    low = next(r for r in rows if r[0] == "pacore:low")
    assert low[1:4] == ["89.7 ± 1.0", "[87.7, 91.7]", "30 × 8"]
    assert low[4:6] == ["255k", "40k"]
    assert low[6] == "50.0 → 90.0"
    assert low[7] == "25.0% (1/4)"
    assert low[8] == "1.50"
    assert low[9] == "10.0% (3/30)"
    assert low[10] == "1 / 1"
    sc = next(r for r in rows if r[0] == "sc:16")
    assert sc[6:] == ["—"] * 5


# ----------------------------------------------------------------------- writing


def test_write_report_writes_every_file_and_no_temporaries(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "eval"
    files = write_report(out, paper_like(), created=CREATED, context_limit=131_072)
    assert files.summary_json == out / "summary.json"
    assert json.loads(files.summary_json.read_text())["methods"]["pacore:high"][
        "accuracy"
    ] == pytest.approx(0.937)
    md = files.report_md.read_text(encoding="utf-8")
    assert "93.7 (1873k)" in md
    names = {p.name for p in files.plots}
    assert names == {plots.ACCURACY_VS_TTC, plots.PARALLEL_VS_SEQUENTIAL, plots.PROMPT_TOKENS}
    for path in files.plots:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 1000
        assert f"]({path.name})" in md
    assert sorted(p.name for p in out.iterdir()) == sorted(["summary.json", "report.md", *names])


def test_plots_skip_figures_without_data() -> None:
    pytest.importorskip("matplotlib")
    only_sc = [summary("sc:4", "sc", 4, 0.5, 1000), summary("sc:16", "sc", 16, 0.6, 4000)]
    rendered = plots.render_all(only_sc)
    assert list(rendered) == [plots.ACCURACY_VS_TTC]
    assert rendered[plots.ACCURACY_VS_TTC].startswith(PNG_MAGIC)
    assert plots.parallel_vs_sequential(only_sc) is None
    assert plots.prompt_tokens(only_sc) is None
    assert plots.accuracy_vs_ttc([MethodSummary("x", "single", 1, "d")]) is None


def test_parallel_vs_sequential_leaves_out_multi_round_pacore() -> None:
    pytest.importorskip("matplotlib")
    only_multi = [summary("pacore:high", "pacore", 37, 0.9, 10, widths=(32, 4))]
    assert plots.parallel_vs_sequential(only_multi) is None
    png = plots.parallel_vs_sequential(
        [*only_multi, summary("pacore:4", "pacore", 5, 0.8, 10, widths=(4,))]
    )
    assert png is not None
    assert png.startswith(PNG_MAGIC)


def test_plots_false_writes_no_png(tmp_path: Path) -> None:
    files = write_report(tmp_path, paper_like(), created=CREATED, plots=False)
    assert files.plots == ()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "summary.json"]
    assert ".png" not in files.report_md.read_text(encoding="utf-8")


def hide_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(plots, "matplotlib_available", lambda: False)


def test_missing_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hide_matplotlib(monkeypatch)
    with pytest.raises(ConfigError, match=r"pip install 'pacore\[eval\]'"):
        write_report(tmp_path / "out", paper_like(), plots=True)
    # Nothing was written: the error comes first.
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="plots need matplotlib"):
        plots.accuracy_vs_ttc(paper_like())
    # By default, plots are skipped when matplotlib is missing.
    files = write_report(tmp_path / "auto", paper_like())
    assert files.plots == ()


def test_atomic_write_replaces_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "summary.json"
    atomic_write(target, "old")
    atomic_write(target, "new")
    assert target.read_text() == "new"

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match=r"summary.json: cannot write \(disk full\)"):
        atomic_write(target, "half")
    monkeypatch.undo()
    # The old file is intact and no temporary file is left behind.
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["summary.json"]


def test_marker_stats_in_summary_are_json_ready() -> None:
    stats = MarkerStats(totals={"reference": 2}, n_solutions=4, solutions_with_marker=1)
    entry = MethodSummary("m", "pacore", 5, "d", cross_check=stats).to_dict()
    assert entry["cross_check_per_solution"] == 0.5
    assert entry["cross_check"]["per_marker"] == {"reference": 0.5}
