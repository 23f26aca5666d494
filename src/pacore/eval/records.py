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

import math
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

        Raises `ValueError` when the line is not a result record: no id, method, run or
        status, or a field of another type than pacore writes (a text that is a number,
        a count that is not a whole number, a grade that is not true, false or null):
        every reader then counts it as a line that is not a result, never a traceback.
        """
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise ValueError(f"not an eval result (no {', '.join(missing)})")
        run = data["run"]
        if type(run) is not int or not 0 <= run < MAX_RUN:
            raise ValueError(f"not an eval result (run {run!r})")
        get = data.get
        texts = [get(name) for name in _TEXTS]
        if not set(map(type, texts)) <= _TEXT_TYPES:  # one check for every text field
            name, value = next((n, v) for n, v in zip(_TEXTS, texts, strict=True)
                               if type(v) not in _TEXT_TYPES)  # fmt: skip
            raise _wrong(name, value)
        family, error, answer, extracted, reason, final_text = texts
        rounds = _list(get("round_correct"), "round_correct")
        ref_correct = _list(get("ref_correct"), "ref_correct")
        ref_answers = _list(get("ref_answers"), "ref_answers")
        grades = set(map(type, ref_correct))
        for r in rounds:
            grades.update(map(type, _list(r, "round_correct")))
        if not grades <= _GRADE_TYPES:
            raise ValueError("not an eval result (a grade that is not true, false or null)")
        if not set(map(type, ref_answers)) <= _TEXT_TYPES:
            raise ValueError("not an eval result (a reference answer that is not a text)")
        correct = get("correct")
        if type(correct) not in _GRADE_TYPES:
            raise _wrong("correct", correct)
        return cls(
            id=_id(data["id"]),
            method=_str(data["method"], "method"),
            family=family or "",
            run=run,
            status=_str(data["status"], "status"),
            error=error,
            answer=answer or "",
            extracted=extracted,
            score=_number(get("score"), "score"),
            correct=correct,
            reason=reason,
            ttc_tokens=count_field(get("ttc_tokens"), "ttc_tokens"),
            max_prompt_tokens=count_field(get("max_prompt_tokens"), "max_prompt_tokens"),
            max_context_tokens=count_field(get("max_context_tokens"), "max_context_tokens"),
            requests=count_field(get("requests"), "requests"),
            trajectories=count_field(get("trajectories"), "trajectories"),
            round_correct=tuple(map(tuple, rounds)),
            ref_correct=tuple(ref_correct),
            ref_answers=tuple(ref_answers),
            votes=tuple(count_field(v, "votes") for v in _list(get("votes"), "votes")),
            final_text=final_text,
            latency_s=_number(get("latency_s"), "latency_s"),
        )


_TEXTS = ("family", "error", "answer", "extracted", "reason", "final_text")
_TEXT_TYPES = frozenset((str, type(None)))
_GRADE_TYPES = frozenset((bool, type(None)))


MAX_RUN = 2**31
"""Runs are numbered below this (an evaluation asks for at most `config.MAX_RUNS`)."""


def _wrong(name: str, value: Any) -> ValueError:
    """The error of a field that is not what pacore writes, its value shortened."""
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:39] + "…"
    return ValueError(f"not an eval result ({name} {shown})")


def _id(value: Any) -> str:
    if type(value) is str or type(value) is int:  # old lines wrote numeric ids as numbers
        return str(value)
    raise _wrong("id", value)


def _str(value: Any, name: str) -> str:
    if type(value) is not str:
        raise _wrong(name, value)
    return value


def count_field(value: Any, name: str) -> int:
    """A count a line holds (a whole number from 0; null is 0); `ValueError` naming the
    field for anything else (text, a fraction, infinity)."""
    if value is None:
        return 0
    if type(value) is int and value >= 0:
        return value
    if type(value) is float and value.is_integer() and 0 <= value < 2**63:
        return int(value)
    raise _wrong(name, value)


def _number(value: Any, name: str) -> float:
    if value is None:
        return 0.0
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return float(value)
    raise _wrong(name, value)


def _list(value: Any, name: str) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, list):
        return value
    raise _wrong(name, value)
