"""llama.cpp's own OpenAI-compatible HTTP server (from the xllamacpp wheel), as a process.

    python -m tests.llama_server --port 8123 [--slots 4] [--ctx-per-slot 512] [--delay 2]

It serves the embedded default model (SmolLM2-135M) on 127.0.0.1 until it is killed,
and prints `listening URL` on stdout once it answers. `--delay` waits before loading
the model, so a test can start pacore first and watch it wait for the server.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time


def main() -> None:
    """Start the server and keep it serving until a signal ends the process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--ctx-per-slot", type=int, default=512)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    time.sleep(args.delay)

    import xllamacpp

    from pacore.backends.embedded import default_model_path

    params = xllamacpp.CommonParams()
    params.model.path = default_model_path()
    params.hostnames = ["127.0.0.1"]
    params.port = args.port
    params.n_parallel = args.slots
    params.n_ctx = args.ctx_per_slot * args.slots  # the total, split over the slots
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
    server = xllamacpp.Server(params)
    print(f"listening {server.listening_address}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    del server
    sys.exit(0)


if __name__ == "__main__":
    main()
