"""What `pacore view` shows, as plain data: rows, filters, pages and one problem's rounds.

`load(path)` reads an eval folder (`results.jsonl`, `summary.json`) or a `pacore run`
batch output (JSONL) once. A batch output keeps only each line's offset and small
fields; a problem page rereads its one line, so megabyte trajectories cost nothing until
they are opened. An eval folder's rounds come from its `traces.sqlite` (`eval.traces`),
read per problem page, and full texts from the trajectory store, read per opened card.
An eval folder stores the questions and golds it evaluated (`problems.jsonl`,
`eval.problems_file`); an optional dataset (`--dataset`) is checked against them (or
against `fingerprint.json` in a folder written before they were stored), and supplies
them for a batch output or an older folder.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import orjson

from pacore.errors import ConfigError
from pacore.eval.datasets import Sample
from pacore.eval.fingerprint import problem_hash, read_fingerprint
from pacore.eval.metrics import solipsism_rate
from pacore.eval.problems_file import PROBLEMS, StoredProblem
from pacore.eval.records import RunRecord, count_field
from pacore.eval.traces import TRACES, CardTrace, Trace, TraceReader
from pacore.graders.extract import math_target
from pacore.io.jsonl import line_at, loads_lenient, scan_objects
from pacore.types import Message
from pacore.view.answers import (
    MARKS,
    AnswerGroup,
    Mark,
    Verdict,
    disagreement,
    group_answers,
    is_emergent,
    mark,
    verdict,
)

PAGE_SIZE = 50
PREVIEW_CHARS = 2000
"""A message longer than this shows its start; the rest loads on expand."""


@dataclass(frozen=True)
class Problem:
    """A question and what it is graded against: stored in the eval folder, or read
    from `--dataset`."""

    id: str
    question: str
    gold: str | None
    """The gold answer; for code a short line (`tests of f`), the tests in `tests`."""
    messages: tuple[Message, ...] = ()
    """Every message sent, a system message included (empty: not known)."""
    tests: str | None = None
    """Code: the tests as stored (`problems_file.tests_summary`)."""
    dataset: str = ""
    """The dataset's name (empty: not known)."""

    @classmethod
    def stored(cls, problem: StoredProblem) -> Problem:
        """The problem an eval folder stores."""
        return cls(
            problem.id,
            problem.question,
            problem.gold,
            problem.messages,
            problem.tests,
            problem.dataset,
        )

    @classmethod
    def of(cls, sample: Sample, dataset: str) -> Problem:
        """A dataset's problem, shown as the folder would store it."""
        return cls.stored(StoredProblem.of(sample, dataset))


@dataclass(frozen=True)
class Row:
    """One problem × method × run: a line of the problem list."""

    index: int
    """Its place in the file: the key of its texts."""
    id: str
    method: str
    run: int
    status: str
    error: str | None
    correct: bool | None
    answer: str | None
    ttc_tokens: int
    rounds: int
    emergent: bool = False
    markers: int = 0
    solipsist: bool = False
    family: str = ""
    mark: Mark | None = None
    """What its final synthesis did with its references (`answers.mark`); None: no
    references, or a grade missing."""
    disagreement: float | None = None
    """How split the answers it drew on were (`answers.disagreement`): its references'
    for a synthesis, its vote's for self-consistency; None: neither."""

    @property
    def failed(self) -> bool:
        """An infrastructure failure or a run that left no answer."""
        return self.status in ("failed", "no_answer", "input_too_long") or self.error is not None


@dataclass(frozen=True)
class ViewData:
    """Everything loaded from the path `pacore view` was given."""

    kind: Literal["eval", "run"]
    path: Path
    rows: list[Row]
    summary: Mapping[str, Any] = field(default_factory=dict)
    problems: Mapping[str, Problem] = field(default_factory=dict)
    records: Sequence[RunRecord] = ()
    offsets: Sequence[int] = ()
    """Where each row's line starts in its file (reread on demand)."""
    traces: TraceReader | None = None
    """An eval folder's rounds and texts (None: a folder written before traces)."""
    warnings: Sequence[str] = ()
    """What could not be read, said once by the command and on the overview."""
    final_chars: Sequence[int] = ()
    """An eval record's final text length (the records are kept without it)."""

    @property
    def methods(self) -> list[str]:
        """The methods, in order of first appearance."""
        return list(dict.fromkeys(r.method for r in self.rows))

    def question(self, problem_id: str) -> str:
        """The question text, or "" when neither the folder nor a dataset gives it."""
        problem = self.problems.get(problem_id)
        return problem.question if problem else ""


