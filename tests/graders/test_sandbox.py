"""The sandbox contains what model-written code tries: network, fork bombs, endless loops,
huge allocations, writing outside its directory, reading the harness's files.

Each escape runs under the strongest isolation this machine allows (`auto`) and under the
`fallback` mode (rlimits + audit hook), which is what a machine without namespaces gets.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from pacore.errors import ConfigError
from pacore.graders.sandbox import UID_BASE, Limits, Sandbox

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")

_SIGKILL_BIT = 1 << (9 - 1)  # of the pending-signal masks in /proc/<pid>/status
LIMITS = Limits(wall_s=1.5, memory_bytes=512 << 20, nproc=16)
_AUTO = Sandbox(LIMITS)
MODES = ["auto"] if _AUTO.mode == "fallback" else ["auto", "fallback"]


@pytest.fixture(scope="module", params=MODES)
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    return _AUTO if request.param == "auto" else Sandbox(LIMITS, isolation="fallback")


def test_ordinary_programs_run(sandbox: Sandbox) -> None:
    program = (
        "import collections, fractions, heapq, itertools, json, math, re, threading\n"
        "P = collections.namedtuple('P', 'x y', defaults=[0])\n"
        "open('scratch.txt', 'w').write(input()[::-1])\n"
        "t = threading.Thread(target=print, args=(open('scratch.txt').read(), P(1)))\n"
        "t.start(); t.join()\n"
    )
    result = sandbox.run(program, "olleh\n")
    assert result.ok, result.stderr
    assert result.stdout == "hello P(x=1, y=0)\n"


def test_environment_is_stripped(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACORE_TEST_SECRET", "hunter2")
    result = sandbox.run("import os\nprint(sorted(os.environ))")
    assert result.stdout.strip() == "['HOME', 'LANG', 'PATH', 'TMPDIR']"


def test_network_is_unreachable(sandbox: Sandbox) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        program = (
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "s.sendall(b'leak')\nprint('CONNECTED')\n"
        )
        result = sandbox.run(program)
        assert result.status == "error"
        assert "CONNECTED" not in result.stdout
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody ever connected


def test_fork_bomb_is_contained(sandbox: Sandbox) -> None:
    program = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except Exception:\n        pass\n"
    )
    result = sandbox.run(program)
    assert result.status in ("timeout", "error")
    assert not _sandbox_processes(), "processes of the sandbox survived it"


def test_infinite_loop_times_out(sandbox: Sandbox) -> None:
    result = sandbox.run("while True:\n    pass\n")
    assert result.status == "timeout"


def test_sleeping_forever_times_out(sandbox: Sandbox) -> None:
    result = sandbox.run("import time\ntime.sleep(1000)\n", limits=Limits(wall_s=0.5))
    assert result.status == "timeout"


def test_huge_allocation_fails(sandbox: Sandbox) -> None:
    result = sandbox.run("x = bytearray(8 * 2**30)\nprint('ALLOCATED')\n")
    assert result.status == "error"
    assert "ALLOCATED" not in result.stdout
    assert "MemoryError" in result.stderr or result.signal is not None


def test_output_is_bounded(sandbox: Sandbox) -> None:
    result = sandbox.run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n")
    assert result.status in ("error", "timeout")
    assert len(result.stdout) <= LIMITS.output_bytes


def test_output_stops_at_the_file_size_limit_and_keeps_its_head(sandbox: Sandbox) -> None:
    limits = Limits(wall_s=10.0, fsize_bytes=4 << 20, output_bytes=1000)
    program = (
        "import sys\n"
        "sys.stdout.write('a' * 600 + 'b' * 600)\n"
        "sys.stdout.flush()\n"
        "for _ in range(200):\n    sys.stdout.write('c' * 65536)\n"  # 13 MB, past the cap
        "sys.stdout.flush()\n"
        "print('FINISHED', file=sys.stderr)\n"
    )
    result = sandbox.run(program, limits=limits)
    assert result.status == "error"  # its writes failed once the cap was read
    assert result.stdout == "a" * 600 + "b" * 400
    assert "FINISHED" not in result.stderr
    small = sandbox.run("print('x' * 3000)\nprint('done', file=__import__('sys').stderr)")
    assert small.ok
    assert small.stdout == "x" * 3000 + "\n"
    assert small.stderr == "done\n"


def test_stdout_and_stderr_take_no_space_on_the_host() -> None:
    """`fallocate` with FALLOC_FL_KEEP_SIZE reserves disk blocks past the file-size limit,
    which checks only the size; stdout and stderr were files in the host's temporary
    folder. They are pipes now: there is nothing on disk to grow (and in fallback mode
    the audit hook refuses ctypes before that)."""
    import errno

    program = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]\n"
        "for fd in (1, 2):\n"
        "    got = libc.fallocate(fd, 1, 0, 64 << 20)\n"  # FALLOC_FL_KEEP_SIZE
        "    os.write(2, f'{fd}:{got}:{ctypes.get_errno()}\\n'.encode())\n"
    )
    result = _AUTO.run(program)
    if _AUTO.mode == "fallback":
        assert result.status == "error"
        assert "not allowed" in result.stderr
        return
    assert result.ok, result.stderr
    assert result.stderr.splitlines() == [f"{fd}:-1:{errno.ESPIPE}" for fd in (1, 2)]


def test_cannot_write_outside_its_directory(sandbox: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "pwned.txt"
    program = f"open({str(target)!r}, 'w').write('owned')\nprint('WROTE')\n"
    result = sandbox.run(program)
    assert "WROTE" not in result.stdout
    assert not target.exists()


def test_cannot_read_the_harness_files(sandbox: Sandbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-4242")
    attempts = (
        f"print(open({str(secret)!r}).read())",
        f"import os\nfd = os.open({str(secret)!r}, os.O_RDONLY)\nprint(os.read(fd, 100))",
        f"import subprocess\nprint(subprocess.run(['cat', {str(secret)!r}], capture_output=True))",
        f"import os\nprint(os.listdir({str(tmp_path)!r}))",
        f"print(open({str(Path(__file__).resolve())!r}).read()[:200])",
    )
    for program in attempts:
        result = sandbox.run(program)
        assert "TOPSECRET" not in result.stdout + result.stderr
        assert "secret.txt" not in result.stdout
        assert "escape" not in result.stdout  # this file's text
        assert result.status == "error"


def test_its_files_are_gone_afterwards(sandbox: Sandbox) -> None:
    result = sandbox.run("import os\nopen('left.txt', 'w').write('x')\nprint(os.getcwd())\n")
    assert result.ok
    cwd = result.stdout.strip()
    if sandbox.mode == "fallback":
        assert not Path(cwd).exists()
    else:
        assert cwd == "/box"  # inside the namespace's tmpfs, gone with it


def test_unusable_interpreter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="sandbox"):
        Sandbox(python="/nonexistent/python").run("print(1)")


def _sandbox_processes() -> list[int]:
    """Pids of processes running as a sandbox uid that are neither dead (a zombie waiting
    to be reaped) nor dying (SIGKILL pending): the ones that could still run code."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            uid = int(
                next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1]
            )
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            dying = any(int(fields[k], 16) & _SIGKILL_BIT for k in ("SigPnd", "ShdPnd"))
            if uid >= UID_BASE and fields["State"].split()[0] not in "ZX" and not dying:
                found.append(int(entry))
    return found


