"""`python -m pacore`."""

import sys

from pacore.cli import main

sys.exit(main())
