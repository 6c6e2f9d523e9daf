"""Validation and sketching at the speed of the scan: per partition, then a daily drift check.

Writes a synthetic world (``stable``, ``--rows-per-day`` rows a day, two part files a day) to
the embedded stack's S3 (moto server over HTTP), then:

1. per partition (the first ``--partitions`` days), each step in a fresh subprocess so that
   peaks do not mix (peak RSS = the subprocess's VmHWM, imports included):
   - ``floor``: fetch the part files and decode every record batch of the contract's columns
     (``sources.iter_partition_batches``): what any pass over the data pays;
   - ``sketch``: ``sketch_partition`` with a ``Binning`` fitted on a reference sample;
   - ``validate``: the Arrow engine (``validation.validate_partition``), no cache;
   - ``gx``: GE's pandas validator on the whole partition, for comparison (first
     ``--gx-partitions`` days only: at 1M rows it needs minutes and GBs);
2. unless ``--skip-dag``: ``drift_monitor`` with ``dag.test()`` in this process against the
   stack (no champion: a sliding reference, so two windows of ``--days``): a cold run (no
   cached verdict or profile) ending on the day before the last, then the daily run ending on
   the last day, which sees one new day (13 of 14 current days and the whole reference seen).

Ends with ``summary: validate_x_floor=… sketch_x_floor=… peak_rss_mb=… daily_run_s=…
cold_run_s=…``: ratios are medians over the measured partitions; ``peak_rss_mb`` is the
largest peak of one validation or sketch task (the per-partition tasks of the DAG).

Run: ``.venv/bin/python bench/drift_window.py --rows-per-day 1000000`` (about 20 minutes
and 10 GB of moto's disk at 1M rows on 2 cores; ``--days 3 --rows-per-day 20000`` for a
quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
END_DATE = "2031-03-31"
SCENARIO = "stable"
KINDS = ("floor", "sketch", "validate", "gx")


# ------------------------------------------------------------------ one measurement (child)


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM). Not ``ru_maxrss``: Linux carries that
    over from the parent through fork and exec, and the parent holds the generated days."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(kind: str, day: str, bucket: str, binning_path: str | None) -> dict:
    """One step on one partition, in this (fresh) process: seconds and peak RSS."""
    from driftloop.contracts import storage
    from driftloop.drift import sketch, sources, validation

    s3 = storage.s3_client()
    partition = storage.list_partition(s3, bucket, day)
    context = None
    binning = None
    if kind == "gx":
        from driftloop.drift.expectations import make_context

        context = make_context()  # GE's import and context: not part of the pass
    elif kind == "validate":
        context = validation.ArrowSuite.from_contract()
    elif kind == "sketch":
        binning = sketch.Binning.from_dict(json.loads(Path(binning_path).read_text()))
    imported_mb = _peak_mb()
    began = time.perf_counter()
    rows, verdict = 0, None
    if kind == "floor":
        for batch in sources.iter_partition_batches(s3, bucket, partition.keys):
            rows += batch.num_rows
    elif kind == "sketch":
        profile, _ = sketch.sketch_partition(
            sources.iter_partition_batches(s3, bucket, partition.keys),
            binning=binning,
            day=day,
            seed_key=partition.content_id,
            sample_size=5_000,
        )
        rows = profile.rows
    else:
        checked = validation.validate_partition(s3, bucket, partition, context=context)
        rows, verdict = checked.row_count, checked.valid
    seconds = time.perf_counter() - began
    return {
        "kind": kind,
        "day": day,
        "rows": rows,
        "seconds": seconds,
        "peak_rss_mb": _peak_mb(),
        "imported_rss_mb": imported_mb,
        "valid": verdict,
    }


def run_child(kind: str, day: str, bucket: str, binning_path: Path) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--measure",
            kind,
            "--day",
            day,
            "--bucket",
            bucket,
            "--binning",
            str(binning_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} on {day} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ the world and the DAG


def write_world(s3, bucket: str, spec) -> list[str]:
    from driftloop.contracts import storage
    from driftloop_dev.synth.inference import partition_files

    days = []
    began = time.perf_counter()
    for index in range(spec.days):
        day = spec.date_of(index).isoformat()
        size = 0
        for key, data in partition_files(spec, index):
            storage.put_bytes(s3, bucket, key, data, "application/vnd.apache.parquet")
            size += len(data)
        storage.put_bytes(s3, bucket, storage.success_key(day), b"", "text/plain")
        days.append(day)
        print(
            f"  wrote {day}: {spec.rows_per_day:,} rows, {size / 2**20:.0f} MB "
            f"({time.perf_counter() - began:.0f} s)",
            flush=True,
        )
    return days


def fit_binning(spec, path: Path) -> None:
    from driftloop.drift.sketch import Binning
    from driftloop_dev.synth.inference import inference_table

    sample = inference_table(spec, 0).slice(0, 20_000)
    path.write_text(json.dumps(Binning.fit(sample).to_dict()))


def run_check(dag, end_day: str, window_days: int) -> tuple[float, dict[str, float], dict]:
    """One drift_monitor run with dag.test(): wall seconds, seconds per task (mapped
    instances summed), and what the daily cache did."""
    from airflow.utils.state import DagRunState

    conf = {"end_date": end_day, "window_days": window_days, "hysteresis_k": 1, "hysteresis_n": 1}
    began = time.perf_counter()
    dag_run = dag.test(run_conf=conf)
    wall = time.perf_counter() - began
    tis = dag_run.get_task_instances()
    states = {ti.task_id: ti.state for ti in tis}
    if dag_run.state != DagRunState.SUCCESS:
        raise RuntimeError(f"drift_monitor ending {end_day} did not succeed: {states}")
    per_task: dict[str, float] = {}
    for ti in tis:
        per_task[ti.task_id] = per_task.get(ti.task_id, 0.0) + float(ti.duration or 0.0)
    validated = [
        ti.xcom_pull(task_ids="validate_partition", map_indexes=ti.map_index)
        for ti in tis
        if ti.task_id == "validate_partition"
    ]
    cache = {
        "partitions": len(validated),
        "from_cache": sum(bool(v and v.get("cached")) for v in validated),
    }
    return wall, per_task, cache


def dag_runs(days: list[str], window_days: int, log_path: Path) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    from driftloop_dev.demo.terminal import output_to

    bag = DagBag(dag_folder=str(REPO / "dags"))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag("drift_monitor")
    with output_to(log_path):  # the task logs of dag.test(): a file of their own
        cold_s, cold_tasks, cold_cache = run_check(dag, days[-2], window_days)
        daily_s, daily_tasks, daily_cache = run_check(dag, days[-1], window_days)
    return {
        "cold": (cold_s, cold_tasks, cold_cache),
        "daily": (daily_s, daily_tasks, daily_cache),
    }


def print_runs(runs: dict) -> None:
    tasks = sorted(
        set(runs["cold"][1]) | set(runs["daily"][1]),
        key=lambda t: -runs["cold"][1].get(t, 0.0),
    )
    print(f"\n{'drift_monitor (dag.test)':<28} {'cold s':>9} {'daily s':>9}")
    print("-" * 48)
    for task in tasks:
        cold, daily = runs["cold"][1].get(task, 0.0), runs["daily"][1].get(task, 0.0)
        if cold >= 0.05 or daily >= 0.05:
            print(f"{task:<28} {cold:9.1f} {daily:9.1f}")
    print(f"{'whole run (wall)':<28} {runs['cold'][0]:9.1f} {runs['daily'][0]:9.1f}")
    for name in ("cold", "daily"):
        cache = runs[name][2]
        print(
            f"{name} run: {cache['partitions']} partitions validated, "
            f"{cache['from_cache']} verdicts from the cache"
        )


# ------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=14, help="window length (two windows)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions measured one by one")
    parser.add_argument("--gx-partitions", type=int, default=1, help="of those, also with GE")
    parser.add_argument("--skip-dag", action="store_true", help="no drift_monitor runs")
    # one measurement in a fresh process (used by this script itself)
    parser.add_argument("--measure", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--day", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    parser.add_argument("--binning", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.day, args.bucket, args.binning)))
        return 0

    # SIGTERM (a timeout, kill): leave through the stack's context, which stops its servers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="driftloop-drift-window-"))
    # Airflow reads its configuration when first imported: fix it before any import of it
    os.environ.update(
        {
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'airflow' / 'airflow.db'}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "GX_ANALYTICS_ENABLED": "False",
            "DRIFTLOOP_SENSOR_TIMEOUT_S": "20",
            "DRIFTLOOP_SENSOR_POKE_S": "5",
        }
    )
    (root / "airflow").mkdir(parents=True)
    from driftloop.config.settings import Settings
    from driftloop.contracts import storage
    from driftloop_dev.stack import EmbeddedStack, migrate_airflow_db
    from driftloop_dev.synth import world_spec

    # two windows and the day after (the daily run); --skip-dag: only the measured days
    n_days = max(args.partitions, 1) if args.skip_dag else 2 * args.days + 1
    spec = world_spec(
        SCENARIO,
        days=n_days,
        end_date=END_DATE,
        rows_per_day=args.rows_per_day,
        labeled_per_day=0,
    )
    with EmbeddedStack(root / "stack", REPO) as stack:
        os.environ.update(stack.env)
        if not args.skip_dag:
            migrate_airflow_db(stack.env)
        bucket = Settings.from_env().bucket
        s3 = storage.s3_client()
        print(f"writing {n_days} days of {args.rows_per_day:,} rows to s3://{bucket}/", flush=True)
        days = write_world(s3, bucket, spec)
        binning_path = root / "binning.json"
        fit_binning(spec, binning_path)

        print(f"\n{'day':<11} {'step':<9} {'rows':>10} {'s':>7} {'x floor':>8} {'peak MB':>8}")
        print("-" * 58)
        results: dict[str, list[dict]] = {k: [] for k in KINDS}
        for i, day in enumerate(days[: args.partitions]):
            kinds = [k for k in KINDS if k != "gx" or i < args.gx_partitions]
            floor = None
            for kind in kinds:
                r = run_child(kind, day, bucket, binning_path)
                results[kind].append(r)
                floor = r["seconds"] if kind == "floor" else floor
                ratio = r["seconds"] / floor if floor else float("nan")
                valid = "" if r["valid"] is None else (" valid" if r["valid"] else " INVALID")
                print(
                    f"{day:<11} {kind:<9} {r['rows']:>10,} {r['seconds']:7.2f} {ratio:8.2f} "
                    f"{r['peak_rss_mb']:8.0f}{valid}",
                    flush=True,
                )

        def median_ratio(kind: str) -> float:
            pairs = zip(results[kind], results["floor"], strict=False)
            return statistics.median(r["seconds"] / f["seconds"] for r, f in pairs)

        validate_x = median_ratio("validate")
        sketch_x = median_ratio("sketch")
        peak = max(r["peak_rss_mb"] for k in ("validate", "sketch") for r in results[k])
        imported = max(r["imported_rss_mb"] for r in results["validate"])
        print(
            f"\nmedian x floor: validate {validate_x:.2f}, sketch {sketch_x:.2f}"
            + (f", gx {median_ratio('gx'):.2f}" if results["gx"] else "")
        )
        print(
            f"peak RSS per task: validate {max(r['peak_rss_mb'] for r in results['validate']):.0f} "
            f"MB (imports alone {imported:.0f} MB), sketch "
            f"{max(r['peak_rss_mb'] for r in results['sketch']):.0f} MB"
            + (
                f", gx {max(r['peak_rss_mb'] for r in results['gx']):.0f} MB"
                if results["gx"]
                else ""
            )
        )
        daily_s = cold_s = float("nan")
        if not args.skip_dag:
            print(
                f"\ndrift_monitor with dag.test(), sliding reference: two windows of "
                f"{args.days} days; cold run ends {days[-2]}, daily run ends {days[-1]}",
                flush=True,
            )
            log_path = Path(tempfile.mkstemp(prefix="drift-window-dag-test-", suffix=".log")[1])
            print(f"(task logs: {log_path})", flush=True)
            runs = dag_runs(days, args.days, log_path)
            print_runs(runs)
            cold_s, daily_s = runs["cold"][0], runs["daily"][0]
    shutil.rmtree(root, ignore_errors=True)  # the stack's data: GBs at 1M rows a day
    print(
        f"summary: validate_x_floor={validate_x:.2f} sketch_x_floor={sketch_x:.2f} "
        f"peak_rss_mb={peak:.0f} daily_run_s={daily_s:.1f} cold_run_s={cold_s:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
