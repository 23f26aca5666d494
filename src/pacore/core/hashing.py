"""One seeded hash for every key and random choice: problem ids, store keys, seeds, draws.

`stable_hash(*parts)` is the SHA-256 of the parts written with `str` and joined by
`:`, as lowercase hex cut to `chars` characters. Everything deterministic in pacore
derives from it, so a value never depends on the process, the platform or
`PYTHONHASHSEED`:

- `problem_key`, `prompt_hash`, `params_hash`: `stable_hash(canonical_json(value))`,
  16, 32 and 16 hex characters (store keys and ids of files written earlier stay valid);
- `seeded_rng(*parts)`: a `random.Random` seeded with the first 64 bits of the hash
  (reference order, sample seeds, the pool draws of each run).

The constructions are pinned by golden tests: changing one orphans every stored
trajectory and renames every problem without an id.
"""

from __future__ import annotations

import hashlib
import json
import random

DEFAULT_CHARS = 16
"""Hex characters of a hash when not told otherwise (64 bits)."""


def canonical_json(value: object, *, ensure_ascii: bool = False) -> str:
    """`value` as JSON with sorted keys: the same text for equal values."""
    return json.dumps(value, sort_keys=True, ensure_ascii=ensure_ascii)


def stable_hash(*parts: object, chars: int = DEFAULT_CHARS) -> str:
    """SHA-256 of the parts (`str` of each, joined by `:`) as hex, cut to `chars`."""
    if not 1 <= chars <= 64:
        raise ValueError(f"stable_hash: chars must be in 1..64, got {chars}")
    text = ":".join(map(str, parts))
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def stable_int(*parts: object) -> int:
    """The first 64 bits of `stable_hash(*parts)` as an unsigned integer."""
    return int(stable_hash(*parts, chars=16), 16)


def seeded_rng(*parts: object) -> random.Random:
    """A random generator of its own for these parts, the same in every process."""
    return random.Random(stable_int(*parts))
