"""The method registry, and self-consistency as the engine's round 1 plus a vote."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest

from pacore.config import PacoreConfig
from pacore.core.planning import sample_seed
from pacore.engine import SampleRequest
from pacore.errors import ConfigError, ServerError
from pacore.eval.datasets import Sample
from pacore.eval.methods import (
    METHODS,
    Context,
    Method,
    MethodForm,
    PacoreMethod,
    SelfConsistency,
    parse_method,
)
from pacore.pool import PooledSampling
from pacore.types import Completion, Usage


def test_every_family_is_registered_once() -> None:
    families = [f.family for f in METHODS]
    assert families == ["pacore", "sc", "seq", "nomp", "single"]
    assert isinstance(parse_method(" sc:3 "), SelfConsistency)


def test_a_new_method_is_a_new_form_not_a_branch() -> None:
    def build(name: str, arg: str, max_width: int) -> Method:
        return PacoreMethod(name, (int(arg), int(arg)), family="twice")

    forms = (*METHODS, MethodForm("twice", "twice:<K>", build))
    method = parse_method("twice:3", forms=forms)
    assert isinstance(method, PacoreMethod)
    assert (method.family, method.widths) == ("twice", (3, 3))
    with pytest.raises(ConfigError, match=r"or twice:<K>$"):
        parse_method("magic", forms=forms)
    with pytest.raises(ConfigError, match="method 'twice:x'"):
        parse_method("twice:x", forms=forms)


@dataclass
class ScriptedSampling:
    """Stands in for the pool: answers each request from a script, recording it."""

    answers: list[str | None]
    requests: list[SampleRequest]

    def for_run(self, run: int, namespace: str = "") -> Any:
        """The sampler of one run."""

        async def sampler(request: SampleRequest) -> list[Completion]:
            self.requests.append(request)
            picked = self.answers[: request.n]
            del self.answers[: request.n]
            return [
                Completion.failed(ServerError("boom"))
                if a is None
                else Completion(f"\\boxed{{{a}}}", finish_reason="stop", usage=Usage(3, 5))
                for a in picked
            ]

        return sampler


async def test_self_consistency_is_the_engines_round_one_and_a_vote() -> None:
    sample = Sample(id="s", messages=({"role": "user", "content": "Q"},))
    # Round 1: one slot fails and is sampled again under the engine's policy.
    sampling = ScriptedSampling(["7", None, "5", "7", "7"], [])
    config = PacoreConfig(seed=3)
    ctx = Context(cast(Any, None), config, cast(PooledSampling, sampling), lambda m: m, str.__eq__)
    output = await SelfConsistency("sc:4", 4).run(sample, 0, ctx)
    first, again = sampling.requests
    assert (first.round_index, first.attempt, first.n) == (1, 0, 4)
    assert first.messages == list(sample.messages)
    assert first.params.seed == sample_seed(3, "s", 1, 0)
    assert first.affinity == "s:1"
    assert (again.attempt, again.n) == (1, 1)
    assert output.answer == "\\boxed{7}"
    assert output.votes == [3, 1]
    assert output.trajectories == 5  # the failed attempt is counted, as in PaCoRe
    assert output.ttc_tokens == 20
