"""The trajectory store's table as earlier pacore versions made it, for the tests that
check such a store is still read and written."""

from __future__ import annotations

_COLUMNS = """
    model TEXT NOT NULL, prompt_hash TEXT NOT NULL, params_hash TEXT NOT NULL,
    sample TEXT NOT NULL, text TEXT NOT NULL, reasoning TEXT, finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER, estimated INTEGER NOT NULL, latency_s REAL NOT NULL,
    endpoint TEXT, created REAL NOT NULL,"""


def earlier_store_table(*, discarded_tokens: bool) -> str:
    """The key-ordered (`WITHOUT ROWID`) `trajectories` table pacore made until its rows
    moved to a rowid table; without `discarded_tokens`, as before that column existed."""
    extra = "\n    discarded_tokens INTEGER NOT NULL DEFAULT 0," if discarded_tokens else ""
    return f"""
CREATE TABLE trajectories ({_COLUMNS}{extra}
    PRIMARY KEY (model, prompt_hash, params_hash, sample)
) WITHOUT ROWID
"""
