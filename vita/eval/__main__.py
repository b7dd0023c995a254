"""`python -m vita.eval --manifest FILE ...`: the same as `vita eval` (`vita.cli.eval`)."""

import sys

from vita.cli.eval import main

sys.exit(main())
