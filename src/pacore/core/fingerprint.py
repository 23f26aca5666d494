"""What decides a result: the settings both `pacore run` and `pacore eval` fingerprint.

A resumed output must hold results computed on the same problems with the same
result-changing settings; throughput options (concurrency, timeouts, retries,
streaming) are left out, so they may change between runs.
"""

from __future__ import annotations

from typing import Any

from pacore.config import PacoreConfig
from pacore.core.hashing import canonical_json, stable_hash


def result_settings(config: PacoreConfig) -> dict[str, Any]:
    """The engine options that change a result (the template hashed)."""
    return {
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_tokens": config.max_tokens,
        "extra_body": config.extra_body,
        "compaction": config.compaction,
        "template": None if config.template is None else stable_hash(config.template),
        "truncated": config.truncated,
        "on_failure": config.on_failure,
        "max_resamples": config.max_resamples,
        "min_references": config.min_references,
    }


def digest(value: Any) -> str:
    """A short stable hash of a JSON-ready value (16 hex characters)."""
    return stable_hash(canonical_json(value), chars=16)