Versus = Literal["pacore-right", "sc-right"]
VERSUS: dict[Versus, str] = {
    "pacore-right": "PaCoRe right, SC wrong",
    "sc-right": "SC right, PaCoRe wrong",
}
Sort = Literal["ttc", "-ttc", "disagreement", "-disagreement"]
SORTS: dict[Sort, str] = {
    "ttc": "TTC, smallest first",
    "-ttc": "TTC, largest first",
    "disagreement": "disagreement, least first",
    "-disagreement": "disagreement, most first",
}


@dataclass(frozen=True)
class Filters:
    """The problem list's filters (the query string of `/problems`)."""

    method: str = ""
    outcome: str = ""
    """`correct`, `wrong` or "" for both."""
    emergent: bool = False
    failed: bool = False
    markers: bool = False
    solipsism: bool = False
    q: str = ""
    mark: Mark | Literal[""] = ""
    """Only rows whose final synthesis has this mark (`answers.MARKS`)."""
    versus: Versus | Literal[""] = ""
    """`pacore-right`: PaCoRe rows right whose SC partner (`compare.pair_rows`) is wrong;
    `sc-right`: PaCoRe rows wrong whose SC partner is right."""
    sort: Sort | Literal[""] = ""
    """`ttc` or `disagreement`, `-` first for the largest first; "": file order."""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        """Filters from a query string; unknown values are ignored."""
        outcome = query.get("outcome", "")
        found = query.get("mark", "")
        versus = query.get("versus", "")
        order = query.get("sort", "")
        return cls(
            method=query.get("method", ""),
            outcome=outcome if outcome in ("correct", "wrong") else "",
            emergent=query.get("emergent") == "1",
            failed=query.get("failed") == "1",
            markers=query.get("markers") == "1",
            solipsism=query.get("solipsism") == "1",
            q=query.get("q", "").strip(),
            mark=next((m for m in MARKS if m == found), ""),
            versus=next((v for v in VERSUS if v == versus), ""),
            sort=next((o for o in SORTS if o == order), ""),
        )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _preview(message: str) -> str:
    """A message cut at PREVIEW_CHARS, marked when cut (the whole text loads on expand)."""
    return message if len(message) <= PREVIEW_CHARS else message[:PREVIEW_CHARS] + " …"


def _extracted(text: str | None) -> str | None:
    """The answer a run's text states, as the math grader reads it (`math_target`): the
    same reading as an evaluation's grades and votes."""
    found = math_target(text or "")
    return found.answer if found else None


# ------------------------------------------------------------------------------- loading


def load(path: Path, dataset: Path | None = None) -> ViewData:
    """An eval folder or a batch output; `ConfigError` for anything else."""
    samples = _dataset(dataset) if dataset is not None else None
    if path.is_dir():
        results = path / "results.jsonl"
        if results.is_dir():
            raise ConfigError(f"{results}: is a directory, not a results file")
        if not results.is_file():
            raise ConfigError(f"{path}: not an eval folder (no results.jsonl)")
        return load_eval(path, dataset, samples)
    if path.is_file():
        return load_run(path, load_problems(dataset) if dataset is not None else {})
    raise ConfigError(f"{path}: no such file or folder")


def _dataset(dataset: Path) -> list[Sample]:
    from pacore.eval.datasets import load_dataset

    return load_dataset(dataset)


def load_problems(dataset: Path, samples: Sequence[Sample] | None = None) -> dict[str, Problem]:
    """The questions and golds of a dataset file (any format `pacore eval` reads), or of
    its `samples` already read."""
    found = _dataset(dataset) if samples is None else samples
    return {s.id: Problem.of(s, dataset.stem) for s in found}


