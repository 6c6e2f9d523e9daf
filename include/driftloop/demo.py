"""``make demo``: the drift monitor end to end on the embedded stack.

1. start (or reuse) the embedded stack under ``.stack/``: moto S3, mlflow server, pushgateway;
2. write an ``abrupt`` synthetic world: 42 days, a lighting drop and a new camera from day 28;
3. run ``drift_monitor`` with ``dag.test()`` for a day before the drift and for the first
   daily checks after it, exactly as the scheduler would run them day after day;
4. print each check's verdict next to the world's ground truth, and where to look.

The stack is stopped at the end unless it was already running (``make up``) or ``--keep``
is given, so the runs stay browsable in the Airflow and MLflow UIs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from driftloop.stack import DEFAULT_REPO, EmbeddedStack, migrate_airflow_db


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m driftloop.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_REPO / ".stack", help="stack folder (default: .stack)"
    )
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument(
        "--end-date", default=None, help="last day of the world (default: yesterday UTC)"
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    return parser.parse_args(argv)


def _check_days(drift_start: date) -> list[tuple[str, str]]:
    """Days to check, with what an operator should expect from each."""
    return [
        ((drift_start - timedelta(days=1)).isoformat(), "before the drift"),
        (
            (drift_start + timedelta(days=4)).isoformat(),
            "5 drifted days in the window: first breach",
        ),
        ((drift_start + timedelta(days=5)).isoformat(), "second daily breach: k=2 of n=3"),
    ]


@contextlib.contextmanager
def _output_to(path: Path):
    """Send this process's stdout/stderr (file descriptors too: Airflow's task loggers write
    there) to ``path`` while ``dag.test()`` runs, so the terminal shows the demo, not the logs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _run_check(end_day: str, log_path: Path) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    from driftloop.monitor import report_prefix
    from driftloop.settings import Settings
    from driftloop.storage import get_json, s3_client

    bag = DagBag(dag_folder=str(DEFAULT_REPO / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    began = time.monotonic()
    with _output_to(log_path):
        dag_run = bag.dags["drift_monitor"].test(run_conf={"end_date": end_day})
    seconds = time.monotonic() - began
    if str(dag_run.state) != "success":
        failed = [ti.task_id for ti in dag_run.get_task_instances() if ti.state == "failed"]
        raise SystemExit(
            f"drift_monitor for {end_day} ended {dag_run.state}; failed tasks: {failed}"
        )
    decision = get_json(
        s3_client(), Settings.from_env().bucket, report_prefix(dag_run.run_id) + "decision.json"
    )
    mlflow_url = next(
        (
            ti.xcom_pull(task_ids="log_to_mlflow")["url"]
            for ti in dag_run.get_task_instances()
            if ti.task_id == "log_to_mlflow"
        ),
        None,
    )
    return {
        "run_id": dag_run.run_id,
        "seconds": seconds,
        "decision": decision,
        "mlflow_url": mlflow_url,
    }


def _print_table(rows: list[dict], truth) -> None:
    print()
    print(
        f"ground truth: scenario {truth.scenario}, drift from {truth.drift_start_date} in {', '.join(truth.drifted_columns)}"
    )
    print()
    header = (
        f"{'window end':<12} {'expected':<44} {'severity':<9} {'top effects (now)':<46} {'time':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        decision = row["decision"]
        breaches = sorted(
            (f for f in decision["features"] if f["level_now"] != "none"),
            key=lambda f: -f["effect"],
        )[:3]
        effects = (
            ", ".join(f"{f['feature']} {f['method']}={f['effect']:.2f}" for f in breaches) or "-"
        )
        print(
            f"{decision['window']['end']:<12} {row['expected']:<44} {decision['severity']:<9} {effects:<46} {row['seconds']:5.0f}s"
        )
    last = rows[-1]["decision"]
    print()
    print(f"drifted features (critical check): {', '.join(last['drifted_features']) or '-'}")
    print(f"Evidently report: {last['report']['html_uri']}")
    print(f"MLflow run:       {rows[-1]['mlflow_url']}")


def main(argv=None) -> int:
    args = parse_args(argv)
    stack = EmbeddedStack(args.root, DEFAULT_REPO).start()
    already_running = stack.reused
    os.environ.update(stack.env)
    migrate_airflow_db(stack.env)
    try:
        from driftloop.settings import Settings
        from driftloop.storage import s3_client
        from driftloop.synth import S3Sink, generate_world

        end = args.end_date or (date.today() - timedelta(days=1)).isoformat()
        truth = generate_world(
            S3Sink(s3_client(), Settings.from_env().bucket),
            "abrupt",
            days=42,
            drift_day=28,
            end_date=end,
            rows_per_day=args.rows_per_day,
            labeled_per_day=8,
        )
        rows = []
        for day, expected in _check_days(date.fromisoformat(truth.drift_start_date)):
            print(f"drift_monitor: checking the window ending {day} ({expected}) ...", flush=True)
            rows.append(
                {"expected": expected, **_run_check(day, args.root / "logs" / "demo-dag-test.log")}
            )
        _print_table(rows, truth)
        print()
        print(
            "Airflow and MLflow UIs: `make up` (then `make demo` again to fill them), `make down` to stop."
        )
        summary = {
            "ground_truth": truth.to_dict(),
            "checks": [
                {k: r[k] for k in ("run_id", "seconds", "mlflow_url")}
                | {
                    "severity": r["decision"]["severity"],
                    "drifted_features": r["decision"]["drifted_features"],
                }
                for r in rows
            ],
        }
        (args.root / "demo-summary.json").write_text(json.dumps(summary, indent=2, default=str))
        ok = (
            rows[0]["decision"]["severity"] == "none"
            and rows[-1]["decision"]["severity"] == "critical"
        )
        if not ok:
            print("unexpected verdicts: see the table above", file=sys.stderr)
        return 0 if ok else 1
    finally:
        if not (already_running or args.keep):
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
