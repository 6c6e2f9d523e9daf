"""``python -m driftloop_dev.demo``."""

import sys

from driftloop_dev.demo.cli import main

sys.exit(main())
