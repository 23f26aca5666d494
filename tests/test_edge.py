"""The network edge of `pacore serve` and `pacore view`, through real processes and sockets.

Each server runs as `pacore` in a subprocess (so signals, exit codes, the descriptor
limit and stderr are the real ones); clients are the `openai` SDK and raw sockets.
Every wait is on something the server or the fake upstream reports (a line on stderr,
a request seen upstream, a socket closed), bounded by a generous deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fake_server import FakeConfig, FakeServer, run_in_thread
from tests.view.test_data import trajectory

WAIT_S = 30.0
"""The bound on every wait: far above what any of them takes."""
SRC = str(Path(__file__).resolve().parents[1] / "src")


class Pacore:
    """`pacore ARGS` in a subprocess, its stderr collected line by line as it comes."""

    def __init__(self, *args: str, nofile: int | None = None, env: dict[str, str] | None = None):
        code = "import sys\n"
        if nofile is not None:
            code += "import resource\n"
            code += f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))\n"
        code += "from pacore_cli import main\nsys.exit(main())\n"
        environ = {k: v for k, v in os.environ.items() if k != "PACORE_SERVE_API_KEYS"}
        environ.update(PYTHONPATH=SRC, **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=environ,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<eof>")
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(line for line in self.lines if line != "<eof>")

    def wait_for(self, text: str, count: int = 1) -> str:
        """The `count`-th stderr line containing `text` (AssertionError if it never comes)."""

        def found() -> list[str]:
            return [line for line in self.lines if text in line]

        with self._changed:
            ok = self._changed.wait_for(
                lambda: len(found()) >= count or "<eof>" in self.lines, WAIT_S
            )
            assert ok, f"no {text!r} in:\n{self.stderr[-3000:]}"
            assert len(found()) >= count, f"no {text!r} in:\n{self.stderr[-3000:]}"
            return found()[count - 1]

    def port(self) -> int:
        line = self.wait_for("Ctrl-C stops")
        return int(line.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])

    def finish(self) -> int:
        """The exit code, once the process has ended (interrupted if still running)."""
        try:
            return self.proc.wait(WAIT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(WAIT_S)

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.interrupt()
            self.finish()


@pytest.fixture
def upstream() -> Iterator[FakeServer]:
    with run_in_thread(FakeConfig()) as server:
        yield server


@contextlib.contextmanager
def pacore(*args: str, **kwargs: Any) -> Iterator[Pacore]:
    """A running `pacore ARGS`, interrupted at the end if still running."""
    process = Pacore(*args, **kwargs)
    try:
        yield process
    finally:
        process.close()


def client(port: int) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=WAIT_S
    )


def raw(port: int, request: bytes) -> tuple[int, bytes]:
    """The status and body of the answer to one raw HTTP/1.1 request."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def post(port: int, headers: dict[str, str | None], body: bytes = b"{}") -> tuple[int, bytes]:
    fields = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json", **headers}
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v is not None)
    request = f"POST /v1/chat/completions HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n"
    return raw(port, request.encode() + b"Connection: close\r\n\r\n" + body)


def get(port: int, path: str, host: str) -> tuple[int, bytes]:
    return raw(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())


def ask(port: int, question: str = "Q?", model: str = "pacore-low") -> str:
    answer = client(port).chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}]
    )
    return answer.choices[0].message.content or ""


def no_traceback(process: Pacore) -> None:
    text = process.stderr
    assert "Traceback" not in text, text[-3000:]
    assert "Exception in ASGI" not in text, text[-3000:]


