import sys

from vita.cli.tools import main

sys.exit(main())