def test_fallback_hook_cannot_be_rewritten_through_a_traceback(tmp_path: Path) -> None:
    """A denied call's traceback leads to the audit hook's frame, whose locals are its
    helpers: rewriting their defaults opened every path. Patching them is denied now,
    while the standard library's own `__defaults__` writes (namedtuple) still work."""
    target = tmp_path / "pwned.txt"
    program = (
        "try:\n"
        "    open('/etc/passwd')\n"
        "except PermissionError as exc:\n"
        "    tb = exc.__traceback__\n"
        "    while tb.tb_next:\n"
        "        tb = tb.tb_next\n"
        "    helpers = tb.tb_frame.f_back.f_locals\n"
        "    for name in ('_allowed', '_norm', '_deny'):\n"
        "        for value in (None, ('/',) * len(helpers[name].__defaults__)):\n"
        "            try:\n"
        "                helpers[name].__defaults__ = value\n"
        "            except PermissionError as denied:\n"
        "                print(name, denied)\n"
        f"open({str(target)!r}, 'w').write('owned')\n"
    )
    sandbox = Sandbox(LIMITS, isolation="fallback")
    result = sandbox.run(program)
    assert result.status == "error"
    assert not target.exists()
    assert result.stdout.count("patching the sandbox is not allowed") == 6, result.stdout
    ordinary = (
        "import collections, dataclasses, enum, traceback\n"
        "P = collections.namedtuple('P', 'x y', defaults=[0])\n"
        "class C(enum.Enum):\n    A = 1\n"
        "def f(a=1):\n    return a\n"
        "f.__defaults__ = (2,)\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    traceback.print_exc()\n"
        "print(P(1), C.A, f())\n"
    )
    result = sandbox.run(ordinary)
    assert result.ok, result.stderr
    assert result.stdout == "P(x=1, y=0) C.A 2\n"
    assert "ZeroDivisionError" in result.stderr


def test_fallback_removes_the_calls_its_hook_cannot_see() -> None:
    """`os.pidfd_open` and `signal.pidfd_send_signal` raise no audit event: a program
    used them to kill the harness."""
    program = (
        "import os, posix, signal, _signal\n"
        "print([hasattr(m, n) for m in (os, posix, signal, _signal)\n"
        "       for n in ('pidfd_open', 'pidfd_send_signal')])\n"
    )
    result = Sandbox(LIMITS, isolation="fallback").run(program)
    assert result.ok, result.stderr
    assert result.stdout == f"{[False] * 8}\n"