def eval_problems(
    folder: Path, ids: Iterable[str], dataset: Path | None = None, samples: Sequence[Sample] = ()
) -> tuple[dict[str, Problem], list[str]]:
    """The problems of an eval folder, and what to warn about them.

    The folder's stored problems are shown. A dataset's problem is shown where none is
    stored, when it matches the folder's hash of it (`fingerprint.json`, in a folder
    written before problems were stored), or when there is none. One warning names the
    ids whose dataset content differs (their stored copy, or nothing, is shown), one
    the ids of `ids` left without a question."""
    stored, warnings = _stored_problems(folder / PROBLEMS)
    problems = {pid: Problem.stored(p) for pid, p in (stored or {}).items()}
    differ: list[str] = []
    if dataset is not None:
        hashes, unchecked = _fingerprint_hashes(folder)
        warnings += unchecked
        wanted = {*ids, *problems, *hashes}
        for sample in samples:
            if sample.id not in wanted:
                continue  # the dataset's other problems: not this folder's
            kept = (stored or {}).get(sample.id)
            if kept is not None:
                same = kept.matches(sample)
            else:  # an older folder: its fingerprint's hash, when it has one
                same = sample.id not in hashes or hashes[sample.id] == problem_hash(sample)
            if not same:
                differ.append(sample.id)
            elif kept is None:
                problems[sample.id] = Problem.of(sample, dataset.stem)
        if differ:
            shown = "the folder's own copies are shown" if stored else "they are not shown"
            warnings.append(
                f"{dataset}: {len(differ)} problem(s) differ from the ones {folder} "
                f"evaluated ({_shown(differ)}): another dataset, --fields or --system?; "
                f"{shown}"
            )
    missing = sorted(set(ids) - problems.keys() - set(differ))
    if stored is None and dataset is None:
        warnings.append(
            f"{folder}: the questions and golds are not stored in this folder (an older "
            "pacore wrote it); pass --dataset, or rerun pacore eval (--report-only will "
            "do) to store them"
        )
    elif missing:
        warnings.append(
            f"{folder}: {len(missing)} problem(s) have no question to show "
            f"({_shown(missing)}); pass --dataset, or rerun pacore eval to store them"
        )
    return problems, warnings


def _stored_problems(path: Path) -> tuple[dict[str, StoredProblem] | None, list[str]]:
    """The problems `problems.jsonl` stores (None: no such file), and a warning for each
    kind of line that cannot be read."""
    if not path.is_file():
        return None, []
    found: dict[str, StoredProblem] = {}
    skipped: list[int] = []
    invalid: list[tuple[int, str]] = []
    try:
        for number, _, line in _lines(path, skipped):
            try:
                problem = StoredProblem.from_dict(line, f"{path}:{number}")
            except ValueError as exc:
                invalid.append((number, str(exc)))
                continue
            found[problem.id] = problem
    except ConfigError as exc:  # another format, or a newer one
        return {}, [f"{exc}; the questions it stores are not shown"]
    except OSError as exc:
        return {}, [f"{path}: cannot be read ({exc.strerror}); its questions are not shown"]
    return found, [
        *_skipped_warning(path, skipped),
        *_invalid_warning(path, invalid, "stored problems"),
    ]


def _fingerprint_hashes(folder: Path) -> tuple[Mapping[str, str], list[str]]:
    """The problem hashes `fingerprint.json` holds (none when it is absent), and a
    warning when it cannot be read."""
    try:
        fingerprint = read_fingerprint(folder)
    except ConfigError as exc:
        return {}, [f"{exc}; the dataset's problems are shown unchecked"]
    return (fingerprint.problems if fingerprint else {}), []


def _lines(path: Path, skipped: list[int]) -> Iterable[tuple[int, int, dict[str, Any]]]:
    """(line number, offset, record) for each JSON object line
    (`pacore.io.jsonl.scan_objects`); the numbers of the non-blank lines that are not
    one go to `skipped`."""
    for number, offset, record in scan_objects(path):
        if record is not None:
            yield number, offset, record
        else:
            skipped.append(number)


def _shown(items: Sequence[object]) -> str:
    """The first five of `items`, then "...": a warning names a few, counts them all."""
    return ", ".join(str(n) for n in items[:5]) + (", ..." if len(items) > 5 else "")


def _skipped_warning(path: Path, skipped: Sequence[int]) -> list[str]:
    if not skipped:
        return []
    return [
        f"{path}: {len(skipped)} line(s) are not records and are not shown "
        f"(line {_shown(skipped)}); a last line may be a write that was cut short"
    ]


def _invalid_warning(path: Path, invalid: Sequence[tuple[int, str]], what: str) -> list[str]:
    """One warning for the records that are JSON objects but not `what`, with the first
    one's reason."""
    if not invalid:
        return []
    first = invalid[0][1]
    return [
        f"{path}: {len(invalid)} record(s) are not {what} and are not shown "
        f"(line {_shown([n for n, _ in invalid])}; line {invalid[0][0]}: {first})"
    ]


