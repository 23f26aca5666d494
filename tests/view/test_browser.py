"""`pacore view` in a real browser: Debian's chromium, headless, driven by Playwright.

An eval folder is generated against the fake server's simulated model, `pacore view`
is started on it as a process, and the test clicks from the overview to an emergent
case and checks what its problem page shows: each round's trajectories from the folder's
traces, a trajectory's full text with its reasoning collapsed, and the synthesis prompt.
A second eval, scripted per problem (`tests.view.scripted`), is opened with no
`--dataset`: its question and gold come from the folder, and its marks, the compare
view and a filter are used. CI installs chromium (`make test`).

The screenshots in `docs/` are the scripted test's: `PACORE_VIEW_SCREENSHOTS=docs
.venv/bin/pytest tests/view/test_browser.py` writes them there (view-*.png).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from pacore.cli import main
from tests.eval.sim_model import CORRECT, SimulatedModel
from tests.fake_server import FakeConfig, run_in_thread

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def generate(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "question": f"Problem {i}?", "answer": CORRECT}) + "\n"
            for i in range(8)
        )
    )
    out = tmp_path / "out"
    model = SimulatedModel(p=0.15, q_any=0.9, q_none=0.6)
    with run_in_thread(FakeConfig(responder=model, record_bodies=False)) as srv:
        argv = ["eval", "--dataset", str(data), "--out", str(out), "--backend", srv.url]
        argv += ["--method", "pacore:low", "--method", "sc:4", "--runs", "2", "--pool", "8"]
        assert main([*argv, "--seed", "5", "--quiet", "--no-plots"]) == 0
    return out, data


def listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Block until the viewer accepts connections (a guard, not a wait the test needs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"pacore view is not listening on {port} (exit {proc.poll()})")


@contextmanager
def serving(out: Path, *options: str) -> Iterator[str]:
    """`pacore view OUT [options]` as a process; its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "pacore.cli", "view", str(out), *options]
    proc = subprocess.Popen([*cmd, "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        listening(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    out, data = generate(tmp_path)
    with serving(out, "--dataset", str(data)) as url:
        yield url, out


def launch(pw: Playwright, tmp_path: Path) -> BrowserContext:
    """Chromium, headless, with a fresh profile per test (FIELD-NOTES: Playwright passes
    it as --user-data-dir)."""
    return pw.chromium.launch_persistent_context(
        tmp_path / "profile",
        executable_path=CHROMIUM,
        args=FLAGS,
        headless=True,
        viewport={"width": 1280, "height": 900},
    )


def shot(page: Page, tmp_path: Path, name: str) -> None:
    """A full-page screenshot, into PACORE_VIEW_SCREENSHOTS as view-NAME.png when set."""
    folder = os.environ.get("PACORE_VIEW_SCREENSHOTS")
    path = Path(folder) / f"view-{name}.png" if folder else tmp_path / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    assert path.stat().st_size > 1000


def test_from_the_overview_to_an_emergent_case_in_three_clicks(
    viewer: tuple[str, Path], tmp_path: Path
) -> None:
    url, out = viewer
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    emergent = [
        r for r in records if r["correct"] and r["ref_correct"] and not any(r["ref_correct"])
    ]
    assert emergent, "the simulated model should give at least one emergent case"
    with sync_playwright() as pw:
        browser = launch(pw, tmp_path)
        page: Page = browser.new_page()
        page.goto(url + "/")
        expect(page.locator("#summary")).to_contain_text("pacore:low")
        expect(page.locator("#plot .pt")).to_have_count(2)
        expect(page.locator("#count-emergent")).to_contain_text(f"{len(emergent)} emergent")
        page.screenshot(path=tmp_path / "overview.png", full_page=True)

        page.click("#count-emergent")  # click 1: the filtered list
        expect(page).to_have_url(url + "/problems?emergent=1")
        rows = page.locator("#problems tr.row")
        expect(rows).to_have_count(len(emergent))
        page.screenshot(path=tmp_path / "problems.png", full_page=True)

        case = emergent[0]
        page.click(f"#problems tr.row a[href='/problem/{case['id']}']")  # click 2
        expect(page.locator("h1")).to_have_text(f"Problem {case['id']}")
        expect(page.locator("#gold")).to_have_text(CORRECT)
        section = page.locator("section.run").filter(
            has_text=f"{case['method']}, run {case['run']}"
        )
        rounds = section.locator(".round")
        expect(rounds).to_have_count(2)  # pacore:low: 4 trajectories, then the synthesis
        first, synthesis = rounds.nth(0), rounds.nth(1)
        refs = case["ref_answers"]
        expect(first.locator(".card.wrong")).to_have_count(len(refs))
        expect(first.locator(".said")).to_contain_text(f"of {len(refs)} said")
        for answer in refs:
            expect(first.locator(".groups")).to_contain_text(answer)
        expect(synthesis.locator("h3")).to_contain_text(f"the final synthesis of {len(refs)}")
        expect(synthesis.locator(".card.right .answer")).to_have_text(CORRECT)
        final = section.locator(".final.emergent")
        expect(final.locator(".final-answer")).to_have_text(CORRECT)
        expect(final.locator(".verdict")).to_contain_text("right from all-wrong references")

        card = first.locator(".card").nth(0)  # click 3: expand a trajectory
        message = card.locator("pre.message").inner_text()
        card.locator("details.trajectory summary").click()
        expect(card.locator("pre.conclusion")).to_have_text(message)
        expect(card.locator("details details summary")).to_contain_text("reasoning")
        expect(card.locator("details details")).not_to_have_attribute("open", "")
        synthesis.locator("details.prompt summary").click()
        shown = synthesis.locator("details.prompt pre.conclusion")
        expect(shown).to_contain_text("Reference Responses:")
        for answer in refs:
            expect(shown).to_contain_text(f"\\boxed{{{answer}}}")
        final.locator("details.trajectory summary").click()
        expect(final.locator("pre.conclusion")).to_contain_text(f"\\boxed{{{CORRECT}}}")
        page.screenshot(path=tmp_path / "problem.png", full_page=True)
        browser.close()
    for name in ("overview", "problems", "problem"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_a_fresh_folder_with_no_dataset_shows_marks_a_comparison_and_filters(
    tmp_path: Path,
) -> None:
    from tests.view.scripted import question, scripted_eval

    out, _ = scripted_eval(tmp_path)
    with serving(out) as url, sync_playwright() as pw:  # no --dataset
        browser = launch(pw, tmp_path)
        page: Page = browser.new_page()
        page.goto(url + "/")
        row = page.locator("#marks tr", has=page.locator("td:text-is('pacore:4')"))
        expect(row).to_have_count(1)
        expect(page.locator("#marks th")).to_contain_text(
            ["method", "emergent", "beat the vote", "held", "lost", "shared miss"]
        )
        expect(row.locator("a.mark-count")).to_have_text(["2", "2", "2", "2", "2"])
        expect(page.locator("#plot text.tick").first).to_have_text(re.compile(r"^[0-9.]+[kM]?$"))
        shot(page, tmp_path, "overview")

        row.locator("a.mark-count").nth(1).click()  # pacore:4's beat-the-vote runs
        expect(page).to_have_url(re.compile(r"/problems\?method=pacore%3A4&mark=beat-the-vote$"))
        expect(page.locator("#problems tr.row")).to_have_count(2)
        expect(page.locator("#problems tr.row .mark")).to_have_text(["beat the vote"] * 2)

        # A filter from the form: SC right where PaCoRe (pacore:4 or pacore:4,2) is wrong.
        page.select_option("select[name=method]", "")
        page.select_option("select[name=mark]", "")
        page.select_option("select[name=versus]", "sc-right")
        page.select_option("select[name=sort]", "-ttc")
        page.click("form.filters button")
        expect(page).to_have_url(re.compile(r"versus=sc-right"))
        rows = page.locator("#problems tr.row")
        expect(rows).to_have_count(4)
        expect(rows.locator("td:first-child a")).to_have_text(["lost"] * 4)
        expect(rows.locator(".mark")).to_have_text(["shared miss", "shared miss", "lost", "lost"])
        shot(page, tmp_path, "problems")

        rows.first.locator("td:first-child a").click()
        expect(page.locator("h1")).to_have_text("Problem lost")
        expect(page.locator(".question")).to_have_text(question("lost"))  # from the folder
        expect(page.locator("#gold")).to_have_text(CORRECT)
        section = page.locator("section.run").filter(has_text="pacore:4, run 0")
        final = section.locator(".final")
        expect(final.locator(".final-mark")).to_contain_text(
            "lost: wrong while the references' majority was right"
        )
        expect(section.locator(".round").nth(1).locator(".card .mark")).to_have_text("lost")
        summary = page.locator("#methods tr.method[data-method='pacore:4']")
        expect(summary).to_contain_text("0 of 2 (0%)")
        expect(summary.locator(".mark")).to_have_text("lost")
        # The picture: the top of the page and this one run of its ten (the others hidden).
        page.evaluate(
            "document.querySelectorAll('section.run').forEach(s => {"
            " if (!s.querySelector('h2').textContent.includes('pacore:4, run 0'))"
            " s.style.display = 'none'; })"
        )
        shot(page, tmp_path, "problem")

        page.goto(url + "/problem/beat")
        beat = page.locator("section.run").filter(has_text="pacore:4, run 1")
        expect(beat.locator(".final .mark")).to_have_text("beat the vote")
        page.locator("#methods tr.method[data-method='pacore:4'] a.compare").click()
        expect(page).to_have_url(re.compile(r"/compare/beat\?a=pacore%3A4&b=sc%3A4"))
        expect(page.locator("#shared")).to_contain_text("4 round-1 sample(s) drawn by both")
        for side in ("#side-a", "#side-b"):
            expect(page.locator(f"{side} .pool li")).to_have_count(4)
            expect(page.locator(f"{side} .pool .shared-badge")).to_have_count(4)
            expect(page.locator(f"{side} .said")).to_contain_text("2 of 4 said 7")
        expect(page.locator("#side-a .final .final-answer")).to_have_text(CORRECT)
        expect(page.locator("#side-a .final .mark")).to_have_text("beat the vote")
        expect(page.locator("#side-b .final .final-answer")).to_have_text("7")
        expect(page.locator("#side-b .final .wrong")).to_have_count(1)
        shot(page, tmp_path, "compare")

        page.goto(url + "/compare/beat?a=nope")
        expect(page.locator("#error")).to_contain_text("no method 'nope' for problem 'beat'")
        browser.close()
