"""The `pacore` command's entry point.

It lives outside the `pacore` package, so it is imported before any of pacore's
modules: Ctrl-C while those are still importing, or while the options are parsed,
ends the command quietly (exit 130) instead of with a traceback.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130


def main() -> int:
    """Import the command line, then run it; Ctrl-C during the imports, or while the
    argument parser is built (before the command catches it itself), exits 130."""
    try:
        from pacore.cli import main as run

        return run()
    except KeyboardInterrupt:
        print("pacore: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
