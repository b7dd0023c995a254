"""`python -m vita.demo` (`make demo`): the main job, vita-mini on the bundled examples (`vita.cli.demo`)."""

import sys

from vita.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
