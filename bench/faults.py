"""Fault injection on the embedded stack (issue 9, item 7): every step of drift_monitor,
retrain_detector and rollback_detector under each fault (refuse, reset, stall, HTTP 500) of S3
and of MLflow, then recovered; the invariants checked after each case.

Prints the table (step × fault → outcome, invariants held) and ends with
``summary: cases=N … violations=M``. Each DAG's cases start with a healthy survey run that
counts every step's requests per service: a (step, service) pair with none is reported
``untouched`` (its faults cannot reach it) and not run. Partial faults follow the full table:
the second alias write of a move, a version tag, a ledger anchor. ``--quick``: one case per
fault mode and service on a representative set of steps (minutes, not hours). ``--dag`` /
``--step`` narrow the full table.
Run: ``.venv/bin/python bench/faults.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUICK = [
    ("retrain_detector", "evaluate", "mlflow", "http500"),
    ("retrain_detector", "gate", "mlflow", "refuse"),
    ("retrain_detector", "promote", "mlflow", "reset"),
    ("retrain_detector", "register_candidate", "s3", "stall"),
    ("rollback_detector", "rollback", "mlflow", "http500"),
    ("drift_monitor", "validate", "s3", "reset"),
    ("drift_monitor", "plan", "mlflow", "http500"),
    ("drift_monitor", "log_to_mlflow", "mlflow", "stall"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a representative subset")
    parser.add_argument("--dag", action="append", help="only these DAGs (repeatable)")
    parser.add_argument("--step", action="append", help="only these steps (repeatable)")
    parser.add_argument(
        "--sliding", action="store_true",
        help="drift cases without a champion (the sliding reference), not after retraining",
    )  # fmt: skip
    parser.add_argument("--service", action="append", help="only these services (repeatable)")
    parser.add_argument(
        "--partial", action="store_true", help="only the partial faults (method/path/after)"
    )
    parser.add_argument("--save", type=Path, help="also write the outcomes here (JSON lines)")
    parser.add_argument(
        "--merge", type=Path, nargs="+",
        help="print one table of outcomes saved by earlier runs (shards of the table)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.merge:
        return _merge(args.merge)

    # SIGTERM (a timeout, kill): leave through the stack's context, which stops its servers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="driftloop-faults-"))
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
            "YOLO_OFFLINE": "1",
            "DRIFTLOOP_SENSOR_TIMEOUT_S": "20",
            "DRIFTLOOP_SENSOR_POKE_S": "5",
        }
    )
    (root / "airflow").mkdir(parents=True)
    from driftloop_dev.faults import Fault
    from driftloop_dev.faults.cases import (
        merge_touches,
        run_case,
        run_survey,
        seed_retrain_world,
        table,
        touches_table,
    )
    from driftloop_dev.faults.harness import (
        ORDER,
        Case,
        FaultHarness,
        all_cases,
        survey_cases,
        untouched,
    )
    from driftloop_dev.stack import EmbeddedStack, migrate_airflow_db

    dag_ids = tuple(d for d in ORDER if not args.dag or d in args.dag)
    if args.quick:
        cases = [Case(d, s, svc, Fault(m)) for d, s, svc, m in QUICK if d in dag_ids]
        surveys = []
    else:
        cases = all_cases(dag_ids)
        surveys = survey_cases(dag_ids)
    if args.step:
        cases = [c for c in cases if c.step in args.step]
    if args.service:
        cases = [c for c in cases if c.service in args.service]
    if args.partial:
        cases = [c for c in cases if c.fault.method or c.fault.path or c.fault.after]
    started = time.monotonic()
    with EmbeddedStack(root / "stack", REPO) as stack:
        os.environ.update(stack.env)
        migrate_airflow_db(stack.env)
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(REPO / "dags"))
        if bag.import_errors:
            print(bag.import_errors, file=sys.stderr)
            return 2
        harness = FaultHarness(stack, root / "faults", bag.get_dag)
        outcomes, touches = [], {}
        try:
            if (
                "drift_monitor" in dag_ids
                and "retrain_detector" not in dag_ids
                and not args.sliding
            ):
                seed_retrain_world(harness)  # drift follows a champion, as after retraining
            for dag_id in dag_ids:  # a DAG's surveys, then its cases
                for survey in (s for s in surveys if s.dag_id == dag_id):
                    outcome, seen = run_survey(harness, survey)
                    outcomes.append(outcome)
                    if args.save:
                        _save(args.save, outcome, seen)
                    merge_touches(touches, seen)
                    _progress(survey, outcome, "survey")
                todo = [c for c in cases if c.dag_id == dag_id]
                for number, case in enumerate(todo, 1):
                    outcome = untouched(case, touches) or run_case(harness, case)
                    outcomes.append(outcome)
                    if args.save:
                        _save(args.save, outcome)
                    _progress(case, outcome, f"{number}/{len(todo)}")
        finally:
            harness.close()
    if touches:
        print(touches_table(touches))
        print()
    print(table(outcomes))
    print(f"# {len(outcomes)} cases in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


def _save(path: Path, outcome, touches=None) -> None:
    import dataclasses
    import json

    row = dataclasses.asdict(outcome)
    row["touches"] = [[dag, step, seen] for (dag, step), seen in (touches or {}).items()]
    with path.open("a") as out:
        out.write(json.dumps(row) + "\n")


def _merge(paths: list[Path]) -> int:
    import json

    from driftloop_dev.faults import Fault
    from driftloop_dev.faults.cases import merge_touches, table, touches_table
    from driftloop_dev.faults.harness import Case, Outcome

    outcomes, touches = [], {}
    for path in paths:
        for line in path.read_text().splitlines():
            row = json.loads(line)
            merge_touches(touches, {(dag, step): seen for dag, step, seen in row.pop("touches")})
            case = row.pop("case")
            case["fault"] = Fault(**case["fault"])
            outcomes.append(Outcome(case=Case(**case), **row))
    if touches:
        print(touches_table(touches))
        print()
    print(table(outcomes))
    return 0


def _progress(case, outcome, where: str) -> None:
    print(f"[{where}] {case}: {outcome.outcome} ({outcome.seconds:.0f} s)",
          file=sys.stderr, flush=True)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
