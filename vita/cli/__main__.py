"""`python -m vita.cli ...`: the `vita` command."""

import sys

from vita.cli import main

sys.exit(main())
