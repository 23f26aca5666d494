"""The edge's pure parts: which Host and Origin headers pass, which keys and hosts start."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest

from pacore.config import EdgeConfig
from pacore.errors import ConfigError
from pacore.http_edge import Guard, is_loopback, json_routes
from pacore.serve.limits import keys_from


async def _status(
    guard: Guard, headers: dict[str, str], method: str = "GET", path: str = "/"
) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "method": method,
        "scheme": "http",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await guard(scope, receive, send)
    return int(sent[0]["status"])


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize(
    ("bound", "allow", "host", "status"),
    [
        ("127.0.0.1", (), "127.0.0.1:8000", 200),
        ("127.0.0.1", (), "LOCALHOST:8000", 200),
        ("127.0.0.1", (), "localhost.:8000", 200),
        ("127.0.0.1", (), "[::1]:8000", 200),
        ("127.0.0.1", (), "localhost:8001", 421),
        ("127.0.0.1", (), "localhost", 421),  # port 80
        ("127.0.0.1", (), "attacker.example:8000", 421),
        ("127.0.0.1", (), "127.0.0.1:8000@evil", 421),
        ("192.168.1.5", (), "192.168.1.5:8000", 200),  # the address it was bound to
        ("0.0.0.0", (), "192.168.1.5:8000", 421),  # every interface: name them
        ("0.0.0.0", ("api.example.com",), "api.example.com", 200),
        ("0.0.0.0", ("api.example.com",), "API.example.com:443", 200),
        ("0.0.0.0", ("api.example.com:443",), "api.example.com", 421),
        ("0.0.0.0", ("*",), "anything.example", 200),
        ("::1", (), "[::1]:8000", 200),
    ],
)
def test_host_names(bound: str, allow: tuple[str, ...], host: str, status: int) -> None:
    guard = Guard(_ok, bound=bound, port=8000, config=EdgeConfig(allow_host=allow))
    assert asyncio.run(_status(guard, {"Host": host})) == status


@pytest.mark.parametrize(
    ("allow", "origin", "status"),
    [
        ((), "http://127.0.0.1:8000", 200),  # the server's own pages
        ((), "http://localhost:8001", 403),
        ((), "https://evil.example", 403),
        ((), "null", 403),
        (("https://app.example.com",), "https://app.example.com", 200),
        (("https://app.example.com/",), "HTTPS://APP.EXAMPLE.COM", 200),
        (("https://app.example.com",), "http://app.example.com", 403),
    ],
)
def test_origins(allow: tuple[str, ...], origin: str, status: int) -> None:
    guard = Guard(_ok, bound="127.0.0.1", port=8000, config=EdgeConfig(allow_origin=allow))
    headers = {"Host": "127.0.0.1:8000", "Origin": origin}
    assert asyncio.run(_status(guard, headers)) == status


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("Application/JSON; charset=utf-8", 200),
        ("text/plain", 415),
        ("multipart/form-data; boundary=x", 415),
        ("application/jsonp", 415),
        (None, 415),
    ],
)
def test_json_bodies(content_type: str | None, status: int) -> None:
    bodies = {("POST", "/v1/chat/completions")}
    guard = Guard(_ok, bound="127.0.0.1", port=8000, config=EdgeConfig(), json_bodies=bodies)
    headers = {"Host": "127.0.0.1:8000"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    assert asyncio.run(_status(guard, headers, "POST", "/v1/chat/completions")) == status
    # Only the routes that take a body are asked for JSON: the rest is the app's to
    # answer (its 404 for an unknown path, its 405 for a method a route does not take).
    for method, path in [("GET", "/v1/chat/completions"), ("POST", "/v1/completions"),
                         ("DELETE", "/v1/models"), ("PUT", "/v1/chat/completions")]:  # fmt: skip
        assert asyncio.run(_status(guard, headers, method, path)) == 200, (method, path)


def test_json_routes_are_the_write_methods_of_the_app() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route

    async def endpoint(request: Any) -> Any:
        raise AssertionError("not called")

    app = Starlette(
        routes=[
            Route("/a", endpoint, methods=["POST"]),
            Route("/b", endpoint, methods=["GET"]),
            Route("/c", endpoint, methods=["PUT", "GET", "DELETE"]),
        ]
    )
    assert json_routes(app) == {("POST", "/a"), ("PUT", "/c"), ("DELETE", "/c")}


def test_keys_fail_closed() -> None:
    assert keys_from(["a"], {"PACORE_SERVE_API_KEYS": "b, ,c,"}) == ("a", "b", "c")
    for flags, environ in [([""], {}), (["  "], {}), ([], {"PACORE_SERVE_API_KEYS": " , "})]:
        with pytest.raises(ConfigError):
            keys_from(flags, environ)
    with pytest.raises(ConfigError):
        keys_from([], {"PACORE_SERVE_API_KEYS": ""})


def test_loopback_hosts() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com", "localhost.example.com"):
        assert not is_loopback(host), host


@pytest.mark.parametrize("command", ["serve", "view"])
def test_every_edge_setting_is_an_option_of_both_servers(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    from pacore.cli import build_parser
    from pacore.cli.options import flag_of

    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(EdgeConfig):
        assert flag_of(EdgeConfig, f.name) in help_text, f.name
    assert ("--insecure-no-auth" in help_text) == (command == "serve")


def test_running_out_of_descriptors_is_one_line_per_burst(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import errno
    import logging

    from pacore.http_edge import BurstLog, _quiet_accept_errors

    logger = logging.getLogger("test.edge")
    loop = asyncio.new_event_loop()
    try:
        handle = _quiet_accept_errors(loop, BurstLog(logger, "out of files"))
        with caplog.at_level(logging.WARNING, logger="test.edge"):
            for _ in range(1000):  # what asyncio reports for each failed accept()
                handle(loop, {"message": "accept", "exception": OSError(errno.EMFILE, "x")})
        assert [r.getMessage() for r in caplog.records] == ["out of files"]
    finally:
        loop.close()


def test_the_url_said_for_every_interface_is_one_the_server_answers() -> None:
    """Bound to every interface, the server said `http://0.0.0.0:PORT/`, whose Host the
    server itself refuses (421). It says the loopback address, which it answers."""
    import socket
    import urllib.parse

    from pacore.http_edge import url_of

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        url = url_of(sock)
        port = sock.getsockname()[1]
    host = urllib.parse.urlsplit(url).netloc
    assert host == f"127.0.0.1:{port}"
    guard = Guard(_ok, bound="0.0.0.0", port=port, config=EdgeConfig())
    assert asyncio.run(_status(guard, {"Host": host})) == 200
