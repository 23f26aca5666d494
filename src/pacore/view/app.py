"""`create_app`: the Starlette application of `pacore view` (read-only, no module state).

    GET /                      overview: summary table, scaling plot, analysis counts
    GET /problems              the problem list: filters and pages in the query string
    GET /problem/{id}          one problem: every method × run, rounds side by side
    GET /text/{row}            a final text (eval); /text/{row}/{round}/{card} a trajectory's
    GET /prompt/{row}/{round}  the prompt a round was sent (its synthesis prompt)
    GET /static/{name}         the page's CSS and JavaScript, from the package

Everything is loaded by the caller before the app exists; a request only looks up
rows by index or id, so no URL can name a file.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from pacore.view import data as view_data
from pacore.view.answers import said

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
    env.globals.update(kind=loaded.kind, source=str(loaded.path), said=said)
    static = {
        name: resources.files("pacore.view").joinpath("static", name).read_bytes()
        for name in _STATIC
    }

    def render(name: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context))

    async def overview(request: Request) -> Response:
        methods = loaded.summary.get("methods")
        return render(
            "overview.html",
            methods=methods if isinstance(methods, dict) else {},
            series=view_data.scaling_series(loaded.summary),
            counts=view_data.counts(loaded.rows),
            total=len(loaded.rows),
            warnings=loaded.warnings,
        )

    async def problems(request: Request) -> Response:
        query = dict(request.query_params)
        filters = view_data.Filters.from_query(query)
        rows = view_data.filter_rows(loaded, filters)
        current = view_data.page(rows, _int(query.get("page")))
        base = {k: v for k, v in query.items() if k != "page" and v}
        return render(
            "problems.html",
            page=current,
            filters=filters,
            methods=loaded.methods,
            query=base,
            question=loaded.question,
            gold=lambda problem_id: getattr(loaded.problems.get(problem_id), "gold", None) or "",
        )

    async def problem(request: Request) -> Response:
        problem_id = request.path_params["id"]
        runs = view_data.problem_runs(loaded, problem_id)
        if not runs:
            raise HTTPException(404, f"no problem {problem_id!r}")
        return render(
            "problem.html", id=problem_id, runs=runs, problem=loaded.problems.get(problem_id)
        )

    async def text(request: Request) -> Response:
        p = request.path_params
        found = view_data.full_text(loaded, p["row"], p.get("round", 0), p.get("card", 0))
        if found is None:
            raise HTTPException(404, "no such text")
        return PlainTextResponse(found)

    async def prompt(request: Request) -> Response:
        p = request.path_params
        messages = view_data.prompt_messages(loaded, p["row"], p["round"])
        if messages is None:
            raise HTTPException(404, "no such prompt")
        return PlainTextResponse(view_data.prompt_text(messages))

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static:
            raise HTTPException(404, "no such file")
        return Response(static[name], media_type=_STATIC[name])

    return Starlette(
        routes=[
            Route("/", overview),
            Route("/problems", problems),
            Route("/problem/{id:path}", problem),
            Route("/text/{row:int}", text),
            Route("/text/{row:int}/{round:int}/{card:int}", text),
            Route("/prompt/{row:int}/{round:int}", prompt),
            Route("/static/{name}", static_file),
        ]
    )
