"""`pacore view`: a read-only local web app for what the synthesis did, round by round.

    answers.py   pure functions: answers grouped and counted, the majority, emergent cases
    data.py      an eval folder or a `pacore run` batch output, loaded into plain rows
    app.py       create_app: the Starlette app (Jinja2 pages, local static files)

The app opens only what it was pointed at, once, at start-up (the batch output is reread
by offset for one problem's page); no request names a file.
"""

INSTALL_VIEW = "pip install 'pacore[view]'"
"""What a missing jinja2/starlette/uvicorn calls for."""
