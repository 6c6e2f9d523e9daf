"""How long and how much memory does the rollout guard's comparison take? ``compare_stage`` on
20k and 200k paired frames.

Synthetic serving records of one stage (tests/unit/promotion/serving_synth.py: three cameras,
about six boxes per frame, two equally good models) over ``--hours`` of log time (24: a guard
period, so the intervals resample hours), ``--labeled`` of them labeled (the mAP check's
bootstrap), checked at the shipped policy's guard SLO (1000 resamples, every check on all
frames and on each camera). Each size is timed ``--repeats`` times (the best is reported),
then run once more under ``tracemalloc`` for the peak of Python and numpy allocations; the
pyarrow pool's peak and the process's max RSS come with it. A second line per size times the
same frames within 4 hours (fewer than 6 hours: the bootstrap draws frames).

Run: ``.venv/bin/python bench/rollout_evidence.py``; ends with one line
``summary: key=value ...``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' synthetic records

from driftloop.promotion.rollout_evidence import compare_stage
from tests.unit.promotion.serving_synth import World, build, slo_for


def measure(frames: int, hours: float, labeled: int, repeats: int) -> dict[str, float]:
    records, labels = build(World(frames, hours=hours, labeled=labeled, stage="guard"))
    slo = slo_for("guard")
    best = float("inf")
    comparison = None
    for _ in range(repeats):
        began = time.perf_counter()
        comparison = compare_stage(records, labels, slo, "guard")
        best = min(best, time.perf_counter() - began)
    pool = pa.default_memory_pool()
    tracemalloc.start()
    compare_stage(records, labels, slo, "guard")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "frames": comparison.frames,
        "seconds": best,
        "peak_py_mb": peak / 2**20,
        "peak_arrow_mb": pool.max_memory() / 2**20,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "records_mb": records.nbytes / 2**20,
        "verdict": comparison.verdict,
        "resampled": next(c for c in comparison.checks if c["camera"] == "all")["resampled"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--labeled", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"compare_stage, guard SLO of the shipped policy, {args.labeled} labeled frames, "
        f"best of {args.repeats}"
    )
    header = ("frames", "hours", "resampled", "seconds", "peak py MB", "peak arrow MB", "max RSS MB", "records MB", "verdict")  # fmt: skip
    print(" ".join(f"{h:>13}" for h in header))
    summary = {}
    for frames in args.frames:
        for hours in (args.hours, 4.0):
            r = measure(frames, hours, args.labeled, args.repeats)
            print(
                f"{r['frames']:>13,} {hours:>13g} {r['resampled']:>13} {r['seconds']:>13.2f} "
                f"{r['peak_py_mb']:>13.0f} {r['peak_arrow_mb']:>13.0f} {r['max_rss_mb']:>13.0f} "
                f"{r['records_mb']:>13.0f} {r['verdict']:>13}"
            )
            if hours == args.hours:
                k = f"{frames // 1000}k"
                summary[f"seconds_{k}"] = f"{r['seconds']:.2f}"
                summary[f"peak_py_mb_{k}"] = f"{r['peak_py_mb']:.0f}"
            else:
                summary[f"seconds_{frames // 1000}k_by_frame"] = f"{r['seconds']:.2f}"
    summary["max_rss_mb"] = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
    print("peak py MB: Python and numpy allocations of one compare_stage (tracemalloc);")
    print("max RSS is the process high-water mark (includes the synthetic records themselves).")
    print("summary: " + " ".join(f"{k}={v}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
