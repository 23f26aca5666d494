"""Deterministic choices the engine makes: problem keys, reference order, seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from pacore.core.hashing import canonical_json, seeded_rng, stable_hash
from pacore.types import Message

T = TypeVar("T")


def problem_key(messages: Sequence[Message]) -> str:
    """A stable short hash of a conversation, used as an id when none is given."""
    return stable_hash(canonical_json(list(messages)), chars=16)


def shuffle_references(
    references: Sequence[T], *, seed: int | None, problem: str, round_index: int
) -> list[T]:
    """The references in a seeded order of their own for this problem and round.

    Each (seed, problem, round) gets its own permutation, so no problem shares
    the order bias of another, and a rerun with the same seed repeats it.
    """
    out = list(references)
    seeded_rng("shuffle", seed or 0, problem, round_index).shuffle(out)
    return out


def sample_seed(seed: int | None, problem: str, round_index: int, index: int) -> int | None:
    """The sampling seed of one sample, distinct per problem, round and sample."""
    if seed is None:
        return None
    return seeded_rng("sample", seed, problem, round_index, index).randrange(2**31)
