"""`create_app`: the Starlette application of `pacore view` (read-only, no module state).

    GET /                      overview: summary table, scaling plot, analysis counts
    GET /problems              the problem list: filters and pages in the query string
    GET /problem/{id}          one problem: a summary per method, every method × run's rounds
    GET /compare/{id}?a=&b=&run=   two methods' runs of one problem side by side
    GET /text/{row}            a final text (eval); /text/{row}/{round}/{card} a trajectory's
    GET /prompt/{row}/{round}  the prompt a round was sent (its synthesis prompt)
    GET /static/{name}         the page's CSS and JavaScript, from the package

Everything is loaded by the caller before the app exists; a request only looks up
rows by index or id, so no URL can name a file. An unknown id, method or run is a 404
page saying which; a value that is not a number a 400.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from pacore.view import data as view_data
from pacore.view.answers import MARK_LABELS, MARK_MEANINGS, MARKS, said
from pacore.view.compare import compare, method_summaries, pair_rows, partner_methods
from pacore.view.plot import marker_path, scaling_plot

T = TypeVar("T")
_STATIC = {"view.css": "text/css", "view.js": "text/javascript"}


def _int(value: str | None, default: int = 1) -> int:
    try:
        return int(value or default)
    except ValueError:
        return default


def create_app(loaded: view_data.ViewData) -> Starlette:
    """The app over already-loaded data."""
    env = Environment(
        loader=PackageLoader("pacore.view", "templates"), autoescape=select_autoescape()
    )
    # A problem id in a link's path is one segment: its "/" encoded too (an id such as
    # `p/../2` linked to /problem/p/../2, which a browser resolves to /problem/2).
    env.filters["segment"] = lambda value: quote(str(value), safe="")
    env.globals.update(
        kind=loaded.kind,
        source=str(loaded.path),
        said=said,
        marks=MARKS,
        mark_labels=MARK_LABELS,
        mark_meanings=MARK_MEANINGS,
        marker_path=marker_path,
    )
    rows = loaded.rows
    pairs = pair_rows(rows)
    partners = partner_methods(rows, pairs)
    partner_rows = {pacore: rows[sc] for pacore, sc in pairs.items()}
    static = _static_files()

    def render(name: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context))

    async def overview(request: Request) -> Response:
        return render(
            "overview.html",
            methods=_summary_methods(loaded.summary),
            plot=scaling_plot(loaded.summary),
            counts=view_data.counts(loaded.rows),
            mark_counts=view_data.mark_counts(loaded.rows),
            total=len(loaded.rows),
            warnings=loaded.warnings,
        )

    async def problems(request: Request) -> Response:
        query = dict(request.query_params)
        filters = view_data.Filters.from_query(query)
        found = view_data.filter_rows(loaded, filters, pairs)
        current = view_data.page(found, _int(query.get("page")))
        base = {k: v for k, v in query.items() if k != "page" and v}
        return render(
            "problems.html",
            page=current,
            filters=filters,
            methods=loaded.methods,
            query=base,
            question=loaded.question,
            gold=lambda problem_id: getattr(loaded.problems.get(problem_id), "gold", None) or "",
            partner=lambda row: partner_rows.get(row.index),
            versus=view_data.VERSUS,
            sorts=view_data.SORTS,
        )

    async def problem(request: Request) -> Response:
        problem_id = request.path_params["id"]
        runs = view_data.problem_runs(loaded, problem_id)
        if not runs:
            raise HTTPException(404, f"no problem {problem_id!r} in {loaded.path}")
        return render(
            "problem.html",
            id=problem_id,
            runs=runs,
            problem=loaded.problems.get(problem_id),
            summaries=method_summaries(runs),
            partners=partners,
        )

    async def compared(request: Request) -> Response:
        context = _comparison(loaded, partners, request.path_params["id"], request.query_params)
        return render("compare.html", **context)

    async def text(request: Request) -> Response:
        p = request.path_params
        found = view_data.full_text(loaded, p["row"], p.get("round", 0), p.get("card", 0))
        return PlainTextResponse(_found(found, "no such text"))

    async def prompt(request: Request) -> Response:
        p = request.path_params
        messages = view_data.prompt_messages(loaded, p["row"], p["round"])
        return PlainTextResponse(view_data.prompt_text(_found(messages, "no such prompt")))

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static:
            raise HTTPException(404, "no such file")
        return Response(static[name], media_type=_STATIC[name])

    return Starlette(
        routes=[
            Route("/", overview),
            Route("/problems", problems),
            _any_id(Route("/problem/{id:path}", problem)),
            _any_id(Route("/compare/{id:path}", compared)),
            Route("/text/{row:int}", text),
            Route("/text/{row:int}/{round:int}/{card:int}", text),
            Route("/prompt/{row:int}/{round:int}", prompt),
            Route("/static/{name}", static_file),
        ],
        exception_handlers={HTTPException: _error_page(render)},
    )


def _found(value: T | None, message: str) -> T:
    """`value`, or a 404 saying `message` when it is None."""
    if value is None:
        raise HTTPException(404, message)
    return value


def _static_files() -> dict[str, bytes]:
    """The page's CSS and JavaScript, read from the package once."""
    files = resources.files("pacore.view").joinpath("static")
    return {name: files.joinpath(name).read_bytes() for name in _STATIC}


