"""Progress lines for long evaluation loops, through :mod:`logging` (so they land in the
Airflow task log): "scored 120/480 images (25 %, 14.2 s)".

A line is logged when the work crosses the next tenth of its total, when ``every_s`` seconds
have passed since the last line (a slow step still shows it is alive), and at the end; never
more than once per update.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable


class ProgressLog:
    """Logs ``"<verb> <done>/<total> <unit> (<percent> %, <seconds> s)"`` at INFO."""

    def __init__(
        self,
        logger: logging.Logger,
        verb: str,
        total: int,
        unit: str,
        *,
        steps: int = 10,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total < 0:
            raise ValueError(f"progress total must be >= 0, got {total}")
        if steps < 1:
            raise ValueError(f"progress steps must be >= 1, got {steps}")
        self.logger = logger
        self.verb = verb
        self.total = int(total)
        self.unit = unit
        self.steps = steps
        self.every_s = every_s
        self._clock = clock
        self._began = clock()
        self._last_line = self._began
        self._next_step = 1  # the next tenth (of ``steps``) that earns a line
        self.lines = 0

    def _step_of(self, done: int) -> int:
        return self.steps if self.total == 0 else math.floor(done * self.steps / self.total)

    def update(self, done: int) -> None:
        """Record that ``done`` of ``total`` units are finished."""
        now = self._clock()
        step = self._step_of(done)
        finished = done >= self.total
        if step >= self._next_step or finished or now - self._last_line >= self.every_s:
            self._next_step = max(self._next_step, step + 1)
            self._last_line = now
            self.lines += 1
            share = 100.0 if self.total == 0 else 100.0 * done / self.total
            self.logger.info(
                "%s %d/%d %s (%.0f %%, %.1f s)",
                self.verb,
                done,
                self.total,
                self.unit,
                share,
                now - self._began,
            )
