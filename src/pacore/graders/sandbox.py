"""Run untrusted Python programs: one sandboxed process per execution.

`Sandbox.run(source, stdin)` writes the program and its input to a fresh temporary
directory (mode 0700), starts `python -I -S` running `_sandbox_boot.main` in a new
session with a minimal environment (`PATH`, `LANG`, `HOME`, `TMPDIR`), waits at most
`Limits.wall_s`, then kills the whole process group, keeps at most
`Limits.output_bytes` of stdout/stderr (pipes read while it runs, never files on the
host's disk), and deletes the directory. Model code never runs
in, or is imported by, the harness process, and the sandbox dies with the harness
(`PR_SET_PDEATHSIG`). The program runs as `__main__` of a fresh interpreter, stdlib only.

Isolation modes (`Sandbox.mode`, chosen once by a probe run unless forced):

`namespace` (Linux, root or unprivileged user namespaces; used when the probe passes)
  - New pid, mount, network, IPC and UTS namespaces. The network namespace has only a
    loopback device that is down: no connection to anything, the host's localhost
    included.
  - The filesystem is a fresh tmpfs (`Limits.tmpfs_bytes`) holding read-only, nosuid
    binds of the Python standard library (its `site-packages` masked), `/usr/lib*`,
    `/lib*`, `/etc/ld.so.cache` and `/dev/{null,zero,random,urandom}`, plus a writable
    `/box` (cwd and HOME) and `/tmp`. `pivot_root` moves into it and the host's root
    is detached, so the project, the datasets, `/root`, `/home`, `/etc` and the host's
    `/tmp` do not exist for the program, and a `chroot` escape has nothing to reach.
    Everything it writes vanishes with the namespace.
  - As root, the program runs as an unprivileged uid with no passwd entry, unique per
    execution (so `RLIMIT_NPROC` counts only its own processes), no groups and
    `no_new_privs`. Without root it stays uid 0 of its own user namespace, with every
    capability dropped (bounding, effective, permitted) and `no_new_privs`.
  - The program's parent is pid 1 of the namespace; when the program exits or the
    harness kills the process group, every process left in the namespace is killed by
    the kernel (a fork bomb's survivors included).
  - rlimits: CPU seconds, address space (memory), file size, process count, open
    files, no core dumps. Stdout and stderr are pipes the harness reads, closed once
    `Limits.fsize_bytes` came through each (files there could be grown on the host's
    disk past the file-size limit with `fallocate(FALLOC_FL_KEEP_SIZE)`).

`fallback` (no namespaces: containers without CAP_SYS_ADMIN, user namespaces disabled)
  - Same rlimits, new session, stripped environment, fresh cwd/HOME in the temporary
    directory, and a PEP 578 audit hook that refuses sockets, new processes (fork,
    exec, spawn, subprocess, os.system), ctypes, signals, symlinks and hard links,
    writing, creating, renaming or deleting anything outside its directory, reading or
    listing anything outside it and the standard library (site-packages excluded), and
    the introspection that could unhook it (gc.get_objects & co, patching `__code__`,
    or the defaults of the hook's helpers, which a denied call's traceback reaches).
    `os.pidfd_open` and `signal.pidfd_send_signal`, which raise no audit event, are
    removed.
    As root, it also drops to a unique unprivileged uid when the standard library is
    readable by everyone (not the case for a Python under `/root`).
  - This is much weaker. Audit hooks are tripwires, not a security boundary (PEP 578
    says so): a determined program may find a path no hook sees (a C extension bug, an
    event that does not exist), it usually runs as the harness's own user, `os.stat`
    probes of file existence are not audited, and a symlink already present inside the
    standard library is followed. Fine for benchmarking models you trust; run untrusted
    ones where `namespace` works.

Verdicts (what a hostile program cannot do to its grade, in both modes): the harness
never takes a pass from the program's exit status or from anything it writes. Stdout is
compared by the harness and a run that ends by a signal or a non-zero exit fails; a
functional test is judged by a trusted checker in another process that only calls into
the program (`Calls`, `checker.py`). So exits at import or inside a call (any status,
`os._exit`, `SystemExit`, `KeyboardInterrupt`), `atexit` / `sys.excepthook` /
`threading.excepthook` / signal handlers, patched `sys.exit` / `os._exit` / `print`,
threads and timers that exit 0, forks whose parent exits 0, killing itself after
printing success, and fake records on stdout, stderr or any descriptor it holds all
score 0; `tests/graders/test_code_forgery.py` runs each in each mode. What the verdict
still rests on is containment: the checker's records, its memory and the tests must be
out of the program's reach. `namespace` guarantees that (another pid namespace, no host
files); `fallback` only makes it hard (the audit hook denies `/proc`, reading outside
the standard library, `ctypes`, signals and new processes; the checker runs as the same
user), which is why the code grader refuses `fallback` unless told `unsafe_sandbox`
(`pacore eval --unsafe-sandbox`).

Limits of both modes:
  - No seccomp filter and no cgroup: memory is bounded per process by `RLIMIT_AS`, so a
    program may use up to `nproc × memory_bytes` in total, and CPU by `RLIMIT_CPU` per
    process; kernel vulnerabilities are out of scope.
  - Only the standard library is importable (`-S`); third-party packages are not.
  - Each run costs ~15 ms (fallback) to ~30 ms (namespace) of CPU for interpreter
    start-up and isolation, and in namespace mode ~30 ms more of waiting on the kernel;
    run several at once (the code grader does).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from pacore.errors import ConfigError

IsolationMode = Literal["namespace", "fallback"]
Isolation = Literal["auto", "namespace", "fallback"]
ExecStatus = Literal["ok", "error", "timeout", "sandbox_error"]

BOOT = Path(__file__).with_name("_sandbox_boot.py")
# Imported rather than run as a script, so its bytecode is cached (compiling it: ~4 ms).
_BOOT_COMMAND = (
    f"import sys; sys.path.insert(0, {str(BOOT.parent)!r}); "
    "from _sandbox_boot import main; main(sys.argv[1:])"
)
SETUP_FAILED = 111
UID_BASE = 1_900_000_000  # + the boot process's pid: unused uids, unique per live sandbox
SYSTEM_BINDS = (
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/etc/ld.so.cache",
    "/dev/null",
    "/dev/zero",
    "/dev/random",
    "/dev/urandom",
)


@dataclass(frozen=True)
class Limits:
    """Resource limits for one execution."""

    wall_s: float = 10.0
    """Wall-clock timeout; the whole process group is killed when it passes."""
    cpu_s: float | None = None
    """CPU seconds (`RLIMIT_CPU`, rounded up to whole seconds); None: `wall_s`."""
    memory_bytes: int = 1 << 30
    """Address space per process (`RLIMIT_AS`)."""
    fsize_bytes: int = 16 << 20
    """Largest file the program may write (`RLIMIT_FSIZE`); stdout and stderr included."""
    nproc: int = 32
    """Processes and threads (`RLIMIT_NPROC`)."""
    nofile: int = 64
    """Open file descriptors (`RLIMIT_NOFILE`)."""
    tmpfs_bytes: int = 64 << 20
    """Size of the in-memory root filesystem (`namespace` mode)."""
    output_bytes: int = 1 << 20
    """How much of stdout and of stderr is read back."""


@dataclass(frozen=True)
class Calls:
    """Serve calls of a function after the program has run (functional tests).

    After the program's own code, the sandbox reads `repr((args, kwargs))` lines from
    `calls_in` and answers each on `calls_out` (`R <repr(result)>` or `E <type>
    <repr(message)>`) by calling the program's global `entry`, until `calls_in` ends.
    `Sandbox.run` closes both descriptors in this process when the program has ended, so
    that the trusted end (`checker.py`) then sees end of file.
    """

    entry: str
    calls_in: int
    calls_out: int


@dataclass(frozen=True)
class Execution:
    """What one sandboxed run did."""

    status: ExecStatus
    """`ok` (exit 0), `error` (non-zero exit or killed by a limit), `timeout` (wall clock),
    `sandbox_error` (the isolation could not be set up: not the program's fault)."""
    exit_code: int | None
    """The exit code; None when killed by a signal or on timeout."""
    signal: int | None
    """The signal that ended the program (e.g. SIGXCPU for the CPU limit)."""
    stdout: str
    stderr: str
    wall_s: float

    @property
    def ok(self) -> bool:
        """True when the program ran to its end within its limits."""
        return self.status == "ok"


class Sandbox:
    """Runs Python programs in isolated processes; safe to share between threads."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        isolation: Isolation = "auto",
        python: str | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.isolation = isolation
        self.python = python or os.path.realpath(getattr(sys, "_base_executable", sys.executable))
        self._mode: IsolationMode | None = None if isolation == "auto" else isolation
        self.mode_reason = "forced" if isolation != "auto" else ""
        self._lock = threading.Lock()
        self._stdlib: tuple[str, ...] = ()
        self._masked: tuple[str, ...] = ()
        self._drop_root = False

    @property
    def mode(self) -> IsolationMode:
        """The isolation in use, probed on first use (`auto`)."""
        with self._lock:
            if not self._stdlib:
                self._stdlib, self._masked = _stdlib_paths(self.python)
                self._drop_root = os.getuid() == 0 and all(map(_world_readable, self._stdlib))
            if self._mode is None:
                self._mode, self.mode_reason = self._probe()
            return self._mode

    def run(
        self,
        source: str,
        stdin: str | bytes = b"",
        *,
        limits: Limits | None = None,
        calls: Calls | None = None,
    ) -> Execution:
        """Run `source` as `__main__` with `stdin`; never raises for the program's faults.

        With `calls`, the program then answers calls of one of its functions (`Calls`).
        """
        mode = self.mode
        try:
            return self._run(mode, source, stdin, limits or self.limits, calls)
        finally:
            if calls is not None:
                _close(calls.calls_in, calls.calls_out)

    # ------------------------------------------------------------------ internals

    def _probe(self) -> tuple[IsolationMode, str]:
        if not sys.platform.startswith("linux"):
            return "fallback", "namespaces need Linux"
        probe = "import socket, os\nprint(os.listdir('/') and 'ok')"
        try:
            result = self._run("namespace", probe, b"", replace(self.limits, wall_s=10.0), None)
        except OSError as exc:
            return "fallback", f"namespace probe failed: {exc}"
        if result.ok and result.stdout.strip() == "ok":
            return "namespace", "namespaces available"
        reason = (result.stderr.strip().splitlines() or [result.status])[-1]
        return "fallback", f"namespace probe failed: {reason[:200]}"

    def _config(
        self, mode: IsolationMode, tmp: Path, limits: Limits, calls: Calls | None
    ) -> list[str]:
        binds = [*SYSTEM_BINDS, *self._stdlib]
        cpu = limits.cpu_s if limits.cpu_s is not None else limits.wall_s
        values: dict[str, object] = {
            "mode": mode,
            "status": tmp / "status",
            "source": tmp / "main.py",
            "root": tmp / "root",
            "box": tmp / "box",
            "tmpfs_bytes": limits.tmpfs_bytes,
            "uid_base": UID_BASE,
            "cpu_s": max(1, int(-(-cpu // 1))),
            "memory_bytes": limits.memory_bytes,
            "fsize_bytes": limits.fsize_bytes,
            "nproc": limits.nproc,
            "nofile": limits.nofile,
            "ro_binds": "\n".join(binds),
            "masks": "\n".join(self._masked),
            "ro_paths": "\n".join(p.rstrip("/") + "/" for p in self._stdlib),
            "drop_root": int(self._drop_root),
        }
        if calls is not None:
            values.update(serve=calls.entry, calls_in=calls.calls_in, calls_out=calls.calls_out)
        return [f"{key}={value}" for key, value in values.items()]

    def _run(
        self,
        mode: IsolationMode,
        source: str,
        stdin: str | bytes,
        limits: Limits,
        calls: Calls | None,
    ) -> Execution:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        tmp = Path(tempfile.mkdtemp(prefix="pacore-sandbox-"))
        try:
            (tmp / "main.py").write_text(source, encoding="utf-8", errors="replace")
            (tmp / "stdin").write_bytes(data)
            (tmp / "status").touch()
            (tmp / "root").mkdir()
            (tmp / "box").mkdir(mode=0o700)
            if mode == "fallback" and self._drop_root:
                tmp.chmod(0o711)  # the program's uid must reach its cwd by absolute path
            config = self._config(mode, tmp, limits, calls)
            args = [self.python, "-I", "-S", "-c", _BOOT_COMMAND, *config]
            kept = () if calls is None else (calls.calls_in, calls.calls_out)
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
            with open(tmp / "stdin", "rb") as fin:
                start = time.perf_counter()
                proc = subprocess.Popen(
                    args, stdin=fin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp,
                    env=env, start_new_session=True, close_fds=True, pass_fds=kept,
                )  # fmt: skip
                with proc:
                    output = _Output(proc, limits, straggle=mode == "fallback")
                    timed_out = not output.collect(start + limits.wall_s)
                    if timed_out:
                        _kill_group(proc.pid)
                    returncode = proc.wait()
                    wall = time.perf_counter() - start
                    if mode == "fallback":  # namespace mode: the kernel killed stragglers
                        _kill_group(proc.pid)
                    output.drain()
            status_text = (tmp / "status").read_text(errors="replace")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        stdout, stderr = output.text()
        return _execution(returncode, timed_out, status_text, stdout, stderr, wall)


def _execution(
    returncode: int, timed_out: bool, status_text: str, stdout: str, stderr: str, wall: float
) -> Execution:
    exit_code: int | None = returncode if returncode >= 0 else None
    sig: int | None = -returncode if returncode < 0 else None
    for line in status_text.splitlines():  # namespace mode: init's account of the program
        kind, _, value = line.partition(" ")
        if kind == "signal" and value.isdigit():
            exit_code, sig = None, int(value)
        elif kind == "exit" and value.isdigit():
            exit_code, sig = int(value), None
    status: ExecStatus
    if timed_out:
        status, exit_code, sig = "timeout", None, None
    elif "ready" not in status_text.splitlines():
        status = "sandbox_error"
    elif exit_code == 0:
        status = "ok"
    else:
        status = "error"
    return Execution(status, exit_code, sig, stdout, stderr, wall)


def _stdlib_paths(python: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The standard library directories of `python -I -S`, and its site-packages to mask."""
    code = "import sys; print('\\n'.join(p for p in sys.path if p))"
    try:
        out = subprocess.run(
            [python, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"sandbox: cannot run {python}: {exc}") from None
    dirs = {os.path.realpath(p) for p in out.splitlines() if os.path.isdir(p)}
    # Keep only the outermost directories (lib-dynload lives inside the stdlib).
    roots = tuple(sorted(d for d in dirs if not any(d.startswith(o + "/") for o in dirs)))
    masks = tuple(
        os.path.join(r, name)
        for r in roots
        for name in ("site-packages", "dist-packages")
        if os.path.isdir(os.path.join(r, name))
    )
    return roots, masks


def _world_readable(path: str) -> bool:
    """Whether any uid can read `path` (a directory) and reach it."""
    try:
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
        parts = Path(path).parts
        return all(
            os.stat(os.path.join(*parts[:i])).st_mode & stat.S_IXOTH
            for i in range(1, len(parts) + 1)
        )
    except OSError:
        return False


def _close(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _Output:
    """The program's stdout and stderr, read from pipes while it runs.

    Pipes, not files: a file the harness created could be grown on the host's disk past
    `RLIMIT_FSIZE` (`fallocate` with `FALLOC_FL_KEEP_SIZE` reserves blocks without
    changing the size the limit checks). The first `output_bytes` of each are kept; a
    stream is closed once `fsize_bytes` of it were read, so the program's next write
    fails (as a file of that size would have), and nothing more is held.
    """

    def __init__(self, proc: subprocess.Popen[bytes], limits: Limits, *, straggle: bool) -> None:
        assert proc.stdout is not None
        assert proc.stderr is not None
        self.proc = proc
        self.keep, self.cap = limits.output_bytes, limits.fsize_bytes
        self.straggle = straggle
        """Whether processes may outlive the program holding the pipes (fallback)."""
        self.streams = {proc.stdout.fileno(): proc.stdout, proc.stderr.fileno(): proc.stderr}
        self.heads = {fd: bytearray() for fd in self.streams}
        self.read = dict.fromkeys(self.streams, 0)
        self.order = [proc.stdout.fileno(), proc.stderr.fileno()]
        for fd in self.streams:
            os.set_blocking(fd, False)

    def collect(self, deadline: float) -> bool:
        """Read until the program has ended and its streams are closed; False when
        `deadline` (a `perf_counter` time) came first."""
        exited = _pidfd(self.proc.pid)  # readable once the program ends; None: poll
        with selectors.DefaultSelector() as selector:
            for fd in [*self.streams, *([] if exited is None else [exited])]:
                selector.register(fd, selectors.EVENT_READ)
            running = True
            try:
                while running or self.streams:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        return False
                    if exited is None:
                        running, left = self.proc.poll() is None, min(left, 0.01)
                    for key, _ in selector.select(left):
                        if key.fd == exited:
                            selector.unregister(exited)
                            running = False
                        elif not self._read(key.fd):
                            selector.unregister(key.fd)
                    if not running and self.straggle:  # its forks would hold the pipes
                        _kill_group(self.proc.pid)
                return True
            finally:
                if exited is not None:
                    os.close(exited)

    def drain(self) -> None:
        """Read what is left in the pipes now (the program is gone), then close them."""
        for fd in list(self.streams):
            while self._read(fd):
                pass
        for stream in self.streams.values():
            stream.close()
        self.streams.clear()

    def text(self) -> tuple[str, str]:
        """The kept head of stdout and of stderr, decoded."""
        stdout, stderr = (
            bytes(self.heads[fd]).decode("utf-8", errors="replace") for fd in self.order
        )
        return stdout, stderr

    def _read(self, fd: int) -> bool:
        """Read what `fd` has; False once it is closed (end of file, or the cap)."""
        if fd not in self.streams:
            return False
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        head = self.heads[fd]
        if len(head) < self.keep:
            head += data[: self.keep - len(head)]
        self.read[fd] += len(data)
        if data and self.read[fd] < self.cap:
            return True
        self.streams.pop(fd).close()  # end of file, or enough: the program's writes fail
        return False


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` ends (Linux 5.3+), else None."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def require_isolation(sandbox: Sandbox) -> None:
    """Raise `ConfigError` unless `sandbox` got namespace isolation."""
    if sandbox.mode != "namespace":
        raise ConfigError(f"sandbox: namespace isolation unavailable ({sandbox.mode_reason})")