def _summary_methods(summary: Mapping[str, Any]) -> Mapping[str, Any]:
    """`summary.json`'s methods ({} when it has none)."""
    methods = summary.get("methods")
    return methods if isinstance(methods, dict) else {}


def _error_page(
    render: Callable[..., HTMLResponse],
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The handler that turns an HTTPException into a page saying what was not found."""

    async def error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        response = render("error.html", status=status, detail=detail)
        response.status_code = status
        return response

    return error


def _comparison(
    loaded: view_data.ViewData,
    partners: Mapping[str, str],
    problem_id: str,
    query: Mapping[str, str],
) -> dict[str, Any]:
    """The compare page's context; HTTPException for an unknown id, method or run."""
    mine = [r for r in loaded.rows if r.id == problem_id]
    if not mine:
        raise HTTPException(404, f"no problem {problem_id!r} in {loaded.path}")
    methods = list(dict.fromkeys(r.method for r in mine))
    a, b = _pick(query, methods, partners)
    for method in (a, b):
        if method not in methods:
            raise HTTPException(
                404,
                f"no method {method!r} for problem {problem_id!r} "
                f"(its methods: {', '.join(methods)})",
            )
    run_text = query.get("run") or ""
    try:
        run = int(run_text) if run_text else min(r.run for r in mine if r.method == a)
    except ValueError:
        raise HTTPException(400, f"run {run_text!r} is not a number") from None
    found = {r.method: r for r in mine if r.run == run and r.method in (a, b)}
    for method in (a, b):
        if method not in found:
            runs = sorted({r.run for r in mine if r.method == method})
            raise HTTPException(
                404,
                f"no run {run} of {method} for problem {problem_id!r} "
                f"(its runs: {', '.join(map(str, runs))})",
            )
    build = view_data.eval_view if loaded.kind == "eval" else view_data.run_view
    return {
        "id": problem_id,
        "comparison": compare(build(loaded, found[a]), build(loaded, found[b])),
        "methods": methods,
        "runs": sorted({r.run for r in mine}),
        "problem": loaded.problems.get(problem_id),
    }


def _pick(
    query: Mapping[str, str], methods: Sequence[str], partners: Mapping[str, str]
) -> tuple[str, str]:
    """The two methods a compare page shows: `a` and `b` as asked; by default the first
    PaCoRe method with an SC partner and that partner, else the first two methods."""
    a = query.get("a") or next((m for m in methods if m in partners), methods[0])
    partner = partners.get(a)
    if partner is None or partner not in methods:
        partner = next((m for m in methods if m != a), a)
    return a, query.get("b") or partner


def _any_id(route: Route) -> Route:
    """`route` with its `path` parameter matching newlines too: Starlette's stops at one,
    so a problem id holding a newline (`a\\nb`, linked as `a%0Ab`) had no page. The
    route's own pattern, made to match across lines (no global convertor registered)."""
    route.path_regex = re.compile(route.path_regex.pattern, re.DOTALL)
    return route
