"""Memory and speed of window profiling as the window grows: memory must not grow with rows.

Profiles windows of more and more days (same rows per day) partition by partition, the way drift_monitor
does (one day's Parquet in memory at a time, record batches of 64k rows, sketches merged),
and prints peak memory next to rows. Run: ``.venv/bin/python bench/drift_memory.py``.
"""

from __future__ import annotations

import argparse
import gc
import io
import resource
import time
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.drift.compare import compare_windows
from driftloop.drift.samples import merge_samples
from driftloop.drift.sketch import Binning, merge_profiles, sketch_partition
from driftloop_dev.synth import inference_table, world_spec


def day_parquet(spec, day_index: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(inference_table(spec, day_index), sink)
    return sink.getvalue()


def profile_window(spec, first_day: int, days: int, binning, sample_size: int):
    profiles, samples = [], []
    for day in range(first_day, first_day + days):
        data = day_parquet(spec, day)  # what one S3 GET would hold
        batches = pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=65_536)
        profile, sample = sketch_partition(
            batches, binning=binning, day=str(day), seed_key=f"{day}", sample_size=sample_size
        )
        profiles.append(profile)
        samples.append(sample)
        # keep only the merged state, as the DAG does through its cache
        profiles = [merge_profiles(profiles)]
        samples = [merge_samples(samples, sample_size)]
        del data, batches
    return profiles[0], samples[0]


def measure(days: int, rows_per_day: int, sample_size: int) -> dict:
    spec = world_spec(
        "abrupt",
        days=2 * days,
        drift_day=days + days // 2,
        end_date="2026-01-28",
        rows_per_day=rows_per_day,
        labeled_per_day=0,
    )
    reference_sample = inference_table(spec, 0).slice(0, sample_size)
    binning = Binning.fit(reference_sample)
    gc.collect()
    pool = pa.default_memory_pool()
    tracemalloc.start()
    began = time.perf_counter()
    reference, ref_sample = profile_window(spec, 0, days, binning, sample_size)
    current, cur_sample = profile_window(spec, days, days, binning, sample_size)
    profiled = time.perf_counter() - began
    comparisons = compare_windows(reference, current, ref_sample, cur_sample)
    total = time.perf_counter() - began
    _, peak_python = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    brightness = next(c for c in comparisons if c.feature == "brightness")
    return {
        "rows": reference.rows + current.rows,
        "profile_s": profiled,
        "total_s": total,
        "rows_per_s": (reference.rows + current.rows) / profiled,
        "peak_python_mb": peak_python / 2**20,
        "peak_arrow_mb": pool.max_memory() / 2**20,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "psi_brightness": brightness.statistics["psi"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, nargs="+", default=[7, 14, 28, 56])
    parser.add_argument("--rows-per-day", type=int, default=20_000)
    parser.add_argument("--sample-size", type=int, default=5_000)
    args = parser.parse_args()
    print(f"two windows of N days x {args.rows_per_day:,} rows/day, sample {args.sample_size:,}")
    print(
        f"{'days':>5} {'rows (2 windows)':>16} {'profile s':>10} {'rows/s':>10} {'peak py MB':>11} {'peak arrow MB':>14} {'max RSS MB':>11} {'PSI bright':>11}"
    )
    for days in args.days:
        r = measure(days, args.rows_per_day, args.sample_size)
        print(
            f"{days:>5} {r['rows']:>16,} {r['profile_s']:>10.1f} {r['rows_per_s']:>10,.0f} {r['peak_python_mb']:>11.1f} "
            f"{r['peak_arrow_mb']:>14.1f} {r['max_rss_mb']:>11.0f} {r['psi_brightness']:>11.3f}"
        )
    print("peak py / arrow MB track one partition plus the bounded sample, not the number of days;")
    print(
        "max RSS is the process high-water mark (includes imports and the generator's own tables)."
    )


if __name__ == "__main__":
    main()