def eval_row(index: int, record: RunRecord) -> Row:
    """The list row of one graded record."""
    final = record.extracted
    refs = [a for a in record.ref_answers if a]
    groups = group_answers(record.ref_answers, record.ref_correct)
    sizes = [g.count for g in groups] if record.ref_answers else list(record.votes)
    return Row(
        index=index,
        id=record.id,
        method=record.method,
        run=record.run,
        status=record.status,
        error=record.error,
        correct=record.correct,
        answer=final,
        ttc_tokens=record.ttc_tokens,
        rounds=len(record.round_correct) + (1 if record.ref_correct else 0),
        emergent=is_emergent(record.correct, record.ref_correct),
        markers=sum(record.marker_counts().values()),
        solipsist=bool(refs) and solipsism_rate([(final, refs)]).numerator == 1,
        family=record.family,
        mark=mark(record.correct, record.ref_answers, record.ref_correct, groups),
        disagreement=disagreement(sizes),
    )


def load_eval(
    path: Path, dataset: Path | None = None, samples: Sequence[Sample] | None = None
) -> ViewData:
    """An eval folder: each (id, method, run) once, as the report counts it; its
    problems as `eval_problems` finds them (`samples`: the dataset, already read)."""
    # Each record without its final text (its markers and length kept, the line's
    # offset to reread it on expand): memory does not grow with the syntheses' length.
    chosen: dict[tuple[str, str, str], tuple[RunRecord, int, int]] = {}
    skipped: list[int] = []
    invalid: list[tuple[int, str]] = []
    results = path / "results.jsonl"
    for number, offset, line in _lines(results, skipped):
        try:
            record = RunRecord.from_dict(line)
        except (ValueError, TypeError) as exc:
            invalid.append((number, str(exc) or type(exc).__name__))
            continue
        # The last record that did not fail, else the last one (as the report does).
        held = chosen.get(record.key)
        if not (record.failed and held is not None and not held[0].failed):
            chars = len(record.final_text or record.answer)
            chosen[record.key] = (record.without_text(), offset, chars)
    records = [r for r, _, _ in chosen.values()]
    offsets = [o for _, o, _ in chosen.values()]
    lengths = [c for _, _, c in chosen.values()]
    warnings = [
        *_skipped_warning(results, skipped),
        *_invalid_warning(results, invalid, "eval results"),
    ]
    summary, problem = _summary(path / "summary.json")
    warnings += problem
    if dataset is not None and samples is None:
        samples = _dataset(dataset)
    problems, notes = eval_problems(path, {r.id for r in records}, dataset, samples or ())
    warnings += notes
    rows = [eval_row(i, r) for i, r in enumerate(records)]
    traces = None
    if (path / TRACES).is_file():
        try:
            traces = TraceReader(path / TRACES)
            unreadable = traces.unreadable()
        except ConfigError as exc:
            if traces is not None:
                traces.close()
                traces = None
            warnings.append(f"{exc}; rounds are shown from the grades alone")
        else:
            if unreadable:
                warnings.append(
                    f"{path / TRACES}: {len(unreadable)} trace(s) cannot be read "
                    f"({_shown([' '.join(map(str, k)) for k in unreadable])}); "
                    "their rounds are shown from the grades alone"
                )
    return ViewData(
        "eval",
        path,
        rows,
        summary,
        problems,
        records,
        offsets,
        traces=traces,
        warnings=warnings,
        final_chars=lengths,
    )


def _summary(path: Path) -> tuple[dict[str, Any], list[str]]:
    """`summary.json` and a warning when it is there but cannot be read (an eval still
    running or killed has none yet: no warning)."""
    try:
        loaded = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}, []
    except OSError as exc:
        return {}, [f"{path}: cannot be read ({exc.strerror}); the summary is not shown"]
    except orjson.JSONDecodeError:
        return {}, [f"{path}: not JSON; the summary is not shown"]
    if not isinstance(loaded, dict):
        return {}, [f"{path}: not a summary (not a JSON object); the summary is not shown"]
    odd = _odd_summary(loaded)
    if odd is not None:  # a hand edit or another tool's file: shown, it was a 500
        return {}, [f"{path}: not a summary ({odd}); the summary is not shown"]
    return loaded, []


_FRACTIONS = ("accuracy", "ci_low", "ci_high")
_PAIRS = ("emergent_correctness_counts", "solipsism_counts")
MOST_TOKENS = 1e15
"""More tokens a problem than any evaluation spends: a mean TTC past it is not one."""


