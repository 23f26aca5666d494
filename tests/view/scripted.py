"""An eval folder built to hold every synthesis mark, from a model scripted per problem.

Each problem's four round-1 answers and its synthesis's answer are scripted
(`tests.eval.sim_model.ScriptedModel`); `pacore:4` and `sc:4` draw the same four pool
samples, so what each run's synthesis did, and what the vote gave, follow from the
script (for `pacore:4`; the other methods give the overview more to show):

    problem    round 1 (gold 42)   synthesis   mark            SC vote
    beat       7 7 42 9            42          beat the vote   7 (wrong)
    lost       42 42 42 5          5           lost            42 (right)
    emergent   3 3 5 6             42          emergent        3 (wrong)
    held       42 42 1 2           42          held            42 (right)
    miss       8 8 9 10            8           shared miss     8 (wrong)
"""

from __future__ import annotations

import json
from pathlib import Path

from pacore.cli import main
from tests.eval.sim_model import CORRECT, ScriptedModel
from tests.fake_server import FakeConfig, run_in_thread

SCRIPT = {
    "beat": (["7", "7", CORRECT, "9"], CORRECT),
    "lost": ([CORRECT, CORRECT, CORRECT, "5"], "5"),
    "emergent": (["3", "3", "5", "6"], CORRECT),
    "held": ([CORRECT, CORRECT, "1", "2"], CORRECT),
    "miss": (["8", "8", "9", "10"], "8"),
}
MARK_OF = {
    "beat": "beat-the-vote",
    "lost": "lost",
    "emergent": "emergent",
    "held": "held",
    "miss": "shared-miss",
}
SC_RIGHT = {"lost", "held"}
RUNS = 2
METHODS = ("pacore:4", "sc:4", "pacore:4,2", "pacore:2", "single")
"""`pacore:4,2` pairs with `sc:4` too (the same K_1), its third round seeing two
syntheses; `pacore:2` (two of the four samples) and `single` have no partner."""


def question(pid: str) -> str:
    return f"[{pid}] What is six times seven?"


def scripted_eval(tmp_path: Path) -> tuple[Path, Path]:
    """The eval folder (METHODS, two runs, a pool of 4) and its dataset file."""
    data = tmp_path / "scripted.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": pid, "question": question(pid), "answer": CORRECT}) + "\n"
            for pid in SCRIPT
        )
    )
    script = {f"[{pid}]": answers for pid, answers in SCRIPT.items()}
    model = ScriptedModel(script, words=2000)  # TTC in thousands, as in the paper's tables
    out = tmp_path / "out"
    with run_in_thread(FakeConfig(responder=model, record_bodies=False)) as srv:
        argv = ["eval", "--dataset", str(data), "--out", str(out), "--backend", srv.url]
        for method in METHODS:
            argv += ["--method", method]
        argv += ["--runs", str(RUNS), "--pool", "4"]
        assert main([*argv, "--seed", "3", "--quiet", "--no-plots"]) == 0
    return out, data
