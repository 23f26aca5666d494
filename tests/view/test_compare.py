"""Marks, pairs, filters, sorting and the compare view on an eval built to hold them all."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pacore.view import data
from pacore.view.app import create_app
from pacore.view.compare import pair_rows, partner_methods
from tests.view.scripted import MARK_OF, RUNS, SC_RIGHT, SCRIPT, scripted_eval


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out, _ = scripted_eval(tmp_path_factory.mktemp("scripted"))
    return out


def test_each_run_is_marked_as_its_script_made_it(folder: Path) -> None:
    loaded = data.load(folder)
    pacore = [r for r in loaded.rows if r.method == "pacore:4"]
    assert len(pacore) == len(SCRIPT) * RUNS
    for r in pacore:
        assert r.mark == MARK_OF[r.id], r
    assert all(r.mark is None for r in loaded.rows if r.method == "sc:4")
    counts = data.mark_counts(loaded.rows)
    assert counts["pacore:4"] == dict.fromkeys(MARK_OF.values(), RUNS)
    assert "sc:4" not in counts
    by_id = {r.id: r for r in loaded.rows if r.method == "sc:4" and r.run == 0}
    assert by_id["lost"].disagreement == 0.25  # 42 42 42 5
    assert by_id["beat"].disagreement == 0.5  # 7 7 42 9
    assert by_id["beat"].correct is False
    assert by_id["lost"].correct is True


def test_pacore_and_sc_of_the_same_width_and_run_are_paired(folder: Path) -> None:
    loaded = data.load(folder)
    rows = loaded.rows
    pairs = pair_rows(rows)
    assert len(pairs) == 2 * len(SCRIPT) * RUNS  # pacore:4 and pacore:4,2 with sc:4
    for pacore, sc in pairs.items():
        a, b = rows[pacore], rows[sc]
        assert a.method in ("pacore:4", "pacore:4,2")
        assert b.method == "sc:4"
        assert (a.id, a.run) == (b.id, b.run)
    assert partner_methods(rows, pairs) == {"pacore:4": "sc:4", "pacore:4,2": "sc:4"}

    def ids(**query: str) -> list[str]:
        found = data.filter_rows(loaded, data.Filters.from_query(query), pairs)
        return [f"{r.id}/{r.run}" for r in found]

    right = {pid for pid, (_, final) in SCRIPT.items() if final == "42"}
    assert {i.split("/")[0] for i in ids(versus="pacore-right")} == right - SC_RIGHT
    assert {i.split("/")[0] for i in ids(versus="sc-right")} == SC_RIGHT - right
    both = ids(versus="pacore-right")
    assert len(both) == 2 * len(ids(versus="pacore-right", method="pacore:4"))
    assert data.filter_rows(loaded, data.Filters(versus="pacore-right")) == []  # no pairs
    assert sorted(ids(mark="lost", method="pacore:4")) == ["lost/0", "lost/1"]
    assert ids(mark="nonsense") == ids()  # an unknown value is ignored


def test_sorting_by_ttc_and_disagreement(folder: Path) -> None:
    loaded = data.load(folder)

    def values(sort: str, method: str = "") -> list[float]:
        query = {"sort": sort, "method": method}
        found = data.filter_rows(loaded, data.Filters.from_query(query))
        return [r.ttc_tokens if "ttc" in sort else r.disagreement or 0.0 for r in found]

    assert values("ttc") == sorted(values("ttc"))
    assert values("-ttc") == sorted(values("ttc"), reverse=True)
    # pacore:4's references: 7 7 42 9 and 3 3 5 6 (two of four agree), 42 42 42 5 (three)
    assert values("-disagreement", "pacore:4") == [0.5] * 8 + [0.25] * 2
    assert values("disagreement", "pacore:4") == [0.25] * 2 + [0.5] * 8
    assert len(values("bogus")) == len(loaded.rows)
    blank = data.Row(0, "x", "m", 0, "failed", "boom", None, None, 0, 0)
    ordered = data.filter_rows(
        data.ViewData("eval", folder, [blank, *loaded.rows[:3]]),
        data.Filters(sort="-disagreement"),
    )
    assert ordered[-1] is blank  # no value: last, whichever the direction


def test_pages_show_marks_and_the_compare_view(folder: Path) -> None:
    client = TestClient(create_app(data.load(folder)))
    overview = client.get("/").text
    assert 'id="marks"' in overview
    assert "/problems?method=pacore%3A4&amp;mark=beat-the-vote" in overview
    page = client.get("/problem/beat").text
    assert 'class="mark mark-beat-the-vote"' in page
    assert ">beat the vote<" in page
    assert "2 of 2 (100%)" in page  # pacore:4's accuracy over its runs
    assert "/compare/beat?a=pacore%3A4&amp;b=sc%3A4" in page
    listing = client.get("/problems", params={"versus": "sc-right"}).text
    assert 'href="/problem/lost"' in listing
    assert 'href="/problem/beat"' not in listing
    compared = client.get("/compare/lost", params={"a": "pacore:4", "b": "sc:4", "run": "1"})
    assert compared.status_code == 200
    assert "4 round-1 sample(s) drawn by both" in compared.text
    assert compared.text.count("shared</span>") >= 8  # each side's four
    assert "3 of 4 said 42" in compared.text  # the vote, on both sides
    default = client.get("/compare/lost").text
    assert "pacore:4 vs sc:4, run 0" in default


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [
        ("/compare/nope", 404, "no problem &#39;nope&#39;"),
        ("/compare/beat?a=pacore:9", 404, "no method &#39;pacore:9&#39;"),
        ("/compare/beat?b=zz", 404, "no method &#39;zz&#39; for problem &#39;beat&#39;"),
        ("/compare/beat?run=7", 404, "no run 7 of pacore:4"),
        ("/compare/beat?run=x", 400, "run &#39;x&#39; is not a number"),
        ("/problem/nope", 404, "no problem &#39;nope&#39;"),
    ],
)
def test_bad_ids_methods_and_runs_get_a_page_saying_so(
    folder: Path, url: str, status: int, says: str
) -> None:
    reply = TestClient(create_app(data.load(folder))).get(url)
    assert reply.status_code == status
    assert reply.headers["content-type"].startswith("text/html")
    assert says in reply.text
    assert "Traceback" not in reply.text


def test_a_stored_code_problem_shows_its_tests_messages_and_dataset(folder: Path) -> None:
    from dataclasses import replace

    loaded = data.load(folder)
    code = data.Problem(
        "beat",
        "Write f.",
        "tests of f",
        ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write f."}),
        "assert f(1) == 2",
        "mbpp",
    )
    client = TestClient(create_app(replace(loaded, problems={"beat": code})))
    for url in ("/problem/beat", "/compare/beat"):
        page = client.get(url).text
        assert "assert f(1) == 2" in page
        assert "[system]\nBe brief." in page
        assert "<code>mbpp</code>" in page
    assert "No question or gold is known" in client.get("/problem/lost").text


def test_every_synthesis_round_is_marked_against_the_round_before(folder: Path) -> None:
    """pacore:4,2 on `beat`: round 2's two syntheses saw 7 7 42 9 (beat the vote, both
    answering 42); round 3 saw their 42 42 (held)."""
    loaded = data.load(folder)
    row = next(r for r in loaded.rows if (r.id, r.method, r.run) == ("beat", "pacore:4,2", 0))
    view = data.eval_view(loaded, row)
    first, second, third = view.rounds
    assert [c.mark for c in first.cards] == [None] * 4
    assert [c.mark for c in second.slots] == ["beat-the-vote"] * 2
    assert [c.mark for c in third.slots] == ["held"]
    assert view.mark == row.mark == "held"