def _odd_summary(summary: dict[str, Any]) -> str | None:
    """What in `summary.json` the overview cannot show as pacore writes it, as a warning
    names it; None when every method's figures are of their kind."""
    methods = summary.get("methods", {})
    if not isinstance(methods, dict):
        return "its methods are not an object"
    for name, m in methods.items():
        if not isinstance(m, dict):
            return f"method {name!r} is not an object"
        for key in _FRACTIONS:
            value = m.get(key)
            if value is not None and not (_number(value) and 0 <= value <= 1):
                return f"method {name!r}: {key} is not a fraction"
        if (m.get("ci_low") is None) != (m.get("ci_high") is None):
            return f"method {name!r}: one end of its interval only"
        ttc = m.get("mean_ttc_tokens")
        if ttc is not None and not (_number(ttc) and 0 <= ttc <= MOST_TOKENS):
            return f"method {name!r}: mean_ttc_tokens is not a count of tokens"
        for key in _PAIRS:
            pair = m.get(key)
            if pair and not (isinstance(pair, list) and len(pair) == 2 and all(map(_whole, pair))):
                return f"method {name!r}: {key} is not two counts"
        failures = m.get("failures")
        if failures is not None and not _whole(failures):
            return f"method {name!r}: failures is not a count"
    return None


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _whole(value: Any) -> bool:
    return type(value) is int and value >= 0


def load_run(path: Path, problems: Mapping[str, Problem]) -> ViewData:
    """A `pacore run` batch output: one row per line, its texts left on disk."""
    rows: list[Row] = []
    offsets: list[int] = []
    skipped: list[int] = []
    invalid: list[tuple[int, str]] = []
    for number, offset, line in _lines(path, skipped):
        if "id" not in line or not isinstance(line.get("rounds"), list):
            invalid.append((number, "no id" if "id" not in line else "no list of rounds"))
            continue
        odd = _odd_run_field(line)
        if odd is not None:
            invalid.append((number, odd))
            continue
        rows.append(
            Row(
                index=len(rows),
                id=str(line["id"]),
                method="run",
                run=0,
                status=line.get("status") or "",
                error=line.get("error"),
                correct=None,
                answer=_extracted(line.get("answer")),
                ttc_tokens=count_field(line.get("ttc_tokens"), "ttc_tokens"),
                rounds=len(line["rounds"]),
            )
        )
        offsets.append(offset)
    if not rows:
        raise ConfigError(f"{path}: not a pacore run output (no line with id and rounds)")
    warnings = [*_skipped_warning(path, skipped), *_invalid_warning(path, invalid, "run results")]
    return ViewData("run", path, rows, {}, problems, (), offsets, warnings=warnings)


def _odd_run_field(line: dict[str, Any]) -> str | None:
    """What in a run output's line is of another type than pacore writes (a hand edit,
    another tool), as the warning says it; None when the line is fine."""
    if type(line["id"]) not in (str, int):
        return "an id that is not a text"
    for name in ("status", "error", "answer"):
        if line.get(name) is not None and type(line[name]) is not str:
            return f"{name} is not a text"
    try:
        count_field(line.get("ttc_tokens"), "ttc_tokens")
    except ValueError:
        return "ttc_tokens is not a count"
    return None


def run_record(data: ViewData, index: int) -> dict[str, Any]:
    """The whole line of batch row `index`, reread from the file it came from ({} when
    the file changed since it was loaded and that line is another problem's now)."""
    line = _line_at(data.path, data.offsets[index])
    return line if str(line.get("id")) == data.rows[index].id else {}


def _line_at(path: Path, offset: int) -> dict[str, Any]:
    """The JSON object of the line at `offset` of `path` ({} when there is none now)."""
    try:
        with path.open("rb") as fh:
            record = loads_lenient(line_at(fh, offset))
    except (OSError, ValueError):  # the file changed since it was loaded
        return {}
    return record if isinstance(record, dict) else {}


# ------------------------------------------------------------------------------- the list


def matches(row: Row, filters: Filters, question: str, partner: Row | None = None) -> bool:
    """Whether `row` passes every filter (`partner`: its SC partner, for `versus`)."""
    checks = (
        not filters.method or row.method == filters.method,
        filters.outcome != "correct" or row.correct is True,
        filters.outcome != "wrong" or row.correct is False,
        not filters.emergent or row.emergent,
        not filters.failed or row.failed,
        not filters.markers or row.markers > 0,
        not filters.solipsism or row.solipsist,
        not filters.mark or row.mark == filters.mark,
        not filters.versus or _versus(row, partner, filters.versus),
    )
    if not all(checks):
        return False
    needle = filters.q.lower()
    return not needle or needle in question.lower() or needle in row.id.lower()


