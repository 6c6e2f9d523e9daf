"""``python -m driftloop_dev.demo``."""

import sys

from driftloop_dev.demo.cli import main

if __name__ == "__main__":  # the world's render processes import this module again (spawn)
    sys.exit(main())
