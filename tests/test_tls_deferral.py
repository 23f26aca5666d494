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
from pacore.backends.openai_compat import tls
tls.defer_certificates()  # as the pacore command does, before anything imports aiohttp
from pacore.backends.openai_compat import OpenAIBackend
import aiohttp.connector as connector

def stats():
    return {
        "verified": connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"],
        "unverified": connector._SSL_CONTEXT_UNVERIFIED.cert_store_stats()["x509_ca"],
        "system": ssl.create_default_context().cert_store_stats()["x509_ca"],
        "deferred": tls.certificates_deferred(),
    }
"""


def run(code: str, prelude: str = PRELUDE) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", prelude + code],
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
    assert out["verified"] == out["system"] != 0
    assert out["unverified"] == out["system"]


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


TLS_SERVER = """
from aiohttp import web

async def tls_server(app, cert, key):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]
"""

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@needs_cas
@needs_openssl
def test_a_redirect_to_https_loads_then_verifies_as_aiohttp_would(tmp_path: Path) -> None:
    # A plain-HTTP server redirects the chat request to an https one whose certificate
    # no CA signed: the first refusal loads the bundle, the retry is refused on its
    # merits (as aiohttp with its bundle loaded at import refuses it).
    key, cert = self_signed(tmp_path)
    out = run(
        TLS_SERVER
        + f"""
from pacore.types import SamplingParams
from pacore.errors import ConnectionFailed

async def main():
    hits = []
    async def chat(request):
        hits.append(1)
        return web.json_response({{}})
    secure = web.Application()
    secure.router.add_post("/v1/chat/completions", chat)
    tls_runner, tls_port = await tls_server(secure, {str(cert)!r}, {str(key)!r})

    async def models(request):
        return web.json_response({{"object": "list", "data": [{{"id": "m"}}]}})
    async def redirect(request):
        raise web.HTTPTemporaryRedirect(f"https://127.0.0.1:{{tls_port}}/v1/chat/completions")
    plain = web.Application()
    plain.router.add_get("/v1/models", models)
    plain.router.add_post("/v1/chat/completions", redirect)
    runner = web.AppRunner(plain)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    messages = []
    async with OpenAIBackend(f"http://127.0.0.1:{{port}}/v1", model="m", max_retries=2,
                             backoff_base=0.01) as backend:
        (done,) = await backend.complete([{{"role": "user", "content": "hi"}}], 1,
                                         SamplingParams())
    await runner.cleanup()
    await tls_runner.cleanup()
    return {{"error": done.error or "", "hits": len(hits), **stats()}}

print(json.dumps(asyncio.run(main())))
"""
    )
    assert out["deferred"] is False
    assert out["verified"] == out["system"]
    assert "certificate" in str(out["error"]).lower()
    assert out["hits"] == 0  # nothing ever reached the unverified server


@needs_cas
def test_loaded_late_only_for_a_deferred_certificate_refusal() -> None:
    out = run(
        """
import aiohttp
from aiohttp.client_reqrep import ConnectionKey
key = ConnectionKey("h", 443, True, True, None, None, None)
refusal = aiohttp.ClientConnectorCertificateError(key, ssl.SSLCertVerificationError())
other = tls.loaded_late(aiohttp.ClientConnectionError("reset"))
first = tls.loaded_late(refusal)
again = tls.loaded_late(refusal)
print(json.dumps({"other": other, "first": first, "again": again, **stats()}))
"""
    )
    assert (out["other"], out["first"], out["again"]) == (False, True, False)
    assert out["verified"] == out["system"] != 0


@needs_openssl
def test_a_context_left_unloaded_refuses_certificates(tmp_path: Path) -> None:
    """Fails closed: even aiohttp used directly, with nothing loaded, refuses a server's
    certificate instead of accepting it."""
    key, cert = self_signed(tmp_path)
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


@needs_cas
def test_as_a_library_aiohttp_is_imported_as_it_always_is() -> None:
    """Without the command's `defer_certificates()`, nothing is deferred: the process's
    other aiohttp sessions (an app that embeds pacore) keep their certificates."""
    out = run(
        "print(json.dumps(stats()))",
        prelude=PRELUDE.replace("tls.defer_certificates()", "pass"),
    )
    assert out["deferred"] is False
    assert out["verified"] == out["system"] != 0


def test_the_pacore_command_defers_them() -> None:
    """`pacore run` against a plain-HTTP URL (here one nothing listens on) never loads
    the bundle."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    code = (
        "from pacore.cli import main\n"
        "from pacore.backends.openai_compat import tls\n"
        "main(['run', 'q', '--backend', 'http://127.0.0.1:9/v1', '--quiet'])\n"
        "print(tls.certificates_deferred())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.stdout.strip().splitlines()[-1] == "True", done.stderr