def _versus(row: Row, partner: Row | None, versus: Versus) -> bool:
    if partner is None:
        return False
    right, wrong = (row, partner) if versus == "pacore-right" else (partner, row)
    return right.correct is True and wrong.correct is False


def filter_rows(
    data: ViewData, filters: Filters, pairs: Mapping[int, int] | None = None
) -> list[Row]:
    """The rows passing `filters`, in file order or as `filters.sort` says (rows without
    the value last). `pairs` maps a PaCoRe row's index to its SC partner's
    (`compare.pair_rows`); without it no row passes `versus`."""
    pairs = pairs or {}
    rows = data.rows
    found = [
        r
        for r in rows
        if matches(
            r,
            filters,
            data.question(r.id),
            rows[pairs[r.index]] if r.index in pairs else None,
        )
    ]
    if not filters.sort:
        return found
    name = filters.sort.lstrip("-")
    valued = [(v, r) for r in found if (v := _sort_value(r, name)) is not None]
    valued.sort(key=lambda pair: pair[0], reverse=filters.sort.startswith("-"))  # stable
    return [r for _, r in valued] + [r for r in found if _sort_value(r, name) is None]


def _sort_value(row: Row, name: str) -> float | None:
    return float(row.ttc_tokens) if name == "ttc" else row.disagreement


@dataclass(frozen=True)
class Page:
    """One page of a filtered list."""

    rows: list[Row]
    number: int
    pages: int
    total: int


def page(rows: Sequence[Row], number: int, size: int = PAGE_SIZE) -> Page:
    """Page `number` (from 1, clamped) of `rows`."""
    pages = max(1, math.ceil(len(rows) / size))
    number = min(max(1, number), pages)
    start = (number - 1) * size
    return Page(list(rows[start : start + size]), number, pages, len(rows))


@dataclass(frozen=True)
class Counts:
    """The overview's analysis counts, each linking to its filtered list."""

    emergent: int
    markers: int
    solipsism: int
    failed: int


def counts(rows: Iterable[Row]) -> Counts:
    """How many rows are emergent, cross-check, solipsist and failed."""
    e = m = s = f = 0
    for r in rows:
        e += r.emergent
        m += r.markers > 0
        s += r.solipsist
        f += r.failed
    return Counts(e, m, s, f)


def mark_counts(rows: Iterable[Row]) -> dict[str, dict[Mark, int]]:
    """For each method with a marked row, how many of its rows have each mark."""
    found: dict[str, dict[Mark, int]] = {}
    for r in rows:
        if r.mark is not None:
            per = found.setdefault(r.method, dict.fromkeys(MARKS, 0))
            per[r.mark] += 1
    return found


# ---------------------------------------------------------------------------- one problem


@dataclass(frozen=True)
class Card:
    """One trajectory of a round."""

    index: int
    status: str
    tokens: int | None
    answer: str | None
    correct: bool | None
    preview: str
    """The compacted message, cut at PREVIEW_CHARS."""
    length: int
    """The full text's length, in characters (0: no text kept)."""
    note: str = ""
    """An error, or that a resample replaced it."""
    position: int = 0
    """Its place in the round (the key of its text)."""
    sample: str | None = None
    """Its sample key in the store: two runs that drew the same pool sample share it."""
    mark: Mark | None = None
    """A synthesis: what it did with its references (`answers.mark`)."""


@dataclass(frozen=True)
class RoundView:
    """One round: its cards and its answers grouped and counted."""

    number: int
    title: str
    cards: list[Card]
    groups: list[AnswerGroup]
    references: int = 0
    """How many messages its prompt carried (0: none, or not known)."""
    width: int = 0
    """Its final slots (the cards after them are replaced attempts); 0: every card."""
    has_prompt: bool = False
    """Whether its synthesis prompt can be shown (`prompt_messages`)."""

    @property
    def slots(self) -> list[Card]:
        """The cards whose messages counted (replaced attempts left out)."""
        return self.cards[: self.width] if self.width else self.cards


@dataclass(frozen=True)
class RunView:
    """One method × run of a problem, as the problem page shows it."""

    row: Row
    rounds: list[RoundView]
    final: str | None
    final_correct: bool | None
    verdict: Verdict
    final_length: int
    mark: Mark | None = None
    """What the final synthesis did with its references (`answers.mark`)."""


