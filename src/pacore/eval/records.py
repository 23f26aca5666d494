"""`RunRecord`: one (problem, method, run) of an evaluation, graded: a line of `results.jsonl`.

The runner builds one per finished job and writes `to_dict()` as a JSON line; the
report reads the lines back with `from_dict` and summarises them. The keys and values
of a line are a file format: evaluations resume from earlier files and
`--report-only` rebuilds reports from them, so `to_dict` writes the keys it always
has, in the same order, and `from_dict` reads any line written before.

`status` is the method's (`ok`, `truncated`, `empty`), `failed` for an infrastructure
failure (not an answer: dropped and run again on resume), `no_answer` when the model
left nothing usable, or `input_too_long` when the input can never fit the model's context
window (both graded as wrong, and counted apart in the summary's `statuses`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pacore.eval.metrics import count_markers

RunStatus = str
"""`ok`, `truncated`, `empty`, `failed`, `no_answer` or `input_too_long`."""

_REQUIRED = ("id", "method", "run", "status")


@dataclass(frozen=True)
class RunRecord:
    """One run of one method on one problem, graded (see the module docstring)."""

    id: str
    method: str
    family: str
    run: int
    status: RunStatus
    error: str | None
    answer: str
    """The text graded: the compacted final message."""
    extracted: str | None
    """The answer (or program) the grader found in `answer`."""
    score: float
    correct: bool | None
    """None when ungradable or failed (never counted as wrong)."""
    reason: str | None
    ttc_tokens: int
    max_prompt_tokens: int
    max_context_tokens: int
    requests: int
    trajectories: int
    round_correct: tuple[tuple[bool | None, ...], ...] = ()
    """The correctness of each message of every round before the last."""
    ref_correct: tuple[bool | None, ...] = ()
    """The correctness of the messages the final synthesis saw."""
    ref_answers: tuple[str | None, ...] = ()
    """The answers of those messages (for the solipsism analysis)."""
    votes: tuple[int, ...] = ()
    """Self-consistency: the size of each answer cluster."""
    final_text: str | None = None
    """The final synthesis's whole text (methods with references only)."""
    latency_s: float = 0.0
    markers: Mapping[str, int] | None = field(default=None, compare=False)
    """The final text's cross-checking markers, when the text was left out to save
    memory (`without_text`); not part of the line."""

    @property
    def failed(self) -> bool:
        """An infrastructure failure: not an answer, kept apart from wrong ones."""
        return self.status == "failed"

    @property
    def key(self) -> tuple[str, str, str]:
        """(id, method, run) as strings: what a resumed evaluation skips."""
        return (self.id, self.method, str(self.run))

    def without_text(self, shared: dict[Any, Any] | None = None) -> RunRecord:
        """The record without its final text, its markers counted (`marker_counts`).

        A copy of its fields (`copy.copy`'s way): `dataclasses.replace` runs the frozen
        constructor again, and a report reads every record of an evaluation this way.
        With `shared` (a dict the caller keeps for all the records it reads), the
        short texts (id, method, status, answer extracted, reason), the per-round
        grades and the references' answers are replaced by equal values
        already seen: a report holds every record, and most of them repeat these (a
        synthesis's 16 references graded alike, the same answer 16 times); what is
        replaced is always equal to what replaces it.
        """
        if self.final_text is None and shared is None:
            return self
        record = object.__new__(RunRecord)
        fields = record.__dict__
        fields.update(self.__dict__)
        if self.final_text is not None:
            fields["final_text"], fields["markers"] = None, count_markers(self.final_text)
        if shared is not None:  # votes are left alone: (1,) == (True,) in a dict
            one = shared.setdefault
            for name in ("id", "method", "family", "status", "extracted", "reason"):
                value = fields[name]
                fields[name] = one(value, value)
            answers = tuple(one(a, a) for a in self.ref_answers)
            fields["ref_answers"] = one(answers, answers)
            fields["ref_correct"] = one(self.ref_correct, self.ref_correct)
            rounds = tuple(one(r, r) for r in self.round_correct)
            fields["round_correct"] = one(rounds, rounds)
        return record

    def marker_counts(self) -> Mapping[str, int]:
        """The cross-checking markers of the final text (`metrics.count_markers`)."""
        if self.markers is not None:
            return self.markers
        return count_markers(self.final_text or "")

    def to_dict(self) -> dict[str, Any]:
        """The JSON line as written to `results.jsonl` (keys and order are a file format)."""
        return {
            "id": self.id,
            "method": self.method,
            "family": self.family,
            "run": self.run,
            "status": self.status,
            "error": self.error,
            "answer": self.answer,
            "extracted": self.extracted,
            "score": self.score,
            "correct": self.correct,
            "reason": self.reason,
            "ttc_tokens": self.ttc_tokens,
            "max_prompt_tokens": self.max_prompt_tokens,
            "max_context_tokens": self.max_context_tokens,
            "requests": self.requests,
            "trajectories": self.trajectories,
            "round_correct": [list(r) for r in self.round_correct],
            "ref_correct": list(self.ref_correct),
            "ref_answers": list(self.ref_answers),
            "votes": list(self.votes),
            "final_text": self.final_text,
            "latency_s": self.latency_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """A record from a results line; fields a line lacks take their empty value.

        Raises `ValueError` when the line is not a result record (no id, method, run
        or status, or a run that is not an integer).
        """
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise ValueError(f"not an eval result (no {', '.join(missing)})")
        run = data["run"]
        if isinstance(run, bool) or not isinstance(run, int):
            raise ValueError(f"not an eval result (run {run!r})")
        correct = data.get("correct")
        return cls(
            id=str(data["id"]),
            method=str(data["method"]),
            family=str(data.get("family") or ""),
            run=run,
            status=str(data["status"]),
            error=data.get("error"),
            answer=str(data.get("answer") or ""),
            extracted=data.get("extracted"),
            score=float(data.get("score") or 0.0),
            correct=None if correct is None else bool(correct),
            reason=data.get("reason"),
            ttc_tokens=int(data.get("ttc_tokens") or 0),
            max_prompt_tokens=int(data.get("max_prompt_tokens") or 0),
            max_context_tokens=int(data.get("max_context_tokens") or 0),
            requests=int(data.get("requests") or 0),
            trajectories=int(data.get("trajectories") or 0),
            round_correct=tuple(tuple(r) for r in _list(data.get("round_correct"))),
            ref_correct=tuple(_list(data.get("ref_correct"))),
            ref_answers=tuple(_list(data.get("ref_answers"))),
            votes=tuple(int(v) for v in _list(data.get("votes"))),
            final_text=data.get("final_text"),
            latency_s=float(data.get("latency_s") or 0.0),
        )


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else ()
