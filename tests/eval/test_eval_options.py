"""`pacore eval` end to end: a truncated answer is graded the same way by every method,
and every engine option the command accepts reaches the request or the result."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pacore.cli import main
from tests.fake_server import FakeConfig, FakeServer, ResponderResult, run_in_thread

Body = dict[str, Any]
Record = dict[str, Any]
SYNTHESIS = "Reference Responses:"


def is_synthesis(body: Body) -> bool:
    """Whether a request body is a synthesis (its prompt holds references)."""
    return SYNTHESIS in str(body["messages"][-1]["content"])


def boxed(answer: str = "42", finish: str | None = "stop") -> Callable[..., ResponderResult]:
    """A model that thinks, then boxes `answer`, ending with `finish`."""

    def respond(messages: list[Body], index: int, body: Body) -> ResponderResult:
        return (f"<think>long reasoning</think>The answer is \\boxed{{{answer}}}.", finish)

    return respond


def run_eval(
    tmp_path: Path,
    method: str,
    *extra: str,
    config: FakeConfig | None = None,
    answer: str = "42",
    pool: int = 2,
) -> tuple[list[Record], list[Body], FakeServer]:
    """A tiny eval (one problem, one run) against the fake server: records and bodies."""
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "p0", "question": "What?", "answer": answer}) + "\n")
    out = tmp_path / "out"
    with run_in_thread(config or FakeConfig(responder=boxed(answer))) as srv:
        argv = ["eval", "--dataset", str(data), "--out", str(out), "--backend", srv.url]
        argv += ["--method", method, "--runs", "1", "--pool", str(pool), "--no-plots"]
        code = main([*argv, "--quiet", "--retries", "0", *extra])
    records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    # Exit 1 exactly when some run failed for infrastructure (as `pacore run` does).
    assert code == (1 if any(r["status"] == "failed" for r in records) else 0)
    return records, list(srv.stats.bodies), srv


# ----------------------------------------------------------------------- symmetry


@pytest.mark.parametrize("method", ["single", "sc:2", "pacore:1", "seq:2", "nomp:1"])
def test_a_truncated_final_answer_is_graded_the_same_by_every_method(
    tmp_path: Path, method: str
) -> None:
    """Every trajectory is cut by max_tokens after its boxed answer: every method grades
    what the cut text holds and records the run as truncated (--keep-truncated lets the
    methods with rounds pass the cut messages on, so their final round runs; the others
    refuse it, having nothing to pass on)."""
    config = FakeConfig(responder=boxed(finish="length"))
    keep = () if method in ("single", "sc:2") else ("--keep-truncated",)
    (record,), _, _ = run_eval(tmp_path, method, *keep, config=config)
    assert (record["status"], record["correct"], record["extracted"]) == ("truncated", True, "42")
    assert record["score"] == 1.0


@pytest.mark.parametrize("method", ["single", "sc:2"])
def test_truncated_samples_are_graded_without_keep_truncated(tmp_path: Path, method: str) -> None:
    """--keep-truncated governs only what is passed between rounds; a sample that is
    itself the final answer is graded on what it holds."""
    config = FakeConfig(responder=boxed(finish="length"))
    (record,), _, _ = run_eval(tmp_path, method, config=config)
    assert (record["status"], record["correct"]) == ("truncated", True)


def test_an_empty_answer_is_wrong_with_its_status(tmp_path: Path) -> None:
    def nothing(messages: list[Body], index: int, body: Body) -> ResponderResult:
        return "<think>hmm</think>" if index == 0 else "<think>hmm</think>\\boxed{42}"

    config = FakeConfig(responder=nothing)
    (record,), _, _ = run_eval(tmp_path, "single", config=config, pool=1)
    assert (record["status"], record["correct"], record["score"]) == ("empty", False, 0.0)


def test_round_one_cut_short_without_keep_truncated_is_no_answer(tmp_path: Path) -> None:
    config = FakeConfig(responder=boxed(finish="length"))
    (record,), bodies, _ = run_eval(tmp_path, "pacore:2", config=config)
    assert (record["status"], record["correct"]) == ("no_answer", False)
    assert "keep truncated" in record["reason"]
    assert not any(is_synthesis(b) for b in bodies)


# ------------------------------------------------------------------------ options


@dataclass(frozen=True)
class Case:
    """One option: the flags, the method to run it on, and what it must change."""

    flags: tuple[str, ...]
    method: str
    check: Callable[[list[Record], list[Body], FakeServer], bool]
    config: Callable[[], FakeConfig] | None = None
    answer: str = "42"
    pool: int = 4


def _all(bodies: Sequence[Body], test: Callable[[Body], bool]) -> bool:
    return bool(bodies) and all(test(b) for b in bodies)


def _synthesis(bodies: Sequence[Body]) -> str:
    (body,) = [b for b in bodies if is_synthesis(b)]
    return str(body["messages"][-1]["content"])


def _one_failure(script: list[Any], **changes: Any) -> Callable[[], FakeConfig]:
    return lambda: FakeConfig(responder=boxed(), fail_script=list(script), **changes)


def _x_plus_one(messages: list[Body], index: int, body: Body) -> ResponderResult:
    return "<think>r</think>So it is \\boxed{x+1}. Check: 2."


CASES: dict[str, Case] = {
    "temperature": Case(
        ("--temperature", "0.3"),
        "single",
        lambda r, b, s: _all(b, lambda x: x["temperature"] == 0.3),
    ),
    "top-p": Case(
        ("--top-p", "0.5"), "pacore:1", lambda r, b, s: _all(b, lambda x: x["top_p"] == 0.5)
    ),
    "max-tokens": Case(
        ("--max-tokens", "77"), "pacore:1", lambda r, b, s: _all(b, lambda x: x["max_tokens"] == 77)
    ),
    "seed": Case(
        ("--seed", "5"),
        "pacore:1",
        lambda r, b, s: _all(b, lambda x: isinstance(x.get("seed"), int)),
    ),
    "no seed": Case((), "pacore:1", lambda r, b, s: _all(b, lambda x: "seed" not in x)),
    "stream": Case(
        ("--stream",), "pacore:1", lambda r, b, s: _all(b, lambda x: x.get("stream") is True)
    ),
    "model": Case(
        ("--model", "other"), "single", lambda r, b, s: _all(b, lambda x: x["model"] == "other")
    ),
    "no-n": Case(
        ("--no-n",), "sc:2", lambda r, b, s: _all(b, lambda x: x.get("n", 1) == 1) and len(b) == 4
    ),
    "n": Case((), "sc:2", lambda r, b, s: [x.get("n") for x in b] == [4]),
    "concurrency": Case(
        ("--concurrency", "1", "--no-n"),
        "sc:4",
        lambda r, b, s: s.stats.peak_concurrency == 1 and len(b) == 4,
        config=lambda: FakeConfig(responder=boxed(), ttft_s=0.05),
    ),
    "template": Case(
        ("--template", "TEMPLATE"),
        "pacore:1",
        lambda r, b, s: _synthesis(b).startswith("MINE Reference Responses:"),
    ),
    "compaction full": Case(
        ("--compaction", "full"), "pacore:1", lambda r, b, s: "long reasoning" in _synthesis(b)
    ),
    "compaction default": Case(
        (), "pacore:1", lambda r, b, s: "long reasoning" not in _synthesis(b)
    ),
    "compaction answer": Case(
        ("--compaction", "answer"),
        "pacore:1",
        lambda r, b, s: "So it is" not in _synthesis(b) and r[0]["correct"] is True,
        config=lambda: FakeConfig(responder=_x_plus_one),
        answer="x+1",
    ),
    "nomp is full": Case((), "nomp:1", lambda r, b, s: "long reasoning" in _synthesis(b)),
    "min-references": Case(  # every round-1 answer is cut, so neither survives
        ("--min-references", "2"),
        "pacore:2",
        lambda r, b, s: "need 2" in r[0]["reason"],
        config=lambda: FakeConfig(responder=boxed(finish="length")),
    ),
    "retries": Case(
        ("--retries", "1", "--on-failure", "continue"),
        "single",
        lambda r, b, s: r[0]["status"] == "ok" and len(b) == 2,
        config=_one_failure([500]),
    ),
    "on-failure continue": Case(
        ("--on-failure", "continue"),
        "single",
        lambda r, b, s: r[0]["status"] == "failed" and len(b) == 1,
        config=_one_failure([500]),
    ),
    "on-failure resample": Case(
        ("--on-failure", "resample"),
        "single",
        lambda r, b, s: r[0]["status"] == "ok" and len(b) == 2,
        config=_one_failure([500]),
    ),
    "max-resamples": Case(
        ("--max-resamples", "0"),
        "single",
        lambda r, b, s: r[0]["status"] == "failed" and len(b) == 1,
        config=_one_failure([500]),
    ),
    "on-failure fail (sc)": Case(
        ("--on-failure", "fail", "--no-n"),
        "sc:2",
        lambda r, b, s: r[0]["status"] == "failed" and len(b) == 2,
        config=_one_failure([500]),
        pool=2,
    ),
    "on-failure fail (pacore)": Case(
        ("--on-failure", "fail", "--no-n"),
        "pacore:2",
        lambda r, b, s: r[0]["status"] == "failed" and not any(is_synthesis(x) for x in b),
        config=_one_failure([500]),
        pool=2,
    ),
    "keep-truncated": Case(
        ("--keep-truncated",),
        "pacore:2",
        lambda r, b, s: r[0]["status"] == "truncated" and any(is_synthesis(x) for x in b),
        config=lambda: FakeConfig(responder=boxed(finish="length")),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_engine_option_takes_effect_in_eval(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    flags = list(case.flags)
    if "TEMPLATE" in flags:
        template = tmp_path / "t.j2"
        template.write_text(
            "MINE Reference Responses:{% for r in ref_responses %} {{ r }}{% endfor %} "
            "{{ original_prompt }}"
        )
        flags[flags.index("TEMPLATE")] = str(template)
    config = case.config() if case.config else FakeConfig(responder=boxed(case.answer))
    records, bodies, srv = run_eval(
        tmp_path, case.method, *flags, config=config, answer=case.answer, pool=case.pool
    )
    assert case.check(records, bodies, srv), (records, bodies)


def test_quiet_keeps_progress_off_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_eval(tmp_path, "single")
    err = capsys.readouterr().err
    assert err.startswith("pacore: wrote "), err
    assert len(err.splitlines()) == 2
    assert err.splitlines()[1].startswith("pacore: browse it with: pacore view ")