def _round(
    number: int, title: str, cards: list[Card], references: int = 0, width: int = 0
) -> RoundView:
    slots = cards[:width] if width else cards
    groups = group_answers([c.answer for c in slots], [c.correct for c in slots])
    return RoundView(number, title, cards, groups, references, width, references > 0)


def _trace_card(position: int, card: CardTrace, width: int) -> Card:
    note = card.error or ""
    if position >= width:
        note = f"attempt {card.attempt}, replaced by a resample" + (f": {note}" if note else "")
    return Card(
        index=card.index,
        status=card.status,
        tokens=card.tokens,
        answer=card.answer,
        correct=card.correct,
        preview=_preview(card.message),
        length=card.chars if card.sample is not None else 0,
        note=note,
        position=position,
        sample=card.sample,
    )


def _round_title(number: int, total: int, width: int, references: int) -> str:
    if number == total and width == 1 and references:
        return f"round {number}: the final synthesis of {references} messages"
    seen = f", each saw {references} messages" if references else ""
    return f"round {number}: {width} trajectories{seen}"


def trace_rounds(trace: Trace, reader: TraceReader | None = None) -> list[RoundView]:
    """The rounds of a traced run, every trajectory a card; a message kept only as the
    whole text (`nomp`) is read from the store through `reader`."""
    total = len(trace.rounds)
    return [
        _round(
            rnd.round,
            _round_title(rnd.round, total, rnd.width, rnd.references),
            [
                _trace_card(i, _with_message(trace, rnd.round, i, c, reader), rnd.width)
                for i, c in enumerate(rnd.cards)
            ],
            rnd.references,
            rnd.width,
        )
        for rnd in trace.rounds
    ]


def _with_message(
    trace: Trace, number: int, i: int, card: CardTrace, reader: TraceReader | None
) -> CardTrace:
    if not card.whole or reader is None:
        return card
    key = trace.key(number, i)
    text = reader.text(key) if key else None
    return replace(card, message=text or "")


def _trace(data: ViewData, row: Row) -> Trace | None:
    return data.traces.trace(row.id, row.method, row.run) if data.traces else None


def eval_view(data: ViewData, row: Row) -> RunView:
    """A graded record: every round from its trace (each round's grades alone for a
    folder without traces), the final answer and its verdict."""
    record = data.records[row.index]
    trace = _trace(data, row)
    if trace is not None and trace.rounds:
        return RunView(
            row,
            _with_marks(trace_rounds(trace, data.traces), record),
            record.extracted,
            record.correct,
            verdict(record.extracted, record.correct, record.ref_answers, record.ref_correct),
            _final_chars(data, row.index),
            row.mark,
        )
    rounds = []
    for n, grades in enumerate(record.round_correct, 1):
        cards = [Card(i, "", None, None, c, "", 0) for i, c in enumerate(grades)]
        rounds.append(RoundView(n, f"round {n}", cards, []))
    if record.ref_answers or record.ref_correct:
        answers = list(record.ref_answers) or [None] * len(record.ref_correct)
        ref_grades = list(record.ref_correct) or [None] * len(answers)
        cards = [
            Card(i, "", None, a, c, a or "", 0)
            for i, (a, c) in enumerate(zip(answers, ref_grades, strict=False))
        ]
        rounds.append(_round(len(rounds), "the references the final synthesis saw", cards))
    return RunView(
        row,
        rounds,
        record.extracted,
        record.correct,
        verdict(record.extracted, record.correct, record.ref_answers, record.ref_correct),
        _final_chars(data, row.index),
        row.mark,
    )


def _final_chars(data: ViewData, index: int) -> int:
    """The length of an eval record's final text (its answer's, when it has none)."""
    if index < len(data.final_chars):
        return data.final_chars[index]
    record = data.records[index]
    return len(record.final_text or record.answer)


def _final_text(data: ViewData, index: int) -> str | None:
    """An eval record's final text, reread from its line (None when the file changed
    since it was loaded and that line is another record's now)."""
    record = data.records[index]
    if record.final_text is not None or index >= len(data.offsets):
        return record.final_text or record.answer
    line = _line_at(data.path / "results.jsonl", data.offsets[index])
    try:
        again = RunRecord.from_dict(line)
    except (ValueError, TypeError):
        return None
    if again.key != record.key:
        return None
    return again.final_text or again.answer


