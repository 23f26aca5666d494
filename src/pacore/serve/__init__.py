"""`pacore serve`: PaCoRe behind an OpenAI-compatible HTTP API.

    app.py          create_app: the Starlette application, its routes and lifespan
    models.py       the request body (pydantic, at the boundary only) and model routing
    errors.py       ApiError: OpenAI's error shape and the statuses pacore answers with
    limits.py       bearer keys, the body-size cap, admission (per key, global queue)
    completions.py  a PaCoRe chat completion: n engines, whole or streamed
    stream.py       SSE framing, progress as reasoning, <think> splitting, disconnects
    passthrough.py  plain upstream models, proxied byte for byte; /models and /health
    metrics.py      the Prometheus registry of one app

Nothing is kept between requests and nothing lives at module level: every app from
`create_app` has its own backend, upstream session, limits and metrics.
"""

from __future__ import annotations

INSTALL_SERVE = "pip install 'pacore[serve]'"
