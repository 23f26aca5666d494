"""The view app's routes without a browser: pages, texts, static files, and 404s."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from pacore.cli import main
from pacore.cli.view import command_for
from pacore.view import data
from pacore.view.app import create_app
from tests.view.test_data import AGREES, EMERGENT, eval_folder, record, trajectory


def test_pages_texts_and_static_files(tmp_path: Path) -> None:
    client = TestClient(create_app(data.load(eval_folder(tmp_path, [EMERGENT, AGREES]))))
    assert "pacore:medium" in client.get("/").text
    listing = client.get("/problems", params={"emergent": "1", "page": "x"}).text
    assert 'href="/problem/p1"' in listing
    assert 'href="/problem/p2"' not in listing
    page = client.get("/problem/p1").text
    assert "right from all-wrong references" in page
    assert client.get("/text/0").text.endswith("\\boxed{42}")
    assert client.get("/static/view.js").headers["content-type"].startswith("text/javascript")
    for missing in ("/problem/zz", "/text/9", "/static/..%2Fapp.py", "/static/app.py"):
        assert client.get(missing).status_code == 404, missing


def test_batch_pages_and_paging(tmp_path: Path) -> None:
    import json

    out = tmp_path / "b.jsonl"
    lines = [
        {"id": f"q{i}", "status": "ok", "answer": "\\boxed{1}", "rounds": [[trajectory(0, "1")]]}
        for i in range(60)
    ]
    out.write_text("".join(json.dumps(x) + "\n" for x in lines))
    client = TestClient(create_app(data.load(out)))
    first = client.get("/problems").text
    assert "page 1 of 2" in first
    assert 'rel="next"' in first
    assert "page 2 of 2" in client.get("/problems", params={"page": "2"}).text
    page = client.get("/problem/q3").text
    assert "1 of 1 said 1" in page
    assert client.get("/text/3/1/0").text.startswith("<think>")


def test_view_command_line(tmp_path: Path, capsys: object) -> None:
    assert command_for(Path("runs/a b"), "d.jsonl") == "pacore view 'runs/a b' --dataset d.jsonl"
    assert command_for(Path("o"), "hf:x/y") == "pacore view o"
    assert main(["view", str(tmp_path / "nothing")]) == 2
    folder = eval_folder(tmp_path, [record("p1", "single", 0)])
    assert main(["view", str(folder), "--port", "70000"]) == 2


def test_trajectory_texts_and_prompts_of_a_traced_folder(tmp_path: Path) -> None:
    from tests.eval.test_traces import evaluate

    client = TestClient(create_app(data.load(evaluate(tmp_path, ["pacore:3"], fail=set()))))
    page = client.get("/problem/p").text
    assert 'data-src="/prompt/0/2"' in page
    assert 'data-src="/text/0/1/2"' in page
    assert client.get("/text/0/1/2").text.startswith("<think>think ")
    prompt = client.get("/prompt/0/2")
    assert prompt.status_code == 200
    assert prompt.text.startswith("[user]\n")
    assert "Reference 3" in prompt.text
    for missing in ("/prompt/0/3", "/prompt/1/1", "/text/0/1/3", "/text/0/4/0"):
        assert client.get(missing).status_code == 404, missing


def test_a_hand_edited_or_shrunk_run_output_never_fails_a_page(tmp_path: Path) -> None:
    import json

    out = tmp_path / "b.jsonl"
    odd = {"index": "x", "status": 5, "usage": "no", "message": "So \\boxed{1}."}
    lines = [
        {"id": "a", "status": "ok", "answer": "\\boxed{1}", "rounds": [[odd, "not a dict"], 7]},
        {"id": "b", "status": "ok", "answer": "\\boxed{2}", "rounds": [[trajectory(0, "2")]]},
    ]
    out.write_text("".join(json.dumps(x) + "\n" for x in lines))
    client = TestClient(create_app(data.load(out)))
    assert "1 of 1 said 1" in client.get("/problem/a").text
    assert client.get("/text/0/1/0").text == "So \\boxed{1}."
    for missing in ("/text/0/1/1", "/text/0/2/0", "/prompt/0/2"):
        assert client.get(missing).status_code == 404, missing
    out.write_text("")  # the file shrank after it was loaded
    assert client.get("/problem/b").status_code == 200
    assert client.get("/text/1/1/0").status_code == 404


def test_an_id_with_slashes_and_dots_is_one_link_segment(tmp_path: Path) -> None:
    """A link's path keeps a problem id whole: `p/../2` linked to /problem/p/../2, which
    a browser (and this client) resolves to /problem/2 (a 404, or another problem)."""
    import re
    from urllib.parse import urljoin

    odd = "p/../2"
    line = "a\nb"  # a newline in an id: Starlette's `path` stopped at it (404)
    records = [
        {**AGREES, "id": line},
        {**EMERGENT, "id": odd},
        {**AGREES, "id": "2"},
        {**AGREES, "id": odd, "method": "sc:4"},
    ]
    client = TestClient(create_app(data.load(eval_folder(tmp_path, records))))
    listing = client.get("/problems").text
    links = set(re.findall(r'href="(/(?:problem|compare)/[^"?]+)', listing))
    assert "/problem/p%2F..%2F2" in links
    for link in links:
        # What a browser would request: dot segments resolved, the id's own escapes kept.
        resolved = urljoin("http://127.0.0.1/problems", link.replace("&amp;", "&"))
        page = client.get(resolved.removeprefix("http://127.0.0.1"))
        assert page.status_code == 200, link
    assert f"Problem {odd}" in client.get("/problem/p%2F..%2F2").text.replace("&#x2F;", "/")
    assert "/problem/a%0Ab" in links
    assert client.get("/compare/a%0Ab").status_code == 200
