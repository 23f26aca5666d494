"""Benchmark the PaCoRe engine and HTTP backend against the fake OpenAI server.

The fake server (`tests/fake_server.py`) runs in its own process with a
configurable latency (time to first token + per-token time), so the client's
CPU time is measured alone. Every client run also gets a fresh process, so its
peak RSS is its own; CPU and wall time are measured around the run only
(imports and interpreter start-up excluded; those are reported separately).

    .venv/bin/python benchmarks/bench_engine.py            # everything (--all)
    .venv/bin/python benchmarks/bench_engine.py --nonstream --faults

Scenarios:
  startup    `python -c "import pacore.cli"`, `pacore --help` (median wall time)
  nonstream  64 problems x medium ([16] then 1), n honoured, no streaming
  stream     the same, streamed (server sends --chunk-tokens words per delta), then
             again with --fine-chunk-tokens (1 word per event, informational)
  batch      10,000 problems x low through `pacore run --input/--output` (a subprocess)
  faults     nonstream with 5% of requests answered HTTP 500 (backend defaults),
             (optionally rerun with another --fault-backoff-base)
  no-n       nonstream against a server that ignores `n` (informational)

Prints a markdown table (scenario, metric, measured, target, PASS/MISSED/info).
Exits non-zero only when something breaks, never for a missed target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MODEL = "fake-model"
SCENARIOS = ("startup", "nonstream", "stream", "batch", "faults", "no-n")


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    scenario: str
    metric: str
    measured: str
    target: str = "—"
    ok: bool | None = None  # None: informational

    @property
    def verdict(self) -> str:
        if self.ok is None:
            return "info"
        return "PASS" if self.ok else "MISSED"


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(
        self,
        scenario: str,
        metric: str,
        measured: str,
        target: str = "—",
        ok: bool | None = None,
    ) -> None:
        self.rows.append(Row(scenario, metric, measured, target, ok))

    def markdown(self) -> str:
        lines = [
            "| scenario | metric | measured | target | result |",
            "|---|---|---|---|---|",
        ]
        for r in self.rows:
            lines.append(f"| {r.scenario} | {r.metric} | {r.measured} | {r.target} | {r.verdict} |")
        return "\n".join(lines)


# ------------------------------------------------------------------------- processes


def _rusage_cpu(ru: Any) -> float:
    return float(ru.ru_utime + ru.ru_stime)


def reap(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, Any]:
    """Wait for `proc` with os.wait4 (to get its own rusage); SIGKILL it after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            pid, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.005)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, ru


@contextlib.contextmanager
def killed_on_error(proc: subprocess.Popen[Any]) -> Iterator[subprocess.Popen[Any]]:
    """Kill and reap `proc` if the block is left by an exception (Ctrl-C included)."""
    try:
        yield proc
    except BaseException:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(ChildProcessError):
                reap(proc, timeout=5)
        raise


