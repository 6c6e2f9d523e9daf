"""bench/label_value.py's pure helpers (the bench itself trains models: run it by hand)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "label_value.py"


def _bench():
    spec = importlib.util.spec_from_file_location("label_value_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summary_line_is_one_key_value_line():
    line = _bench().summary_line(
        {"map_queue": 0.51234, "map_random": None, "budget": 30, "seconds": 812}
    )
    assert line == "summary: map_queue=0.5123 map_random=nan budget=30 seconds=812"


def test_defaults_parse_and_sizes_are_arguments():
    args = _bench().parse_args(["--budget", "12", "--seed", "3"])
    assert (args.budget, args.seed) == (12, 3)
    assert args.test_days >= 1
    assert args.frames_per_day >= args.labeled_per_day
