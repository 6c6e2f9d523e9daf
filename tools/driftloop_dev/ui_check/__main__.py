"""``python -m driftloop_dev.ui_check``."""

import sys

from driftloop_dev.ui_check.cli import main

sys.exit(main())