def _with_marks(rounds: list[RoundView], record: RunRecord) -> list[RoundView]:
    """Each synthesis's card marked (`answers.mark`). The last round's references are
    the record's; an earlier round's are the previous round's final slots (a slot with
    neither answer nor grade, a failed request, was passed on to no one)."""
    marked: list[RoundView] = []
    for i, rnd in enumerate(rounds):
        if i == 0 or not rnd.references:
            marked.append(rnd)
            continue
        if i == len(rounds) - 1 and (record.ref_answers or record.ref_correct):
            answers, grades = list(record.ref_answers), list(record.ref_correct)
        else:
            refs = [c for c in rounds[i - 1].slots if c.answer or c.correct is not None]
            answers, grades = [c.answer for c in refs], [c.correct for c in refs]
        slots = len(rnd.slots)
        cards = [
            replace(c, mark=mark(c.correct, answers, grades)) if c.position < slots else c
            for c in rnd.cards
        ]
        marked.append(replace(rnd, cards=cards))
    return marked


def _card(position: int, trajectory: Mapping[str, Any]) -> Card:
    message = str(trajectory.get("message") or "")
    usage = trajectory.get("usage") if isinstance(trajectory.get("usage"), dict) else {}
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return Card(
        index=index if isinstance(index := trajectory.get("index"), int) else position,
        status=str(trajectory.get("status") or ""),
        tokens=tokens if isinstance(tokens, int) else None,
        answer=_extracted(message),
        correct=None,
        preview=_preview(message),
        length=len(str(trajectory.get("text") or message)),
        note=str(trajectory.get("error") or ""),
        position=position,
    )


def run_view(data: ViewData, row: Row) -> RunView:
    """A batch result: every round's trajectories as cards (not graded)."""
    record = run_record(data, row.index)
    widths = _list(record.get("widths"))
    prompts = _list(record.get("prompts"))
    rounds: list[RoundView] = []
    for n, trajectories in enumerate(_list(record.get("rounds")), 1):
        cards = [_card(i, t) for i, t in enumerate(_list(trajectories)) if isinstance(t, dict)]
        width = widths[n - 1] if n <= len(widths) and isinstance(widths[n - 1], int) else 0
        view = _round(n, f"round {n}", cards, width=width)
        rounds.append(replace(view, has_prompt=n > 1 and n <= len(prompts)))
    refs = [c.answer for c in rounds[-2].slots] if len(rounds) > 1 else []
    return RunView(row, rounds, row.answer, None, verdict(row.answer, None, refs), 0)


def problem_runs(data: ViewData, problem_id: str) -> list[RunView]:
    """Every method × run of one problem (empty when the id is unknown)."""
    build = eval_view if data.kind == "eval" else run_view
    return [build(data, r) for r in data.rows if r.id == problem_id]


def full_text(data: ViewData, index: int, round_number: int = 0, card: int = 0) -> str | None:
    """A text loaded on expand: an eval record's final text (round 0), a trajectory's
    whole text (from the store for an eval folder, from the line for a batch output);
    None when there is no such text."""
    if not 0 <= index < len(data.rows):
        return None
    if data.kind == "eval":
        if round_number == 0:
            return _final_text(data, index)
        trace = _trace(data, data.rows[index])
        key = trace.key(round_number, card) if trace else None
        return data.traces.text(key) if data.traces and key else None
    rounds = _list(run_record(data, index).get("rounds"))
    if not 1 <= round_number <= len(rounds):
        return None
    trajectories = _list(rounds[round_number - 1])
    trajectory = trajectories[card] if 0 <= card < len(trajectories) else None
    if not isinstance(trajectory, dict):
        return None
    return str(trajectory.get("text") or trajectory.get("message") or "")


def prompt_messages(data: ViewData, index: int, round_number: int) -> list[Message] | None:
    """The chat messages round `round_number` of row `index` was sent, or None."""
    if not 0 <= index < len(data.rows) or round_number < 1:
        return None
    if data.kind == "eval":
        trace = _trace(data, data.rows[index])
        if data.traces is None or trace is None or round_number > len(trace.rounds):
            return None
        return data.traces.prompt(trace.rounds[round_number - 1].prompt)
    prompts = run_record(data, index).get("prompts")
    if not isinstance(prompts, list) or round_number > len(prompts):
        return None
    found = prompts[round_number - 1]
    return [m for m in found if isinstance(m, dict)] if isinstance(found, list) else None


def prompt_text(messages: Sequence[Message]) -> str:
    """Chat messages as plain text: each under its role."""
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):  # content parts: their text
            content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
        parts.append(f"[{m.get('role') or '?'}]\n{content or ''}")
    return "\n\n".join(parts)
