"""``python -m driftloop_dev.stack up|down|status|env``."""

import sys

from driftloop_dev.stack.cli import main

sys.exit(main())