class FakeServerProcess:
    """`python -m tests.fake_server` in a subprocess; always killed on exit."""

    def __init__(self, args: Sequence[str], workdir: Path) -> None:
        self.args = list(args)
        self.stats_file = workdir / f"server-stats-{time.monotonic_ns()}.json"
        self.stderr_file = workdir / f"server-stderr-{time.monotonic_ns()}.txt"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.stats: dict[str, Any] = {}
        self.cpu_s = 0.0

    def __enter__(self) -> FakeServerProcess:
        cmd = [PYTHON, "-m", "tests.fake_server", "--port", "0", *self.args]
        cmd += ["--stats-file", str(self.stats_file)]
        with self.stderr_file.open("wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err)
        try:
            assert self.proc.stdout is not None
            ready, _, _ = select.select([self.proc.stdout], [], [], 30)
            line = self.proc.stdout.readline().decode().strip() if ready else ""
            if not line.startswith("http"):
                raise RuntimeError(f"fake server did not start: {self._stderr()}")
            self.url = line
        except BaseException:
            self._kill()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        code, ru = reap(proc, timeout=15)
        if proc.stdout is not None:
            proc.stdout.close()
        self.cpu_s = _rusage_cpu(ru)
        if not self.stats_file.exists():
            raise RuntimeError(f"fake server exited {code} without stats: {self._stderr()}")
        self.stats = json.loads(self.stats_file.read_text())

    def _kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            reap(proc, timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()

    def _stderr(self) -> str:
        try:
            return self.stderr_file.read_text()[-2000:]
        except OSError:
            return ""


def server_args(opts: argparse.Namespace, **extra: Any) -> list[str]:
    args = [
        "--ttft",
        str(extra.get("ttft", opts.ttft)),
        "--per-token",
        str(extra.get("per_token", opts.per_token)),
        "--tokens",
        str(extra.get("tokens", opts.tokens)),
        # It plays vLLM (one usage for a whole n > 1 answer), and says so in /models.
        "--owned-by",
        "vllm",
    ]
    if extra.get("chunk_tokens"):
        args += ["--chunk-tokens", str(extra["chunk_tokens"])]
    if extra.get("fail_rate"):
        args += ["--fail-rate", str(extra["fail_rate"]), "--fail-seed", str(extra["fail_seed"])]
    if extra.get("no_n"):
        args.append("--no-n")
    return args


_IDLE_SERVER_CPU: list[float] = []


def idle_server_cpu(workdir: Path) -> float:
    """CPU seconds of a fake server that starts and stops without a request
    (median of 3, cached): its start-up, subtracted from the servers' totals."""
    if not _IDLE_SERVER_CPU:
        samples = []
        for _ in range(3):
            with FakeServerProcess([], workdir) as server:
                pass
            samples.append(server.cpu_s)
        _IDLE_SERVER_CPU.append(statistics.median(samples))
    return _IDLE_SERVER_CPU[0]


def server_cpu_text(cpu: float, wall: float, workdir: Path) -> str:
    idle = idle_server_cpu(workdir)
    run = max(cpu - idle, 0.0)
    return f"≈{fmt_s(run)} ({run / wall:.0%} of wall; process total {cpu:.2f} s)"


def run_client(spec: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
    """Run one engine client in a fresh process (see `client_main`); its JSON report."""
    cmd = [PYTHON, str(Path(__file__).resolve()), "--_client", json.dumps(spec)]
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with killed_on_error(proc):
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"client timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"client exited {proc.returncode}: {err.strip()[-2000:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


# ------------------------------------------------------------------- the client child


def client_main(spec: dict[str, Any]) -> int:
    """The client process: imports first, then measures one `solve_many` run only."""
    import asyncio
    import resource
    from collections import Counter

    from pacore.backends.openai_compat import OpenAIBackend
    from pacore.config import PacoreConfig
    from pacore.engine import Engine, make_problem

    problems = [
        make_problem(f"Problem {i}: what is 6 times 7? Think it through.", problem_id=f"p{i}")
        for i in range(spec["problems"])
    ]
    config = PacoreConfig.from_preset(
        spec["preset"], concurrency=spec["concurrency"], stream=spec["stream"]
    )
    backend_options: dict[str, Any] = {"concurrency": spec["concurrency"]}
    if spec.get("backoff_base") is not None:
        backend_options["backoff_base"] = spec["backoff_base"]
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    engine_requests = 0
    max_requests = 0

    async def run() -> None:
        nonlocal engine_requests, max_requests
        backend = OpenAIBackend(spec["url"], model=MODEL, **backend_options)
        engine = Engine(backend, config)
        try:
            await backend.start()  # as every pacore command does: reads /models
            async for result in engine.solve_many(problems):
                statuses[result.status] += 1
                engine_requests += result.requests
                max_requests = max(max_requests, result.requests)
                latencies.append(result.latency_s)
        finally:
            await backend.aclose()

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    asyncio.run(run())
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "wall_s": wall,
        "cpu_s": cpu,
        "user_s": ru1.ru_utime - ru0.ru_utime,
        "sys_s": ru1.ru_stime - ru0.ru_stime,
        "maxrss_kb": ru1.ru_maxrss,
        "statuses": dict(statuses),
        "engine_requests": engine_requests,
        "max_problem_requests": max_requests,
        "rounds": len(config.all_widths),
        "max_problem_latency_s": max(latencies, default=0.0),
    }
    print(json.dumps(report))
    return 0


# ------------------------------------------------------------------------- scenarios


def per_request_latency(opts: argparse.Namespace) -> float:
    return float(opts.ttft + opts.tokens * opts.per_token)


def _words(n: int) -> str:
    return f"{n} word" if n == 1 else f"{n} words"


def fmt_s(x: float) -> str:
    return f"{x:.3f} s"


def fmt_mb(kb: float) -> str:
    return f"{kb / 1024:.1f} MB"


def engine_scenario(
    opts: argparse.Namespace,
    workdir: Path,
    *,
    stream: bool = False,
    fail_rate: float = 0.0,
    fail_seed: int = 0,
    no_n: bool = False,
    backoff_base: float | None = None,
    chunk_tokens: int | None = None,
) -> dict[str, Any]:
    """One client run against a fresh server; client report + server stats."""
    extra: dict[str, Any] = {"fail_rate": fail_rate, "fail_seed": fail_seed, "no_n": no_n}
    if stream:
        extra["chunk_tokens"] = chunk_tokens or opts.chunk_tokens
    with FakeServerProcess(server_args(opts, **extra), workdir) as server:
        spec = {
            "url": server.url,
            "problems": opts.problems,
            "preset": "medium",
            "stream": stream,
            "concurrency": opts.concurrency,
            "backoff_base": backoff_base,
        }
        client = run_client(spec)
    client["server"] = server.stats
    client["server_cpu_s"] = server.cpu_s
    client["server_run_cpu_s"] = server.cpu_s - idle_server_cpu(workdir)
    client["ideal_s"] = client["rounds"] * per_request_latency(opts)
    client["concurrency"] = opts.concurrency
    return client


def report_engine(
    report: Report,
    name: str,
    res: dict[str, Any],
    workdir: Path,
    *,
    cpu_target: float | None,
    wall_factor: float | None = 1.5,
    check_requests: bool = True,
) -> None:
    srv = res["server"]
    ideal = res["ideal_s"]
    ratio = res["wall_s"] / ideal
    if wall_factor is not None:
        report.add(
            name,
            "wall time (ideal)",
            f"{fmt_s(res['wall_s'])} ({fmt_s(ideal)}) = {ratio:.2f}×",
            f"≤ {wall_factor:g}× ideal",
            ratio <= wall_factor,
        )
    else:
        report.add(
            name, "wall time (ideal)", f"{fmt_s(res['wall_s'])} ({fmt_s(ideal)}) = {ratio:.2f}×"
        )
    report.add(
        name,
        "client CPU (user+sys)",
        f"{fmt_s(res['cpu_s'])} ({res['user_s']:.2f}+{res['sys_s']:.2f})",
        f"≤ {cpu_target:g} s" if cpu_target is not None else "—",
        res["cpu_s"] <= cpu_target if cpu_target is not None else None,
    )
    report.add(name, "client peak RSS", fmt_mb(res["maxrss_kb"]))
    expected = problems_seen(res) * res["rounds"]
    report.add(
        name,
        "requests (server)",
        f"{srv['requests']} (engine counted {res['engine_requests']})",
        f"== {expected}" if check_requests else "—",
        srv["requests"] == expected if check_requests else None,
    )
    report_connections(report, name, srv, res["concurrency"])
    bad = {k: v for k, v in res["statuses"].items() if k != "ok"}
    if bad:
        report.add(name, "problems not ok", json.dumps(bad), "0", False)
    report.add(
        name,
        "fake server CPU, less its start-up",
        server_cpu_text(res["server_cpu_s"], res["wall_s"], workdir),
    )


def report_connections(report: Report, name: str, srv: dict[str, Any], limit: int) -> None:
    """Connections must be bounded by concurrency, not grow with requests. The bound is
    the larger of the server's peak of requests in flight and the client's limit: with
    near-zero latency the server may never see all `limit` requests at once even though
    the pool (rightly) opened `limit` connections. One more is allowed for the `/models`
    probe of `start()`, which runs before the run's requests and whose connection the
    pool does not always get to reuse."""
    bound = max(srv["peak_concurrency"], limit) + 1
    report.add(
        name,
        "TCP connections (server peak concurrency)",
        f"{srv['connections']} ({srv['peak_concurrency']})",
        f"≤ max(peak, limit {limit}) + 1 probe = {bound}",
        srv["connections"] <= bound,
    )


def problems_seen(res: dict[str, Any]) -> int:
    return int(sum(res["statuses"].values()))


def scenario_startup(opts: argparse.Namespace, report: Report) -> None:
    reps = opts.startup_reps
    pacore_exe = Path(PYTHON).parent / "pacore"
    cmds = {
        "`python -c pass` (interpreter only)": [PYTHON, "-c", "pass"],
        '`python -c "import pacore.cli"`': [PYTHON, "-c", "import pacore.cli"],
        "`pacore --help`": [str(pacore_exe), "--help"]
        if pacore_exe.exists()
        else [PYTHON, "-m", "pacore.cli", "--help"],
        "`import pacore.engine, pacore.backends.openai_compat` (what a run loads)": [
            PYTHON,
            "-c",
            "import pacore.engine, pacore.backends.openai_compat",
        ],
    }
    raw: dict[str, Any] = {}
    for label, cmd in cmds.items():
        times = []
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)  # warm the page cache
        for _ in range(reps):
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        raw[label] = times
        report.add("startup", f"{label}, median of {reps}", fmt_s(med))
    report.raw["startup"] = raw


def scenario_nonstream(opts: argparse.Namespace, report: Report, workdir: Path) -> float:
    res = engine_scenario(opts, workdir)
    report.raw["nonstream"] = res
    report_engine(report, "1 nonstream", res, workdir, cpu_target=0.3)
    return float(res["wall_s"])


def scenario_stream(opts: argparse.Namespace, report: Report, workdir: Path) -> None:
    res = engine_scenario(opts, workdir, stream=True)
    report.raw["stream"] = res
    # The target here is client CPU; wall time is shown for information: the 64 streams
    # run in lock-step, so each chunk step is a burst for both the client and the
    # single-process fake server (with 1-word chunks the server is the bottleneck).
    report_engine(
        report,
        f"2 stream ({_words(opts.chunk_tokens)}/chunk)",
        res,
        workdir,
        cpu_target=1.0,
        wall_factor=None,
    )
    fine = opts.fine_chunk_tokens
    if fine > 0 and fine != opts.chunk_tokens:
        # Real servers (vLLM, llama.cpp) send about one token per event: informational.
        res = engine_scenario(opts, workdir, stream=True, chunk_tokens=fine)
        report.raw["stream-fine"] = res
        name = f"2b stream ({_words(fine)}/chunk, as real servers)"
        report_engine(report, name, res, workdir, cpu_target=None, wall_factor=None)


def scenario_faults(
    opts: argparse.Namespace, report: Report, workdir: Path, baseline: float
) -> None:
    name = f"4 faults {opts.fail_rate:.0%} HTTP 500"
    limit = 2 * baseline
    variants: list[tuple[str, float | None]] = [("backend defaults", None)]
    if opts.fault_backoff_base > 0:
        label = f"investigation: backoff_base {opts.fault_backoff_base:g} s"
        variants.append((label, opts.fault_backoff_base))
    report.raw["faults"] = {"baseline_wall_s": baseline}
    for label, base in variants:
        runs = []
        for seed in range(opts.fault_runs):
            res = engine_scenario(
                opts, workdir, fail_rate=opts.fail_rate, fail_seed=seed, backoff_base=base
            )
            runs.append(res)
        report.raw["faults"][label] = runs
        walls = [r["wall_s"] for r in runs]
        med, worst = statistics.median(walls), max(walls)
        target = f"≤ 2× nonstream = {limit:.2f} s"
        report.add(
            name,
            f"{label}: wall, median of {len(runs)} seeds",
            f"{fmt_s(med)} = {med / baseline:.2f}× nonstream",
            target,
            med <= limit,
        )
        report.add(
            name,
            f"{label}: wall, worst seed",
            f"{fmt_s(worst)} ({', '.join(f'{w:.2f}' for w in walls)})",
            target,
            worst <= limit,
        )
        fails = [r["server"]["statuses"].get("500", 0) for r in runs]
        reqs = [r["server"]["requests"] for r in runs]
        report.add(
            name,
            f"{label}: requests (HTTP 500s) per seed",
            ", ".join(f"{q} ({f})" for q, f in zip(reqs, fails, strict=True)),
        )
        worst_chain = max(r["max_problem_requests"] for r in runs)
        report.add(
            name,
            f"{label}: most requests by one problem",
            f"{worst_chain} (fault-free: {runs[0]['rounds']})",
        )
        cpus = [r["cpu_s"] for r in runs]
        report.add(name, f"{label}: client CPU, max", fmt_s(max(cpus)))
        bad = [r["statuses"] for r in runs if set(r["statuses"]) != {"ok"}]
        if bad:
            report.add(name, f"{label}: problems not ok", json.dumps(bad), "0", False)


def scenario_no_n(opts: argparse.Namespace, report: Report, workdir: Path) -> None:
    res = engine_scenario(opts, workdir, no_n=True)
    report.raw["no-n"] = res
    report_engine(
        report,
        "5 server ignores n",
        res,
        workdir,
        cpu_target=None,
        wall_factor=None,
        check_requests=False,
    )
    widths = (16, 1)
    # A probe with n=16 gets 1 choice, then 15 single requests, then the width-1 round.
    expected = opts.problems * sum(widths)
    report.add(
        "5 server ignores n",
        "requests if every sample is its own request",
        f"{expected} (each problem's n=16 probe returns 1 sample, then 15 singles)",
    )
    waves = expected / opts.concurrency
    report.add(
        "5 server ignores n",
        "concurrency-bound ideal",
        f"{fmt_s(waves * per_request_latency(opts))} ({waves:.0f} waves of "
        f"{opts.concurrency} × {per_request_latency(opts):.2f} s)",
    )


def scenario_batch(opts: argparse.Namespace, report: Report, workdir: Path) -> None:
    name = f"3 batch {opts.batch_problems:,} × low (CLI)"
    inp = workdir / "problems.jsonl"
    out = workdir / "results.jsonl"
    with inp.open("w", encoding="utf-8") as fh:
        for i in range(opts.batch_problems):
            record = {"id": f"q{i}", "question": f"Problem {i}: what is {i} plus 42?"}
            fh.write(json.dumps(record) + "\n")
    pacore_exe = Path(PYTHON).parent / "pacore"
    prog = [str(pacore_exe)] if pacore_exe.exists() else [PYTHON, "-m", "pacore.cli"]
    extra = {"ttft": opts.batch_ttft, "per_token": 0.0, "tokens": opts.batch_tokens}
    with FakeServerProcess(server_args(opts, **extra), workdir) as server:
        cmd = [
            *prog,
            "run",
            "--input",
            str(inp),
            "--output",
            str(out),
            "--backend",
            server.url,
            "--model",
            MODEL,
            "--preset",
            "low",
            "--concurrency",
            str(opts.concurrency),
            "--quiet",
        ]
        err_file = workdir / "batch-stderr.txt"
        t0 = time.perf_counter()
        with err_file.open("wb") as err:
            proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=err)
        with killed_on_error(proc):
            code, ru = reap(proc, timeout=600)
        wall = time.perf_counter() - t0
        if code != 0:
            raise RuntimeError(f"pacore run exited {code}: {err_file.read_text()[-2000:]}")
    srv = server.stats
    lines = 0
    statuses: dict[str, int] = {}
    with out.open(encoding="utf-8") as fh:
        for line in fh:
            lines += 1
            status = json.loads(line)["status"]
            statuses[status] = statuses.get(status, 0) + 1
    cpu = _rusage_cpu(ru)
    report.raw["batch"] = {
        "wall_s": wall,
        "cpu_s": cpu,
        "maxrss_kb": ru.ru_maxrss,
        "server": srv,
        "server_cpu_s": server.cpu_s,
        "lines": lines,
        "statuses": statuses,
        "output_bytes": out.stat().st_size,
    }
    n = opts.batch_problems
    rss_mb = ru.ru_maxrss / 1024
    report.add(
        name, "client peak RSS (own process)", fmt_mb(ru.ru_maxrss), "< 300 MB", rss_mb < 300
    )
    report.add(
        name,
        "wall time, whole `pacore run` process",
        f"{fmt_s(wall)} ({n / wall:,.0f} problems/s)",
    )
    report.add(
        name,
        "client CPU, whole process (incl. start-up)",
        f"{fmt_s(cpu)} ({1000 * cpu / n:.2f} ms/problem)",
    )
    report.add(
        name,
        "requests (server)",
        f"{srv['requests']}",
        f"== {2 * n}",
        srv["requests"] == 2 * n,
    )
    report_connections(report, name, srv, opts.concurrency)
    report.add(
        name,
        "result lines written (all ok)",
        f"{lines} ({json.dumps(statuses)}), {out.stat().st_size / 1e6:.1f} MB",
        f"{n}",
        lines == n and statuses == {"ok": n},
    )
    report.add(
        name, "fake server CPU, less its start-up", server_cpu_text(server.cpu_s, wall, workdir)
    )


# ------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Benchmark the PaCoRe engine against the fake OpenAI server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sel = p.add_argument_group("scenarios (default: --all)")
    sel.add_argument("--all", action="store_true", help="every scenario")
    sel.add_argument("--startup", action="store_true", help="import / --help wall time")
    sel.add_argument("--nonstream", action="store_true", help="1: problems × medium")
    sel.add_argument("--stream", action="store_true", help="2: the same, streamed")
    sel.add_argument("--batch", action="store_true", help="3: big batch through the CLI")
    sel.add_argument("--faults", action="store_true", help="4: 5%% HTTP 500 (runs 1 too)")
    sel.add_argument("--no-n", action="store_true", help="5: server ignores n")

    lat = p.add_argument_group("latency and load")
    lat.add_argument("--ttft", type=float, default=0.2, help="server time to first token, s")
    lat.add_argument("--per-token", type=float, default=0.002, help="server s per token")
    lat.add_argument("--tokens", type=int, default=100, help="words per generated sample")
    lat.add_argument("--problems", type=int, default=64, help="problems in scenarios 1, 2, 4, 5")
    lat.add_argument("--concurrency", type=int, default=64, help="client requests in flight")
    lat.add_argument("--chunk-tokens", type=int, default=8, help="words per streamed delta")
    lat.add_argument(
        "--fine-chunk-tokens",
        type=int,
        default=1,
        help="scenario 2 also runs (informational) with this chunk size (0: skip)",
    )
    lat.add_argument("--batch-problems", type=int, default=10_000, help="problems in scenario 3")
    lat.add_argument("--batch-ttft", type=float, default=0.001, help="scenario 3 latency, s")
    lat.add_argument("--batch-tokens", type=int, default=20, help="scenario 3 sample words")
    lat.add_argument("--fail-rate", type=float, default=0.05, help="scenario 4 HTTP 500 rate")
    lat.add_argument("--fault-runs", type=int, default=5, help="scenario 4 runs (server seeds)")
    lat.add_argument(
        "--fault-backoff-base",
        type=float,
        default=0.0,
        help="scenario 4 also reruns with this backoff_base (0: skip)",
    )
    lat.add_argument("--startup-reps", type=int, default=5, help="repetitions per start-up cmd")
    p.add_argument("--json-out", type=Path, help="also write the raw measurements here")
    p.add_argument("--_client", help=argparse.SUPPRESS)
    return p


def selected(opts: argparse.Namespace) -> list[str]:
    chosen = [s for s in SCENARIOS if getattr(opts, s.replace("-", "_"))]
    return list(SCENARIOS) if opts.all or not chosen else chosen


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pacore-bench-") as d:
        yield Path(d)


def main(argv: Sequence[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    if opts._client:
        return client_main(json.loads(opts._client))
    # SIGTERM unwinds like Ctrl-C, so every `finally` kills its server and client.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    report = Report()
    load = os.getloadavg()
    started = time.perf_counter()
    which = selected(opts)
    print(f"scenarios: {', '.join(which)}", file=sys.stderr)
    baseline: float | None = None
    with _workdir() as workdir:
        for name in which:
            t0 = time.perf_counter()
            print(f"running {name} ...", file=sys.stderr, flush=True)
            try:
                baseline = run_scenario(name, opts, report, workdir, baseline)
            except Exception as exc:  # report it, go on, exit non-zero at the end
                report.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                report.add(name, "ERROR", f"{type(exc).__name__}: {exc}".replace("|", "/"))
            print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print_summary(opts, report, load, started)
    return 1 if report.errors else 0


def run_scenario(
    name: str, opts: argparse.Namespace, report: Report, workdir: Path, baseline: float | None
) -> float | None:
    """Run one scenario; return the non-stream baseline once it is measured."""
    if name == "startup":
        scenario_startup(opts, report)
    elif name == "nonstream":
        baseline = scenario_nonstream(opts, report, workdir)
    elif name == "stream":
        scenario_stream(opts, report, workdir)
    elif name == "batch":
        scenario_batch(opts, report, workdir)
    elif name == "faults":
        if baseline is None:
            baseline = scenario_nonstream(opts, report, workdir)
        scenario_faults(opts, report, workdir, baseline)
    elif name == "no-n":
        scenario_no_n(opts, report, workdir)
    return baseline


def print_summary(
    opts: argparse.Namespace, report: Report, load: tuple[float, float, float], started: float
) -> None:
    """The report table, the run's conditions, missed targets and errors."""
    print(report.markdown())
    print(
        f"\nlatency: ttft {opts.ttft:g} s + {opts.tokens} tokens × {opts.per_token:g} s "
        f"= {per_request_latency(opts):.3f} s per request; concurrency {opts.concurrency}; "
        f"total bench time {time.perf_counter() - started:.1f} s; "
        f"load average before the run {load[0]:.2f} (1 min), {os.cpu_count()} CPUs"
    )
    missed = [r for r in report.rows if r.ok is False]
    if missed:
        print(
            f"MISSED: {len(missed)} target(s): "
            + "; ".join(f"{r.scenario} / {r.metric}" for r in missed)
        )
    if opts.json_out:
        opts.json_out.write_text(json.dumps(report.raw, indent=2, default=str))
    for e in report.errors:
        print(f"ERROR: {e}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
