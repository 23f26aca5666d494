"""`python -m pacore.cli`: the same as the `pacore` command."""

import sys

from pacore.cli import main

sys.exit(main())
