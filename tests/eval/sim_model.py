"""A simulated model with known statistics, served by the fake server.

Round 1: each sample is correct (`\\boxed{42}`) with probability `p`, else a wrong
answer drawn from a huge range, so wrong answers never agree. A synthesis is correct
with probability `q_any` when at least one reference holds the right answer, and with
probability `q_none` (emergent correctness) when none does.

Every draw is a hash of the request (prompt, seed, choice index), so a seeded
evaluation is reproducible however requests interleave.
"""

from __future__ import annotations

import hashlib
import json
import random
from math import comb
from typing import Any

CORRECT = "42"


class SimulatedModel:
    def __init__(self, p: float = 0.3, q_any: float = 0.9, q_none: float = 0.1) -> None:
        self.p, self.q_any, self.q_none = p, q_any, q_none

    def __call__(self, messages: list[dict[str, Any]], index: int, body: dict[str, Any]) -> str:
        blob = json.dumps([messages, body.get("seed"), index], sort_keys=True).encode()
        rng = random.Random(hashlib.sha256(blob).digest())
        prompt = str(messages[-1]["content"])
        if "Reference Responses:" in prompt:
            chance = self.q_any if f"\\boxed{{{CORRECT}}}" in prompt else self.q_none
            tag = "synthesis"
        else:
            chance, tag = self.p, "explore"
        answer = CORRECT if rng.random() < chance else str(rng.randrange(100, 10**9))
        return f"<think>{tag} reasoning</think>Therefore the answer is \\boxed{{{answer}}}."

    # -- analytic accuracies -----------------------------------------------------

    def single(self) -> float:
        return self.p

    def pacore(self, k: int) -> float:
        none = (1 - self.p) ** k
        return (1 - none) * self.q_any + none * self.q_none

    def self_consistency(self, n: int) -> float:
        """Wrong answers never agree: the right one wins with 2+ votes, or with one vote
        when every cluster has one member and it came first (ties go to the first)."""
        p = self.p
        one = comb(n, 1) * p * (1 - p) ** (n - 1)
        two_plus = 1 - (1 - p) ** n - one
        return two_plus + one / n


class ScriptedModel:
    """A model whose answers are scripted per problem, for evals built to hold given cases.

    `script` maps a text found in a problem's question to (the round-1 answers, the
    synthesis's answer). Round-1 requests of a problem get its answers in turn (with a
    pool as large as K_1, every run draws all of them); a synthesis gets its one answer.
    Which answers a pool holds does not depend on how requests interleave; their order
    does, so a script avoids ties at the top of the vote. `words` pads each reasoning
    (the fake server counts a word as a token), a synthesis's by half again.
    """

    def __init__(self, script: dict[str, tuple[list[str], str]], words: int = 0) -> None:
        import threading

        self.script = script
        self.words = words
        self.served: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, messages: list[dict[str, Any]], index: int, body: dict[str, Any]) -> str:
        prompt = str(messages[-1]["content"])
        asked = prompt.split("Reference Responses:")[0]
        key = next((k for k in self.script if k in asked), None)
        if key is None:
            raise KeyError(f"no script for {asked[:80]!r}")
        pool, synthesis = self.script[key]
        if "Reference Responses:" in prompt:
            think = "synthesis reasoning" + " weighing" * (self.words * 3 // 2)
            return f"<think>{think}</think>So the answer is \\boxed{{{synthesis}}}."
        with self._lock:
            n = self.served.get(key, 0)
            self.served[key] = n + 1
        answer = pool[n % len(pool)]
        think = "explore reasoning" + " step" * self.words
        return f"<think>{think}</think>Therefore the answer is \\boxed{{{answer}}}."
