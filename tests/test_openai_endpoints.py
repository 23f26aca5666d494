"""The endpoint pool of the OpenAI-compatible backend, on a fake clock."""

from __future__ import annotations

import pytest

from pacore.backends.openai_compat.endpoints import (
    AFFINITY_SLACK,
    MAX_COOLDOWN_S,
    EndpointPool,
    normalize_base_url,
)
from pacore.errors import ConfigError, ConnectionFailed, ServerError

URLS = ["http://a/v1", "http://b/v1", "http://c/v1"]


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        """Start at time 0."""
        self.now = 0.0

    def __call__(self) -> float:
        """The current time."""
        return self.now


def make_pool(clock: Clock, urls: list[str] = URLS, failures: int = 3) -> EndpointPool:
    """A pool of `urls` with a 5 s cool-down."""
    return EndpointPool(urls, cooldown=5.0, failures_before_cooldown=failures, clock=clock)


def test_base_url_validation() -> None:
    """URLs need a scheme and host; the trailing slash goes."""
    assert normalize_base_url(" http://127.0.0.1:8000/v1/ ") == "http://127.0.0.1:8000/v1"
    assert normalize_base_url("https://api.example.com/v1") == "https://api.example.com/v1"
    for bad in ("127.0.0.1:8000", "ftp://host/v1", "http://"):
        with pytest.raises(ConfigError, match="must start with http"):
            normalize_base_url(bad)
    with pytest.raises(ConfigError, match="at least one"):
        make_pool(Clock(), [])


def test_pick_rotates_among_idle_endpoints() -> None:
    """With equal load, successive picks take turns."""
    pool = make_pool(Clock())
    assert [pool.pick().url for _ in range(6)] == [URLS[1], URLS[2], URLS[0]] * 2


def test_pick_prefers_the_least_loaded() -> None:
    """The endpoint with fewest samples in flight wins, whatever the turn."""
    pool = make_pool(Clock())
    a, b, c = pool.endpoints
    a.inflight, b.inflight, c.inflight = 2, 5, 1
    assert all(pool.pick() is c for _ in range(4))
    assert pool.pick(avoid=c) is a


def test_an_affinity_keeps_its_endpoint_and_affinities_spread() -> None:
    """The calls of one group go to one endpoint whatever the turn; groups spread over
    every endpoint; a benched endpoint moves only its own groups."""
    clock = Clock()
    pool = make_pool(clock)
    own = {f"p{i}:2": pool.pick(affinity=f"p{i}:2") for i in range(300)}
    for group, ep in own.items():
        assert all(pool.pick(affinity=group) is ep for _ in range(3))
    shares = [sum(ep is e for ep in own.values()) for e in pool.endpoints]
    assert sum(shares) == 300
    assert min(shares) > 60  # about 100 each
    benched = pool.endpoints[0]
    pool.failed(benched, ConnectionFailed("refused"))
    moved = {group: pool.pick(affinity=group) for group in own}
    assert all(moved[g] is own[g] for g in own if own[g] is not benched)
    assert all(moved[g] is not benched for g in own)


def test_a_busy_affinity_endpoint_yields_to_the_least_loaded() -> None:
    pool = make_pool(Clock())
    group = "p7:1"
    ep = pool.pick(affinity=group)
    ep.inflight = AFFINITY_SLACK
    assert pool.pick(affinity=group) is ep  # within the slack: still its own
    ep.inflight = AFFINITY_SLACK + 1
    other = pool.pick(affinity=group)
    assert other is not ep
    assert other.inflight == 0


def test_connection_failure_benches_at_once_and_success_restores() -> None:
    """One connection failure is enough; a success clears the record."""
    clock = Clock()
    pool = make_pool(clock)
    a = pool.endpoints[0]
    pool.failed(a, ConnectionFailed("refused"))
    assert pool.is_down(a)
    assert a.down_until == 5.0
    assert all(pool.pick() is not a for _ in range(6))
    clock.now = 5.0
    assert not pool.is_down(a)
    pool.succeeded(a)
    assert (a.consecutive_failures, a.down_until) == (0, 0.0)


def test_other_failures_bench_after_a_threshold_with_growing_cooldown() -> None:
    """Server errors bench an endpoint from the third in a row; each further one doubles it."""
    clock = Clock()
    pool = make_pool(clock)
    a = pool.endpoints[0]
    for _ in range(2):
        pool.failed(a, ServerError("HTTP 500"))
    assert not pool.is_down(a)
    cooldowns = []
    for _ in range(9):
        pool.failed(a, ServerError("HTTP 500"))
        cooldowns.append(a.down_until - clock.now)
    assert cooldowns[:4] == [5.0, 10.0, 20.0, 40.0]
    assert cooldowns[-1] == MAX_COOLDOWN_S


def test_a_lone_endpoint_is_never_benched() -> None:
    """With nowhere else to go, failures never take the only endpoint out."""
    pool = make_pool(Clock(), URLS[:1])
    (only,) = pool.endpoints
    for _ in range(5):
        pool.failed(only, ConnectionFailed("refused"))
    assert not pool.is_down(only)
    assert pool.pick() is only
    assert pool.pick(avoid=only) is only


def test_when_all_cool_down_the_first_back_is_tried() -> None:
    """Every endpoint benched: the pick is the one whose cool-down ends first."""
    clock = Clock()
    pool = make_pool(clock, URLS[:2])
    a, b = pool.endpoints
    pool.failed(b, ConnectionFailed("x"))
    clock.now = 1.0
    pool.failed(a, ConnectionFailed("x"))
    assert pool.pick() is b
    pool.unreachable(b)
    assert b.down_until == 6.0
    assert pool.pick() is a
