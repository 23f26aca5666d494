"""Servers that cap `n` (llama.cpp: at its parallel slots) keep getting `n` up to the cap."""

from __future__ import annotations

import pytest

from pacore.backends import RequestCounter
from pacore.backends.openai_compat import OpenAIBackend
from pacore.types import SamplingParams
from tests.conftest import FakeSleep
from tests.fake_server import FakeConfig, FakeServer

MSGS = [{"role": "user", "content": "What is six times seven?"}]


def backend(url: str, sleep: FakeSleep) -> OpenAIBackend:
    return OpenAIBackend(url, model="fake-model", max_retries=3, sleep=sleep)


def asked(srv: FakeServer) -> list[int]:
    """The `n` of every request the server saw, in order (1 when none was sent)."""
    return [b.get("n", 1) for b in srv.stats.bodies]


async def test_a_named_cap_splits_the_samples(fake_sleep: FakeSleep) -> None:
    """n=6 against llama.cpp's "<= value <= 4": 4 + 2 in two requests, no n=1 fallback."""
    counter = RequestCounter()
    async with FakeServer(FakeConfig(max_n=4)) as srv, backend(srv.url, fake_sleep) as be:
        out = await be.complete(MSGS, 6, SamplingParams(), counter=counter)
        assert [c.error for c in out] == [None] * 6
        assert asked(srv)[0] == 6
        assert sorted(asked(srv)[1:]) == [2, 4]  # the two parts go out together
        assert srv.stats.statuses == {400: 1, 200: 2}
        assert be.pool.endpoints[0].n_cap == 4
        assert be.pool.endpoints[0].honours_n is True
        # The next call goes straight to the cap: nothing is refused again.
        srv.stats.reset()
        again = await be.complete(MSGS, 6, SamplingParams(), counter=counter)
        assert sorted(asked(srv)) == [2, 4]
        assert srv.stats.statuses == {200: 2}
    assert len(again) == 6
    assert counter.requests == 3 + 2
    assert fake_sleep.calls == []  # a refusal of n is not retried, it is split


async def test_a_cap_that_is_not_named_is_found_by_halving(fake_sleep: FakeSleep) -> None:
    config = FakeConfig(max_n=3, max_n_named=False)
    async with FakeServer(config) as srv, backend(srv.url, fake_sleep) as be:
        out = await be.complete(MSGS, 8, SamplingParams())
        assert [c.error for c in out] == [None] * 8
        assert asked(srv) == [8, 4, 4, 2, 2, 2, 2]  # 8 and the two 4s refused, then 2s
        assert be.pool.endpoints[0].n_cap == 2
        srv.stats.reset()
        await be.complete(MSGS, 5, SamplingParams())
        assert sorted(asked(srv)) == [1, 2, 2]


async def test_n_is_given_up_only_when_two_is_refused(fake_sleep: FakeSleep) -> None:
    """A cap of 1 means no `n` at all: one request per sample, as before."""
    async with FakeServer(FakeConfig(max_n=1)) as srv, backend(srv.url, fake_sleep) as be:
        out = await be.complete(MSGS, 4, SamplingParams())
        assert [c.error for c in out] == [None] * 4
        assert asked(srv) == [4, 1, 1, 1, 1]  # the named bound, 1, turns n off at once
        assert be.pool.endpoints[0].honours_n is False
        srv.stats.reset()
        await be.complete(MSGS, 2, SamplingParams())
        assert asked(srv) == [1, 1]


async def test_each_request_of_a_split_call_gets_its_own_seed(fake_sleep: FakeSleep) -> None:
    async with FakeServer(FakeConfig(max_n=4)) as srv, backend(srv.url, fake_sleep) as be:
        out = await be.complete(MSGS, 10, SamplingParams(seed=100))
    assert len(out) == 10
    served = [(b.get("n", 1), b["seed"]) for b in srv.stats.bodies[1:]]
    assert sorted(served) == [(2, 108), (4, 100), (4, 104)]  # seed + first sample's index


async def test_a_failed_part_fails_only_its_own_samples(fake_sleep: FakeSleep) -> None:
    config = FakeConfig(max_n=4)
    async with FakeServer(config) as srv, backend(srv.url, fake_sleep) as be:
        await be.complete(MSGS, 6, SamplingParams())  # learns the cap
        srv.push_script(400)  # the first part is refused (not a refusal of n)
        out = await be.complete(MSGS, 6, SamplingParams())
    failed = [c.error_type == "RequestRejected" for c in out]
    assert failed in ([True] * 4 + [False] * 2, [False] * 4 + [True] * 2)
    assert all(c.error is None for c in out if c.error_type != "RequestRejected")


@pytest.mark.parametrize(("supports_n", "n_requests"), [(True, 2), (False, 2 + 5)])
async def test_a_cap_still_notices_a_server_that_ignores_n(
    fake_sleep: FakeSleep, supports_n: bool, n_requests: int
) -> None:
    """Once capped, a server answering fewer choices than asked still gets singles."""
    config = FakeConfig(max_n=4)
    async with FakeServer(config) as srv, backend(srv.url, fake_sleep) as be:
        await be.complete(MSGS, 6, SamplingParams())
        srv.config.supports_n = supports_n
        srv.stats.reset()
        out = await be.complete(MSGS, 7, SamplingParams())
    assert [c.error for c in out] == [None] * 7
    assert srv.stats.requests == n_requests
