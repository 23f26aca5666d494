"""aiohttp imported through `pacore.backends.openai_compat.tls`: the CA certificates load
only when a URL needs TLS (or a redirect might), and then exactly as aiohttp would have.

Each case runs in a fresh interpreter: the test process has imported aiohttp already.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = """
import asyncio, json, ssl, sys
from pacore.backends.openai_compat import OpenAIBackend
from pacore.backends.openai_compat import tls
import aiohttp.connector as connector

def stats():
    return {
        "verified": connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"],
        "unverified": connector._SSL_CONTEXT_UNVERIFIED.cert_store_stats()["x509_ca"],
        "system": ssl.create_default_context().cert_store_stats()["x509_ca"],
        "deferred": tls.certificates_deferred(),
    }
"""


def run(code: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def system_has_cas() -> bool:
    import ssl

    return ssl.create_default_context().cert_store_stats()["x509_ca"] > 0


needs_cas = pytest.mark.skipif(not system_has_cas(), reason="no system CA bundle to load")


@needs_cas
def test_plain_http_never_loads_the_bundle_and_still_answers() -> None:
    out = run(
        """
from tests.fake_server import FakeServer, FakeConfig
from pacore.types import SamplingParams

async def main():
    before = stats()
    async with FakeServer(FakeConfig()) as server:
        async with OpenAIBackend(server.url, model="fake-model") as backend:
            done = await backend.complete([{"role": "user", "content": "hi"}], 2, SamplingParams())
    return {"before": before, "after": stats(), "answers": len(done)}

print(json.dumps(asyncio.run(main())))
"""
    )
    assert out["before"] == {
        "verified": 0,
        "unverified": 0,
        "system": out["before"]["system"],  # type: ignore[index]
        "deferred": True,
    }
    assert out["after"]["deferred"] is True  # type: ignore[index]
    assert out["after"]["verified"] == 0  # type: ignore[index]
    assert out["answers"] == 2


@needs_cas
def test_an_https_endpoint_loads_what_aiohttp_would_have() -> None:
    out = run(
        """
async def main():
    backend = OpenAIBackend("https://127.0.0.1:9/v1", model="m")
    before = stats()["deferred"]
    backend._ensure_session()
    await backend.aclose()
    return {"before": before, **stats()}

print(json.dumps(asyncio.run(main())))
"""
    )
    assert out["before"] is True
    assert out["deferred"] is False
    assert out["verified"] == out["system"] > 0
    assert out["unverified"] == out["system"]


@needs_cas
def test_a_redirect_loads_before_it_is_followed() -> None:
    # A plain-HTTP server that answers every chat request with a redirect (to itself,
    # over plain HTTP again): the guard loads the bundle as the first redirect arrives.
    out = run(
        """
from aiohttp import web
from pacore.types import SamplingParams

async def main():
    seen = []
    async def models(request):
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})
    async def redirect(request):
        seen.append(stats()["deferred"])
        raise web.HTTPTemporaryRedirect("/v2/chat/completions")
    async def chat(request):
        seen.append(stats()["deferred"])
        return web.json_response({"id": "x", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", redirect)
    app.router.add_post("/v2/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with OpenAIBackend(f"http://127.0.0.1:{port}/v1", model="m") as backend:
        (done,) = await backend.complete([{"role": "user", "content": "hi"}], 1, SamplingParams())
    await runner.cleanup()
    return {"seen": seen, "text": done.text, **stats()}

print(json.dumps(asyncio.run(main())))
"""
    )
    assert out["seen"] == [True, False]  # deferred at the redirect, loaded at the next hop
    assert out["text"] == "ok"
    assert out["verified"] == out["system"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_context_left_unloaded_refuses_certificates(tmp_path: Path) -> None:
    """Fails closed: even aiohttp used directly, with nothing loaded, refuses a server's
    certificate instead of accepting it."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    out = run(
        f"""
import aiohttp
from aiohttp import web

async def main():
    app = web.Application()
    app.router.add_get("/", lambda request: web.Response(text="secret"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain({str(cert)!r}, {str(key)!r})
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"https://127.0.0.1:{{port}}/") as response:
                result = await response.text()
    except aiohttp.ClientConnectorCertificateError:
        result = "refused"
    await runner.cleanup()
    return {{"result": result, **stats()}}

print(json.dumps(asyncio.run(main())))
"""
    )
    assert out["result"] == "refused"
