"""What the commands say on stderr: best effort, never at the cost of the work.

`say(text)` writes one line to stderr and flushes it; a stderr that cannot be written
(closed, a full disk, a pipe whose reader left) is skipped, and the exit code still
tells how the command went. `drop_stdout()` points stdout at /dev/null once it has
failed, so the interpreter's last flush does not print a traceback at exit.
"""

from __future__ import annotations

import contextlib
import os
import sys


def say(text: str) -> None:
    """`text` as a line on stderr, if stderr can still be written."""
    with contextlib.suppress(OSError, ValueError):  # ValueError: stderr was closed
        print(text, file=sys.stderr, flush=True)


def drop_stdout() -> None:
    """Point stdout at /dev/null (it failed: a reader that left, a full disk)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real stdout (a test's capture)
        pass
