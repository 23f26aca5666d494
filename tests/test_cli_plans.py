"""The CLI's shape: options generated from the configs, plans checked before anything opens."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacore.cli import build_parser, main
from pacore.cli.eval import plan_eval
from pacore.cli.options import flag_of, settings_from
from pacore.cli.run import plan_run
from pacore.config import BackendConfig, PacoreConfig
from tests.conftest import dead_url
from tests.fake_server import FakeConfig, FakeServer, run_in_thread

SRC = Path(__file__).resolve().parents[1] / "src" / "pacore"


@pytest.fixture
def srv() -> Iterator[FakeServer]:
    def answer(messages: list[dict[str, object]], index: int, body: dict[str, object]) -> str:
        return "The answer is \\boxed{42}."

    with run_in_thread(FakeConfig(responder=answer)) as server:
        yield server


def cli_fields(cls: type[object]) -> list[dataclasses.Field[object]]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli")]  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["run", "eval"])
@pytest.mark.parametrize("cls", [PacoreConfig, BackendConfig])
def test_every_config_field_is_an_option_with_its_default_written_once(
    command: str, cls: type[PacoreConfig] | type[BackendConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    argv = [command, "Q"] if command == "run" else [command, "--dataset", "d", "--out", "o"]
    argv += ["--method", "single"] if command == "eval" else []
    for f in cli_fields(cls):
        assert flag_of(cls, f.name) in help_text, f.name
    # No option given: the config is exactly the dataclass's defaults.
    assert settings_from(parser.parse_args(argv), cls) == cls()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--top-p", "0"], "--top-p must be above 0, got 0.0"),
        (["--top-p", "1.5"], "--top-p must be at most 1, got 1.5"),
        (["--temperature", "-1"], "--temperature must be at least 0"),
        (["--max-tokens", "0"], "--max-tokens must be at least 1, got 0"),
        # was sent as it was, and every request refused by the server
        (["--max-tokens", "99999999999999999999"], "--max-tokens must be at most 2147483647"),
        (["--max-resamples", "-1"], "--max-resamples must be at least 0"),
        (["--min-references", "0"], "--min-references must be at least 1"),
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--timeout", "0"], "--timeout must be above 0"),
        (["--retries", "-1"], "--retries must be at least 0"),
        (["--backoff", "-0.5"], "--backoff must be at least 0"),
        (["--slots", "0"], "--slots must be at least 1"),
        (["--on-failure", "shrug"], "unknown on_failure 'shrug'"),
        (["--backend", "http://x/v1", "--model-path", "m.gguf"], "--model-path is for"),
        (["--backend", "embedded", "--backend", "http://x/v1"], "cannot be mixed"),
    ],
)
def test_bounds_come_from_the_config_and_name_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "Q", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.splitlines()) == 1


def test_flags_set_their_fields() -> None:
    argv = ["run", "Q", "--no-n", "--stream", "--backend", "http://a/v1", "--timeout", "5"]
    argv += ["--widths", "8,2", "--keep-truncated", "--max-tokens", "9", "--seed", "3"]
    plan = plan_run(build_parser().parse_args(argv))
    assert plan.backend == BackendConfig(backend=("http://a/v1",), timeout=5.0, use_n=False)
    assert plan.config.widths == (8, 2)
    assert plan.config.stream is True
    assert (plan.config.truncated, plan.config.max_tokens, plan.config.seed) == ("keep", 9, 3)


def test_embedded_default_token_cap_applies_only_to_the_embedded_model() -> None:
    parser = build_parser()
    assert plan_run(parser.parse_args(["run", "Q"])).config.max_tokens == 512
    served = parser.parse_args(["run", "Q", "--backend", "http://a/v1"])
    assert plan_run(served).config.max_tokens is None


def test_planning_opens_nothing(tmp_path: Path) -> None:
    """A plan is built from options and files alone: no backend is contacted."""
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "question": "Q"}) + "\n")
    args = ["run", "--input", str(src), "--output", str(tmp_path / "o.jsonl")]
    plan = plan_run(build_parser().parse_args([*args, "--backend", dead_url()]))
    assert plan.batch is not None
    assert plan.batch.total == 1
    assert plan.batch.done == frozenset()
    assert not (tmp_path / "o.jsonl").exists()


def test_library_code_never_sees_argparse() -> None:
    users = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "argparse" in path.read_text(encoding="utf-8") and path.parent.name != "cli"
    ]
    assert users == []


def test_template_with_an_unknown_variable_fails_before_any_request(
    srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{{ original_prompt }} {{ references }}")
    assert main(["run", "Q", "--backend", srv.url, "--template", str(template)]) == 2
    err = capsys.readouterr().err
    assert "template uses an unknown variable" in err
    assert len(err.splitlines()) == 1
    assert srv.stats.requests == 0


def eval_args(tmp_path: Path, url: str, *extra: str) -> list[str]:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "p0", "question": "What?", "answer": "42"}) + "\n")
    argv = ["eval", "--dataset", str(data), "--out", str(tmp_path / "out"), "--backend", url]
    return [
        *argv,
        "--method",
        "single",
        "--runs",
        "1",
        "--pool",
        "1",
        "--quiet",
        "--no-plots",
        *extra,
    ]


def test_eval_bad_template_writes_nothing(
    srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{% for r in %}")
    assert main(eval_args(tmp_path, srv.url, "--template", str(template))) == 2
    err = capsys.readouterr().err
    assert "template syntax error" in err
    assert len(err.splitlines()) == 1
    assert "never retrieved" not in err
    assert not (tmp_path / "out").exists()
    assert srv.stats.requests == 0


def test_eval_system_message_reaches_the_model(
    srv: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(eval_args(tmp_path, srv.url, "--system", "Box it.")) == 0
    first = srv.stats.bodies[-1]["messages"][0]
    assert first == {"role": "system", "content": "Box it."}
    record = json.loads((tmp_path / "out" / "results.jsonl").read_text())
    assert record["correct"] is True


def test_eval_plan_puts_the_system_message_on_every_sample(tmp_path: Path) -> None:
    argv = eval_args(tmp_path, dead_url(), "--system", "S.")
    plan = plan_eval(build_parser().parse_args(argv))
    assert [m["role"] for m in plan.samples[0].messages] == ["system", "user"]
    assert plan.grader == "math"
    assert not (tmp_path / "out").exists()


def test_backends_take_their_defaults_and_bounds_from_the_config() -> None:
    from pacore.backends import EmbeddedBackend, OpenAIBackend
    from pacore.errors import ConfigError

    defaults = BackendConfig()
    http = OpenAIBackend("http://127.0.0.1:9/v1")
    assert (http.timeout, http.concurrency) == (defaults.timeout, PacoreConfig().concurrency)
    assert http.retry.max_retries == defaults.retries
    assert http.retry.base == defaults.backoff
    with pytest.raises(ConfigError, match="timeout must be above 0, got 0"):
        OpenAIBackend("http://127.0.0.1:9/v1", timeout=0)
    with pytest.raises(ConfigError, match="slots must be at least 1, got 0"):
        EmbeddedBackend(slots=0)


def test_a_missing_model_file_is_found_while_planning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "Q", "--model-path", str(tmp_path / "nope.gguf")]) == 2
    err = capsys.readouterr().err
    assert "model file not found" in err
    assert len(err.splitlines()) == 1


def test_eval_protocol_options_come_from_eval_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pacore.config import EvalSettings

    argv = eval_args(tmp_path, dead_url())
    argv = [a for a in argv if a not in ("--runs", "--pool", "1")]
    plan = plan_eval(build_parser().parse_args(argv))
    defaults = EvalSettings()
    assert (plan.runs, plan.pool, plan.jobs) == (defaults.runs, defaults.pool, defaults.jobs)
    for flag, message in [("--jobs", "--jobs must be at least 1"), ("--limit", "--limit must")]:
        assert main([*eval_args(tmp_path, dead_url()), flag, "0"]) == 2
        assert message in capsys.readouterr().err


def plain_eval_args(tmp_path: Path, *extra: str) -> list[str]:
    """`pacore eval` on a one-problem dataset, with no backend or method chosen."""
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "p0", "question": "What?", "answer": "42"}) + "\n")
    return ["eval", "--dataset", str(data), "--out", str(tmp_path / "out"), *extra]


SERVER = ("--backend", "http://127.0.0.1:9/v1")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--method", "single", "--template", "T"), "--template has no effect on single"),
        (("--method", "sc:4", *SERVER, "--keep-truncated"), "--keep-truncated has no effect"),
        (("--method", "single", *SERVER, "--compaction", "full"), "--compaction has no effect"),
        (("--method", "sc:2", "--method", "single", "--min-references", "2"), "on sc:2, single"),
        (
            ("--method", "pacore:low", "--method", "nomp:low", "--compaction", "answer"),
            "--compaction answer cannot apply to nomp:low, which always passes full",
        ),
        (("--method", "single", *SERVER, "--slots", "2"), "--slots is for the embedded backend"),
        (("--method", "single", "--timeout", "5"), "--timeout is for a server"),
        (("--method", "single", "--retries", "1"), "--retries is for a server"),
        (("--method", "single", "--backoff", "1"), "--backoff is for a server"),
        (("--method", "single", "--no-n"), "--no-n is for a server"),
        (("--method", "single", "--model", "m"), "--model is for a server"),
        (("--method", "single", "--concurrency", "2"), "--concurrency is for a server"),
        (("--method", "single", "--stream"), "--stream is for a server"),
        (("--method", "pacore:4", "--max-width", "2"), "width 4 is above the cap of 2"),
        # Sizes that would fill memory before the first request (and ignore Ctrl-C).
        (("--method", "single", "--pool", "1000000000"), "--pool must be at most 65536"),
        (("--method", "single", "--runs", "100000000000"), "--runs must be at most 100000"),
        (("--method", "sc:4", "--max-width", "1000000000"), "--max-width must be at most 65536"),
    ],
)
def test_eval_refuses_options_that_would_not_take_effect(
    tmp_path: Path, extra: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tmp_path / "t.j2"
    template.write_text("{{ original_prompt }} {{ ref_responses }}")
    argv = [str(template) if a == "T" else a for a in extra]
    assert main(plain_eval_args(tmp_path, *argv)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra", [("--widths", "4"), ("--preset", "high")])
def test_eval_has_no_width_options(
    tmp_path: Path, extra: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    """Widths belong to each --method; `pacore eval` never takes (and ignores) --widths."""
    with pytest.raises(SystemExit) as exit_info:
        main(plain_eval_args(tmp_path, "--method", "pacore:low", *extra))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: {' '.join(extra)}" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "extra",
    [
        ("--method", "nomp:low", "--method", "pacore:low", "--compaction", "full"),
        (
            "--method",
            "single",
            "--method",
            "pacore:low",
            "--keep-truncated",
            "--min-references",
            "2",
        ),
        ("--method", "single", "--slots", "2"),
        ("--method", "single", *SERVER, "--timeout", "5", "--no-n", "--concurrency", "2"),
    ],
)
def test_eval_accepts_options_some_method_or_the_backend_uses(
    tmp_path: Path, extra: tuple[str, ...]
) -> None:
    plan = plan_eval(build_parser().parse_args(plain_eval_args(tmp_path, *extra)))
    assert plan.methods
    assert not (tmp_path / "out").exists()


def test_eval_compaction_reaches_pacore_methods_and_nomp_keeps_full(tmp_path: Path) -> None:
    argv = plain_eval_args(tmp_path, "--method", "pacore:low", "--method", "nomp:low")
    plan = plan_eval(build_parser().parse_args([*argv, "--compaction", "full"]))
    assert plan.config.compaction == "full"
    pacore, nomp = plan.methods
    assert (pacore.compaction, nomp.compaction) == (None, "full")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--timeout", "5"], "--timeout is for a server (--backend URL), not the embedded model"),
        (["--wait-ready", "5"], "--wait-ready is for a server"),
        (["--no-n"], "--no-n is for a server"),
        (["--model", "m"], "--model is for a server"),
        (["--backend", "http://127.0.0.1:9/v1", "--slots", "2"], "--slots is for the embedded"),
    ],
)
def test_run_refuses_backend_options_its_backend_would_ignore(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "Q", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.splitlines()) == 1


def test_a_truncated_answer_says_what_cut_it(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.fake_server import fixed_length_responder

    with run_in_thread(FakeConfig(responder=fixed_length_responder(40))) as server:
        args = ["run", "Q?", "--backend", server.url, "--widths", "1", "--max-tokens", "5"]
        assert main([*args, "--keep-truncated", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "the final trajectory was truncated at --max-tokens" in err
