"""Methods: parsing, self-consistency voting, and runs against the fake server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pacore.backends.openai_compat import OpenAIBackend
from pacore.config import PacoreConfig
from pacore.core.compaction import last_boxed
from pacore.errors import ConfigError
from pacore.eval.datasets import Sample
from pacore.eval.methods import Context, PacoreMethod, SelfConsistency, parse_method
from pacore.pool import PooledSampling
from pacore.store import TrajectoryStore
from tests.fake_server import FakeConfig, FakeServer


@pytest.mark.parametrize(
    ("name", "family", "widths", "first", "total"),
    [
        ("pacore:low", "pacore", (4,), 4, 5),
        ("pacore:high", "pacore", (32, 4), 32, 37),
        ("pacore:8,2", "pacore", (8, 2), 8, 11),
        ("nomp:medium", "nomp", (16,), 16, 17),
        ("seq:4", "seq", (1, 1, 1), 1, 4),
    ],
)
def test_parse_engine_methods(
    name: str, family: str, widths: tuple[int, ...], first: int, total: int
) -> None:
    method = parse_method(name)
    assert isinstance(method, PacoreMethod)
    assert (method.family, method.widths, method.first_round, method.trajectories) == (
        family,
        widths,
        first,
        total,
    )
    # nomp passes full trajectories by definition; the others take --compaction.
    assert method.compaction == ("full" if family == "nomp" else None)


def test_parse_voting_methods() -> None:
    sc = parse_method("sc:16")
    assert isinstance(sc, SelfConsistency)
    assert sc.n == 16
    assert sc.family == "sc"
    single = parse_method("single")
    assert isinstance(single, SelfConsistency)
    assert single.n == 1
    assert single.family == "single"


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("magic:3", "unknown method"),
        ("pacore", "unknown method"),
        ("pacore:ultra", "method 'pacore:ultra'"),
        ("sc:0", "at least 1"),
        ("sc:4,4", "method 'sc:4,4'"),
        ("seq:1", "seq needs at least 2 rounds"),
        ("single:3", "unknown method"),
        # Other spellings of a width would name the same method twice in one folder.
        ("pacore:04", "width '04' has a leading zero; write 4"),
        ("pacore:+4", "width '\\+4' is not an integer in plain digits"),
        ("pacore:\uff14", "is not an integer in plain digits"),  # a fullwidth 4
        ("pacore:4_0", "width '4_0' is not an integer"),
        ("sc:\u0668", "is not an integer in plain digits"),  # an Arabic-Indic 8
    ],
)
def test_bad_method_names(name: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_method(name)


@pytest.mark.parametrize(
    ("written", "name"),
    [
        ("pacore: 4, 2", "pacore:4,2"),
        (" nomp:8 ,2 ", "nomp:8,2"),
        ("sc: 16", "sc:16"),
        ("pacore: low", "pacore:low"),
        ("seq:3", "seq:3"),
        ("single", "single"),
    ],
)
def test_a_built_in_method_has_one_name(written: str, name: str) -> None:
    """Spaces around a width do not make another method (its results apart from the
    same method's in one folder)."""
    assert parse_method(written).name == name


def sc_responder(messages: list[dict[str, Any]], index: int, body: dict[str, Any]) -> str:
    # Two samples in three say 7: majority voting should find it.
    return f"<think>t</think>\\boxed{{{7 if index % 3 else 5}}}"


async def test_self_consistency_votes_over_the_pool(tmp_path: Path) -> None:
    sample = Sample(id="s", messages=({"role": "user", "content": "Q"},), answer="7")
    async with FakeServer(FakeConfig(responder=sc_responder)) as srv:
        backend = OpenAIBackend(srv.url, model="fake-model")
        with TrajectoryStore(tmp_path / "s.sqlite") as store:
            shared = PooledSampling(backend, store, "fake-model", pool_size=12)
            ctx = Context(backend, PacoreConfig(), shared, last_boxed, lambda a, b: a == b)
            outcome = await SelfConsistency("sc:12", 12).run(sample, 0, ctx)
            low = await PacoreMethod("pacore:low", (4,)).run(sample, 0, ctx)
        await backend.aclose()
    assert outcome.answer == "\\boxed{7}"
    assert outcome.votes == [8, 4]
    assert outcome.trajectories == 12
    assert outcome.ttc_tokens > 0
    assert low.status == "ok"
    assert len(low.references) == 4
    # Both drew round 1 from the same pool: one pool call plus pacore's synthesis.
    assert srv.stats.requests == 2


def test_pass_at_k_table() -> None:
    from pacore.eval.runner import pass_at_k_table

    # p1: 1 of 4 runs passed; p2: all 4. pass@1 = (1/4 + 1) / 2; pass@4 = (1 + 1) / 2.
    table = pass_at_k_table({"p1": [1.0, 0.0, 0.0, 0.5], "p2": [1.0] * 4})
    assert table == {"pass@1": 0.625, "pass@2": 0.75, "pass@4": 1.0}
    assert pass_at_k_table({}) == {}
