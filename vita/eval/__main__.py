"""`python -m vita.eval --manifest FILE ...`: the same as `vita eval`."""

import sys

from vita.eval.run import main

sys.exit(main())
