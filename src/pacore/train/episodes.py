"""Episodes: a problem, a message set M drawn from its pool, and the prompt P(x, M).

- `draw_size`: |M| ~ U(lo, hi), seeded by (seed, problem, epoch);
- `draw_references`: which pooled responses form M, seeded by the same
  (seed, problem, epoch), so every response of one RL group (all `rollout.n`
  samples of a prompt) sees the same M and each epoch sees a new one;
- `episode_messages`: each reference compacted by the inference compaction
  (`pacore.core.compaction.compact`), then placed in the problem's last user turn
  by the inference template function (`pacore.core.prompts.synthesis_messages`),
  so training prompts are byte for byte the prompts `pacore run` sends.

All pure functions over plain data, seeded through `pacore.core.hashing`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pacore.core.compaction import COMPACTION_MODES, compact
from pacore.core.hashing import seeded_rng
from pacore.core.prompts import Renderer, render_default, synthesis_messages
from pacore.errors import ConfigError
from pacore.train.records import PoolRecord
from pacore.types import Completion, Message

DEFAULT_LO = 16
DEFAULT_HI = 24
"""The paper's |M| ~ U(16, 24)."""


def _check_range(lo: int, hi: int) -> None:
    if lo < 1 or hi < lo:
        raise ConfigError(f"the message-set size range must satisfy 1 <= lo <= hi, got {lo}..{hi}")


def draw_size(
    problem_id: str, epoch: int, lo: int = DEFAULT_LO, hi: int = DEFAULT_HI, seed: int = 0
) -> int:
    """|M| for one (problem, epoch): uniform in [lo, hi], both ends included."""
    _check_range(lo, hi)
    return seeded_rng("episode-size", seed, problem_id, epoch).randint(lo, hi)


def draw_indices(
    record: PoolRecord,
    epoch: int,
    *,
    lo: int = DEFAULT_LO,
    hi: int = DEFAULT_HI,
    seed: int = 0,
) -> list[int]:
    """The positions in the pool of the message set M of one (problem, epoch).

    |M| is `draw_size` capped at the pool size; the responses are drawn without
    replacement, in a seeded order (the order is part of the draw).
    """
    size = min(draw_size(record.id, epoch, lo, hi, seed), len(record.responses))
    rng = seeded_rng("episode-refs", seed, record.id, epoch)
    return rng.sample(range(len(record.responses)), size)


def draw_references(
    record: PoolRecord,
    epoch: int,
    *,
    lo: int = DEFAULT_LO,
    hi: int = DEFAULT_HI,
    seed: int = 0,
) -> list[str]:
    """The message set M of one (problem, epoch): the responses `draw_indices` picks, whole."""
    picks = draw_indices(record, epoch, lo=lo, hi=hi, seed=seed)
    return [record.responses[i] for i in picks]


def episode_messages(
    record: PoolRecord,
    references: Sequence[str],
    *,
    compaction: str = "conclusion",
    render: Renderer = render_default,
) -> list[Message]:
    """The chat input of an episode: P(x, M) with each reference compacted as in inference.

    References left blank by compaction are dropped, as the engine drops `empty`
    trajectories; with none left the conversation is returned unchanged.
    """
    if compaction not in COMPACTION_MODES:
        raise ConfigError(
            f"unknown compaction {compaction!r}; valid: {', '.join(COMPACTION_MODES)}"
        )
    compacted = (compact(Completion(text=r), compaction) for r in references)
    # As in inference, a reference with nothing left after compaction is not passed on.
    messages = [m for m in compacted if m.strip()]
    return synthesis_messages(record.conversation, messages, render)


def usable_pool(record: PoolRecord, compaction: str = "conclusion") -> PoolRecord:
    """`record` with only the responses an episode can pass on (non-blank once compacted):
    what M is drawn from, so |M| is the size drawn, in every trainer alike."""
    if compaction not in COMPACTION_MODES:
        raise ConfigError(
            f"unknown compaction {compaction!r}; valid: {', '.join(COMPACTION_MODES)}"
        )
    kept = tuple(r for r in record.responses if compact(Completion(text=r), compaction).strip())
    return record if len(kept) == len(record.responses) else replace(record, responses=kept)


def episode(
    record: PoolRecord,
    epoch: int,
    *,
    lo: int = DEFAULT_LO,
    hi: int = DEFAULT_HI,
    seed: int = 0,
    compaction: str = "conclusion",
) -> list[Message]:
    """`episode_messages` of the references `draw_references` picks for (problem, epoch)
    from the responses it can pass on (`usable_pool`)."""
    usable = usable_pool(record, compaction)
    refs = draw_references(usable, epoch, lo=lo, hi=hi, seed=seed)
    return episode_messages(usable, refs, compaction=compaction)