def closed(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (waits up to WAIT_S for it to say so)."""
    sock.settimeout(WAIT_S)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


# -- connections -------------------------------------------------------------------


def test_half_sent_requests_and_silent_connections_are_closed(upstream: FakeServer) -> None:
    with pacore("serve", "--upstream", upstream.url, "--port", "0", "--header-timeout", "0.5",
                "--body-timeout", "0.5", "--idle-timeout", "0.5") as server:  # fmt: skip
        port = server.port()
        kept = socket.create_connection(("127.0.0.1", port))
        kept.sendall(f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert kept.recv(65536).startswith(b"HTTP/1.1 200")  # then it idles, kept alive
        silent = socket.create_connection(("127.0.0.1", port))
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
        slow_body = socket.create_connection(("127.0.0.1", port))
        slow_body.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
        )
        for sock in (kept, silent, half, slow_body):
            with sock:
                assert closed(sock)
        server.wait_for("did not send its request in time")
        assert "did not send its request in time" in server.stderr
        assert ask(port)  # the server still serves
    no_traceback(server)


def test_connection_cap_under_a_low_descriptor_limit(upstream: FakeServer) -> None:
    # 300 half-sent requests against 256 descriptors: the cap closes the excess at once,
    # the header timeout the rest, and a valid request then gets through.
    args = ("serve", "--upstream", upstream.url, "--port", "0", "--header-timeout", "1")
    with pacore(*args, nofile=256) as server:
        port = server.port()
        server.wait_for("at most")  # the cap was lowered to fit the descriptor limit
        socks = []
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.")
            socks.append(sock)
        server.wait_for("connections are open, the most allowed: closing new ones")
        for sock in socks:
            with sock:
                assert closed(sock)
        assert ask(port)
    no_traceback(server)
    assert "Too many open files" not in server.stderr
    assert server.stderr.count("closing new ones") <= 2  # one line per burst
    assert len(server.stderr) < 5000


# -- browsers ----------------------------------------------------------------------


def _flood(port: int, head: bytes, size: int) -> bytes:
    """Send `head` then `size` bytes of a header or URL that never ends; all the server
    answered before it closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sent = 0
        with contextlib.suppress(OSError):  # the server closes while we still send
            sock.sendall(head)
            while sent < size:
                sock.sendall(b"a" * 16384)
                sent += 16384
        data = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                data += chunk
    return data


def test_a_request_gets_one_answer_and_a_bounded_head(upstream: FakeServer) -> None:
    """A request line and headers past 64 KiB are refused (431): the parser held a
    header whole while it came, so one client could make the server hold tens of MB.
    An early refusal (413 before the body is in) is the request's only answer: the body
    timer wrote a 408 after it. Two Host headers are a 400, a wrong method a client
    error with its Allow header."""
    args = ("serve", "--upstream", upstream.url, "--port", "0", "--max-body", "1000",
            "--body-timeout", "0.5", "--header-timeout", "5")  # fmt: skip
    with pacore(*args) as server:
        port = server.port()
        host = f"Host: 127.0.0.1:{port}\r\n".encode()
        endless_header = _flood(port, b"GET /v1/models HTTP/1.1\r\n" + host + b"X-Big: ", 1 << 20)
        assert endless_header.startswith(b"HTTP/1.1 431 ")
        assert endless_header.count(b"HTTP/1.1 ") == 1
        endless_url = _flood(port, b"GET /v1/models?q=", 1 << 20)
        assert endless_url.startswith(b"HTTP/1.1 431 ")
        server.wait_for("refused a request whose line and headers passed 65536 bytes")
        # Headers just under the cap are fine.
        fine = b"GET /v1/models HTTP/1.1\r\n" + host + b"X-Pad: " + b"p" * 60000 + b"\r\n"
        status, _ = raw(port, fine + b"Connection: close\r\n\r\n")
        assert status == 200
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\n" + host
                + b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{"
            )  # fmt: skip
            data = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    data += chunk
        assert data.startswith(b"HTTP/1.1 413 ")
        assert data.count(b"HTTP/1.1 ") == 1, data
        twice = b"GET /v1/models HTTP/1.1\r\n" + host + b"Host: evil.example\r\n"
        status, body = raw(port, twice + b"Connection: close\r\n\r\n")
        assert status == 400
        assert json.loads(body)["error"]["type"] == "invalid_request_error"
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
            sock.sendall(
                b"GET /v1/chat/completions HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n"
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 405 ")
        assert b"\r\nallow: POST" in head.lower().replace(b"allow: post", b"allow: POST")
        assert json.loads(body)["error"]["type"] == "invalid_request_error"
        for _ in range(30):  # requests the parser cannot read: one log line, not 30
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
                sock.sendall(b"\x00garbage\r\n\r\n")
                assert sock.recv(100).startswith(b"HTTP/1.1 400")
        server.wait_for("answered 400 to a request that is not HTTP")
        assert ask(port)  # the server still serves
    # The burst's line, and a count of the rest if its window closed while running.
    assert server.stderr.count("answered 400 to a request that is not HTTP") in (1, 2)
    assert "Invalid HTTP request received" not in server.stderr
    no_traceback(server)


def test_browser_requests_are_refused_and_the_sdk_still_works(upstream: FakeServer) -> None:
    args = ("serve", "--upstream", upstream.url, "--port", "0", "--allow-host",
            "api.example.com", "--allow-origin", "https://app.example.com/")  # fmt: skip
    with pacore(*args) as server:
        port = server.port()
        assert ask(port)  # the SDK: JSON, its own Host
        assert ask(port, model="fake-model")
        refused: list[tuple[dict[str, str | None], int, str | None]] = [
            ({"Content-Type": "text/plain"}, 415, "unsupported_media_type"),  # CSRF
            ({"Content-Type": "application/x-www-form-urlencoded"}, 415, None),
            ({"Content-Type": None}, 415, None),
            ({"Origin": "https://evil.example"}, 403, "origin_not_allowed"),
            ({"Origin": "null"}, 403, None),
            ({"Host": "evil.example"}, 421, "host_not_allowed"),  # DNS rebinding
            ({"Host": f"evil.example:{port}"}, 421, None),
        ]
        for headers, status, code in refused:
            got, body = post(port, headers)
            assert got == status, (headers, body)
            error = json.loads(body)["error"]  # OpenAI's shape
            assert set(error) == {"message", "type", "param", "code"}
            assert code is None or error["code"] == code
        allowed: list[dict[str, str | None]] = [
            {"Host": f"localhost:{port}"},
            {"Host": "api.example.com"},
            {"Origin": "https://app.example.com"},
            {"Origin": f"http://127.0.0.1:{port}"},  # the server's own pages
        ]
        for headers in allowed:
            got, body = post(port, headers, b'{"model": "fake-model", "messages": []}')
            assert got not in (403, 415, 421), (headers, body)
        # A request the app would refuse anyway gets the app's own answer, not a 415.
        for line, status in [("DELETE /v1/models", 405), ("POST /v1/completions", 404),
                             ("PUT /v1/chat/completions", 405)]:  # fmt: skip
            request = f"{line} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n"
            got, body = raw(port, request.encode() + b"Connection: close\r\n\r\n")
            assert got == status, (line, body)
            assert json.loads(body)["error"]["type"] == "invalid_request_error", body
    no_traceback(server)


def test_view_answers_only_its_own_host_names(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    line = {"id": "q0", "status": "ok", "answer": "\\boxed{1}", "rounds": [[trajectory(0, "1")]]}
    out.write_text(json.dumps(line) + "\n")
    with pacore("view", str(out), "--port", "0") as view:
        port = view.port()
        assert get(port, "/", f"127.0.0.1:{port}")[0] == 200
        assert get(port, "/", f"localhost:{port}")[0] == 200
        status, body = get(port, "/", f"rebind.example:{port}")
        assert status == 421
        assert b"--allow-host" in body
        request = f"GET / HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: https://evil.example\r\n"
        status, _ = raw(port, request.encode() + b"Connection: close\r\n\r\n")
        assert status == 403
    no_traceback(view)


# -- start-up ----------------------------------------------------------------------


def test_unsafe_settings_are_refused_before_anything_listens(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    out.write_text(json.dumps({"id": "q0", "status": "ok", "answer": "1", "rounds": []}) + "\n")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = str(taken.getsockname()[1])
    up = ("serve", "--upstream", "http://127.0.0.1:9/v1")
    cases: list[tuple[tuple[str, ...], dict[str, str] | None, str]] = [
        ((*up, "--api-key", ""), None, "--api-key is empty"),
        (up, {"PACORE_SERVE_API_KEYS": " , "}, "PACORE_SERVE_API_KEYS is set but holds no key"),
        ((*up, "--host", ""), None, "--host is empty"),
        ((*up, "--host", "0.0.0.0"), None, "--insecure-no-auth"),
        ((*up, "--port", "70000"), None, "--port must be at most 65535"),
        ((*up, "--port", busy), None, f"cannot listen on 127.0.0.1:{busy}"),
        (("view", str(out), "--host", ""), None, "--host is empty"),
        (("view", str(out), "--port", "70000"), None, "--port 70000: not a port"),
        (("view", str(out), "--port", busy), None, f"cannot listen on 127.0.0.1:{busy}"),
    ]
    with taken:
        started = [(Pacore(*args, env=env), message) for args, env, message in cases]
        for process, message in started:
            assert process.finish() == 2, process.stderr
            lines = process.stderr.splitlines()
            assert len(lines) == 1, process.stderr
            assert message in lines[0], process.stderr
            assert lines[0].startswith("pacore: error: ")


def test_port_0_is_announced_with_the_port_it_got(upstream: FakeServer) -> None:
    with pacore("serve", "--upstream", upstream.url, "--port", "0") as server:
        port = server.port()
        assert port != 0
        assert ask(port)


def test_ctrl_c_while_the_parser_is_built_exits_130_quietly() -> None:
    code = (
        "import os, signal, sys\n"
        "import pacore.cli.options as options\n"
        "add = options.add_settings\n"
        "def interrupted(*args, **kwargs):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    return add(*args, **kwargs)\n"
        "options.add_settings = interrupted\n"
        "import pacore.cli.serve\n"
        "pacore.cli.serve.add_settings = interrupted\n"
        "from pacore_cli import main\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "serve", "--help"],
        env={**os.environ, "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "pacore: interrupted"


# -- shutdown ----------------------------------------------------------------------


def _waiting_upstream(config: FakeConfig, questions: int) -> tuple[FakeConfig, threading.Event]:
    """`config` whose responder reports once `questions` different user questions came."""
    seen: set[str] = set()
    all_in = threading.Event()

    def respond(messages: list[dict[str, Any]], index: int, body: dict[str, Any]) -> str:
        seen.add(str(messages[-1]["content"]))
        if len(seen) >= questions:
            all_in.set()
        return "So \\boxed{42}."

    config.responder = respond
    return config, all_in


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_ctrl_c_answers_requests_in_flight_after_the_grace_period() -> None:
    config, all_in = _waiting_upstream(FakeConfig(ttft_s=600), questions=2)
    with (
        run_in_thread(config) as upstream,
        pacore(
            "serve", "--upstream", upstream.url, "--port", "0", "--shutdown-grace", "0.2"
        ) as server,
    ):
        port = server.port()
        sdk = client(port)
        messages: Any = [{"role": "user", "content": "whole?"}]
        whole, whole_out = _in_thread(
            lambda: sdk.chat.completions.create(model="pacore-low", messages=messages)
        )
        streamed_messages: Any = [{"role": "user", "content": "streamed?"}]

        def stream() -> list[Any]:
            return list(
                sdk.chat.completions.create(
                    model="pacore-low", messages=streamed_messages, stream=True
                )
            )

        streamed, streamed_out = _in_thread(stream)
        assert all_in.wait(WAIT_S)
        server.interrupt()
        server.wait_for("2 requests in progress")
        whole.join(WAIT_S)
        streamed.join(WAIT_S)
        assert server.finish() == 130
    error = whole_out["error"]
    assert isinstance(error, openai.APIStatusError)
    assert error.status_code == 503
    assert "shutting down" in str(error)
    assert isinstance(streamed_out.get("error"), openai.APIError), streamed_out
    assert "shutting down" in str(streamed_out["error"])
    records = [json.loads(line) for line in server.lines if line.startswith("{")]
    assert sorted(r["stream"] for r in records) == [False, True]
    assert {r["status"] for r in records} == {503}
    no_traceback(server)
    assert server.lines[-2] == "pacore: interrupted"


def test_ctrl_c_lets_requests_finish_within_the_grace_period() -> None:
    release = threading.Event()
    seen = threading.Event()

    def respond(messages: list[dict[str, Any]], index: int, body: dict[str, Any]) -> str:
        seen.set()
        release.wait(WAIT_S)  # holds the fake upstream until the server is stopping
        return "So \\boxed{42}."

    with (
        run_in_thread(FakeConfig(responder=respond)) as upstream,
        pacore(
            "serve", "--upstream", upstream.url, "--port", "0", "--shutdown-grace", "60"
        ) as server,
    ):
        port = server.port()
        asked, outcome = _in_thread(lambda: ask(port, model="fake-model"))
        assert seen.wait(WAIT_S)
        server.interrupt()
        server.wait_for("1 request in progress")
        with pytest.raises(ConnectionRefusedError):  # no longer accepting
            socket.create_connection(("127.0.0.1", port), timeout=WAIT_S).close()
        release.set()
        asked.join(WAIT_S)
        assert server.finish() == 130
    assert outcome.get("value") == "So \\boxed{42}.", outcome
    records = [json.loads(line) for line in server.lines if line.startswith("{")]
    assert [r["status"] for r in records] == [200]
    no_traceback(server)


def test_a_second_ctrl_c_ends_the_grace_period() -> None:
    config, all_in = _waiting_upstream(FakeConfig(ttft_s=600), questions=1)
    with (
        run_in_thread(config) as upstream,
        pacore(
            "serve", "--upstream", upstream.url, "--port", "0", "--shutdown-grace", "600"
        ) as server,
    ):
        port = server.port()
        asked, outcome = _in_thread(lambda: ask(port, model="fake-model"))
        assert all_in.wait(WAIT_S)
        server.interrupt()
        server.wait_for("1 request in progress")
        server.interrupt()
        asked.join(WAIT_S)
        assert server.finish() == 130
    error = outcome["error"]
    assert isinstance(error, openai.APIStatusError)
    assert error.status_code == 503
    no_traceback(server)
