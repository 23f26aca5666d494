"""`pacore view` in a real browser: Debian's chromium, headless, driven by Playwright.

An eval folder is generated against the fake server's simulated model, `pacore view`
is started on it as a process, and the test clicks from the overview to an emergent
case and checks what its problem page shows: each round's trajectories from the folder's
traces, a trajectory's full text with its reasoning collapsed, and the synthesis prompt.
CI installs chromium (`make test`).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

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


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    out, data = generate(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "pacore.cli", "view", str(out), "--dataset", str(data)]
    proc = subprocess.Popen([*cmd, "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        listening(port, proc)
        yield f"http://127.0.0.1:{port}", out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
        # A fresh profile per test (FIELD-NOTES): Playwright passes it as --user-data-dir.
        browser = pw.chromium.launch_persistent_context(
            tmp_path / "profile",
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        page: Page = browser.new_page()
        page.goto(url + "/")
        expect(page.locator("#summary")).to_contain_text("pacore:low")
        expect(page.locator("#plot circle")).to_have_count(2)
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
