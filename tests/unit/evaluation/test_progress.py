"""Progress lines of long evaluation loops (driftloop.evaluation.progress)."""

from __future__ import annotations

import logging

import pytest

from driftloop.evaluation.progress import ProgressLog

LOGGER = "driftloop.tests.progress"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_one_line_per_tenth_and_at_the_end(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = Clock()
    progress = ProgressLog(logging.getLogger(LOGGER), "scored", 480, "images", clock=clock)
    for done in range(1, 481):
        clock.now += 0.01
        progress.update(done)
    lines = messages(caplog)
    assert len(lines) == 10 == progress.lines
    assert lines[0] == "scored 48/480 images (10 %, 0.5 s)"
    assert lines[3].startswith("scored 192/480 images (40 %")
    assert lines[-1] == "scored 480/480 images (100 %, 4.8 s)"


def test_a_slow_loop_logs_every_few_seconds(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = Clock()
    progress = ProgressLog(
        logging.getLogger(LOGGER), "bootstrap", 10_000, "resamples", every_s=5.0, clock=clock
    )
    for done in range(1, 400):  # under 4 % done, 2 s per step
        clock.now += 2.0
        progress.update(done)
    lines = messages(caplog)
    # a line every third step (6 s >= 5 s), none for a tenth (none reached)
    assert len(lines) == 133
    assert lines[0] == "bootstrap 3/10000 resamples (0 %, 6.0 s)"


def test_small_totals_and_bad_arguments(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    progress = ProgressLog(logging.getLogger(LOGGER), "scored", 3, "images", clock=Clock())
    for done in (1, 2, 3):
        progress.update(done)
    assert messages(caplog) == [
        "scored 1/3 images (33 %, 0.0 s)",
        "scored 2/3 images (67 %, 0.0 s)",
        "scored 3/3 images (100 %, 0.0 s)",
    ]
    empty = ProgressLog(logging.getLogger(LOGGER), "scored", 0, "images", clock=Clock())
    empty.update(0)
    assert messages(caplog)[-1] == "scored 0/0 images (100 %, 0.0 s)"
    with pytest.raises(ValueError, match="total"):
        ProgressLog(logging.getLogger(LOGGER), "x", -1, "y")
    with pytest.raises(ValueError, match="steps"):
        ProgressLog(logging.getLogger(LOGGER), "x", 1, "y", steps=0)
