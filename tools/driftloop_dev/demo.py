"""``make demo``: the whole loop end to end on the embedded stack.

1. start (or reuse) the embedded stack under ``.stack/``: moto S3, mlflow server, pushgateway;
2. write an ``abrupt`` synthetic world: 42 days, a lighting drop and a new camera from day 28,
   with labeled frames every day;
3. the model in production: ``retrain_detector`` trains a first champion on the 14 days
   before the drift (no champion yet, so the promotion floors alone decide) and stores the
   drift reference of its training window with it;
4. ``drift_monitor`` checks a day before the drift and the first daily checks after it,
   against that champion's reference, as the scheduler would run them day after day: the
   last one confirms the drift and opens a drift event;
5. ``retrain_detector`` for that event: fine-tunes the champion on the drifted window,
   evaluates candidate and champion on the same split, and the gate promotes or rejects with
   its reasons;
6. prints the verdicts, the gate table, the model versions, the MLflow URLs and the audit
   ledger's verification.

Two ways to run the DAGs:

- **under the scheduler** when ``make up`` is running (the stack under ``--root`` has the
  Airflow processes): every run is triggered through the REST API (``logical_date: null``),
  runs on the executor with its task logs in the UI, and the retraining of step 5 is started
  by the ``driftloop_drift_confirmed`` Asset event that ``confirm_drift`` emits — the demo only
  waits for it;
- with ``dag.test()`` in this process otherwise (the stack without Airflow's processes); step
  5 is then triggered by hand for the drift event, as the Asset would.

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
from typing import Any

from driftloop_dev.stack import DEFAULT_REPO, EmbeddedStack, migrate_airflow_db


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m driftloop_dev.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_REPO / ".stack", help="stack folder (default: .stack)"
    )
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument(
        "--labeled-per-day", type=int, default=40, help="labeled frames per day (training data)"
    )
    # the first champion must clear promotion_policy.yaml's floors: its learning curve
    # plateaus from epoch 8 on (bench/model_quality.py); a fine-tune needs fewer
    parser.add_argument("--epochs", type=int, default=12, help="epochs of the first champion")
    parser.add_argument(
        "--fine-tune-epochs", type=int, default=6, help="epochs of the retraining after the drift"
    )
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


RETRAIN_OUTPUTS = {
    "candidate": "register_candidate",
    "evaluation": "evaluate",
    "decision": "gate",
    "training": "train",
    "promoted": "promote",
}


class DagTestRunner:
    """Runs each DAG run in this process with ``dag.test()`` (no scheduler needed)."""

    mode = "dag.test()"

    def __init__(self, log_path: Path):
        from airflow.dag_processing.dagbag import DagBag

        self.log_path = log_path
        self.bag = DagBag(dag_folder=str(DEFAULT_REPO / "dags"))
        if self.bag.import_errors:
            raise SystemExit(f"DAG import errors: {self.bag.import_errors}")

    def run(self, dag_id: str, conf: dict) -> tuple[str, float, Any]:
        """One run that must succeed: its run id, seconds and a handle for :meth:`output`."""
        dag = self.bag.dags[dag_id]
        began = time.monotonic()
        with _output_to(self.log_path):
            dag_run = dag.test(run_conf=conf)
        seconds = time.monotonic() - began
        if str(dag_run.state) != "success":
            failed = [ti.task_id for ti in dag_run.get_task_instances() if ti.state == "failed"]
            raise SystemExit(
                f"{dag_id} ({json.dumps(conf)}) ended {dag_run.state}; failed tasks: {failed}; "
                f"task logs: {self.log_path}"
            )
        return dag_run.run_id, seconds, dag_run

    def output(self, dag_id: str, handle: Any, task_id: str):
        ti = next((t for t in handle.get_task_instances() if t.task_id == task_id), None)
        return None if ti is None else ti.xcom_pull(task_ids=task_id)

    def retrain_after_confirmed_drift(self, check: dict, conf: dict) -> tuple[str, float, Any]:
        """What the drift-confirmed Asset starts under the scheduler, triggered by hand here."""
        return self.run("retrain_detector", {**conf, "drift_event_id": check["event_id"]})


class SchedulerRunner:
    """Triggers runs through the REST API of the running Airflow and waits for them."""

    mode = "the scheduler (REST API)"
    RUN_TIMEOUT_S = 1800.0

    def __init__(self, api):
        from driftloop_dev.airflow_runs import wait_until

        self.api = api
        wait_until(self._dags_parsed, "the DAGs to be parsed", 300)

    def _dags_parsed(self) -> bool:
        dags = {d["dag_id"]: d for d in self.api.get("dags", limit=100)["dags"]}
        wanted = ("drift_monitor", "retrain_detector")
        paused = [dag_id for dag_id in wanted if dags.get(dag_id, {}).get("is_paused")]
        if paused:
            raise SystemExit(
                f"paused in Airflow: {', '.join(paused)}; unpause them (the toggle in the UI, "
                "or `airflow dags unpause <dag_id>`) and run the demo again"
            )
        return all(dag_id in dags for dag_id in wanted)

    def run(self, dag_id: str, conf: dict) -> tuple[str, float, Any]:
        from driftloop_dev.airflow_runs import trigger

        began = time.monotonic()
        run_id = trigger(self.api, dag_id, conf)["dag_run_id"]
        return self._wait(dag_id, run_id, began)

    def _wait(self, dag_id: str, run_id: str, began: float) -> tuple[str, float, Any]:
        from driftloop_dev.airflow_runs import RunError, wait_for_run

        try:
            wait_for_run(self.api, dag_id, run_id, self.RUN_TIMEOUT_S)
        except RunError as err:
            raise SystemExit(f"{err}; task logs: {self.api.base_url}/dags/{dag_id}") from err
        return run_id, time.monotonic() - began, run_id

    def output(self, dag_id: str, handle: Any, task_id: str):
        from driftloop_dev.airflow_runs import xcom

        return xcom(self.api, dag_id, handle, task_id)

    def retrain_after_confirmed_drift(self, check: dict, conf: dict) -> tuple[str, float, Any]:
        """The run that the drift-confirmed Asset event of ``check`` started: waited for, never
        triggered (``conf`` is what the dag.test() path uses; the Asset-triggered run takes
        the DAG's defaults and the event's window and drift event)."""
        from driftloop_dev.airflow_runs import wait_for_run_started_by

        began = time.monotonic()
        run = wait_for_run_started_by(
            self.api, "drift_monitor", check["run_id"], "retrain_detector", 300
        )
        return self._wait("retrain_detector", run["run_id"], began)


def _run_check(runner, end_day: str) -> dict:
    from driftloop.config.settings import Settings
    from driftloop.contracts.storage import get_json, s3_client
    from driftloop.drift.steps import report_prefix

    run_id, seconds, handle = runner.run("drift_monitor", {"end_date": end_day})
    decision = get_json(
        s3_client(), Settings.from_env().bucket, report_prefix(run_id) + "decision.json"
    )
    event = runner.output("drift_monitor", handle, "open_drift_event")
    logged = runner.output("drift_monitor", handle, "log_to_mlflow") or {}
    return {
        "run_id": run_id,
        "seconds": seconds,
        "decision": decision,
        "mlflow_url": logged.get("url"),
        "report_url": logged.get("report_url"),
        "event_id": (event or {}).get("event_id"),
    }


def _retrain_result(runner, started: tuple[str, float, Any]) -> dict:
    run_id, seconds, handle = started
    outputs = {
        name: runner.output("retrain_detector", handle, task_id)
        for name, task_id in RETRAIN_OUTPUTS.items()
    }
    return {"run_id": run_id, "seconds": seconds, **outputs}


def _print_checks(rows: list[dict], truth) -> None:
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
    reference = last.get("reference") or {}
    print(
        f"reference: the champion v{reference['model_version']}'s training window"
        if reference.get("kind") == "champion"
        else "reference: the 14 days before the window (no champion reference)"
    )
    print(f"drifted features (critical check): {', '.join(last['drifted_features']) or '-'}")
    print(f"Evidently report: {rows[-1]['report_url']}")
    print(f"MLflow run:       {rows[-1]['mlflow_url']}")


def _model_line(run: dict) -> str:
    cand = run["evaluation"]["candidate"]
    return (
        f"v{run['candidate']['version']}: mAP50 {cand['map50']:.3f}, mAP50-95 {cand['map50_95']:.3f} "
        f"(INT8 mAP50 {cand['map50_int8']:.3f}), INT8 p95 {cand['p95_latency_ms']:.1f} ms "
        f"on {cand['n_images']} evaluation images"
    )


def _print_retrain(title: str, run: dict) -> None:
    print()
    print(title)
    print(f"  candidate {_model_line(run)}; {run['seconds']:.0f} s")
    delta = (run["evaluation"] or {}).get("delta")
    if delta:
        print(
            f"  paired bootstrap delta of {delta['metric']} vs champion "
            f"v{run['evaluation']['champion']['version']}: {delta['point']:+.4f} "
            f"[{delta['low']:+.4f}, {delta['high']:+.4f}]"
        )
    print()
    print("\n".join("  " + line for line in run["decision"]["table"].splitlines()))


def _mlflow_model_url(tracking_uri: str, name: str, version: str) -> str:
    return f"{tracking_uri.rstrip('/')}/#/models/{name}/versions/{version}"


def _runner(stack: EmbeddedStack, log_path: Path):
    """Under the scheduler when the stack runs Airflow's processes, else ``dag.test()``."""
    if stack.runs_airflow:
        return SchedulerRunner(stack.airflow_client())
    return DagTestRunner(log_path)


def main(argv=None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    phases: dict[str, float] = {}
    stack = EmbeddedStack(args.root, DEFAULT_REPO).start()
    already_running = stack.reused
    os.environ.update(stack.env)
    migrate_airflow_db(stack.env)
    phases["stack"] = time.monotonic() - began
    log_path = args.root / "logs" / "demo-dag-test.log"
    try:
        from driftloop.audit.ledger import Ledger
        from driftloop.config.settings import Settings
        from driftloop.contracts.storage import s3_client
        from driftloop.drift import tracking
        from driftloop.promotion import registry
        from driftloop_dev.synth import S3Sink, generate_world

        settings = Settings.from_env()
        end = args.end_date or (date.today() - timedelta(days=1)).isoformat()
        mark = time.monotonic()
        print("writing the synthetic world (abrupt drift) ...", flush=True)
        truth = generate_world(
            S3Sink(s3_client(), settings.bucket),
            "abrupt",
            days=42,
            drift_day=28,
            end_date=end,
            rows_per_day=args.rows_per_day,
            labeled_per_day=args.labeled_per_day,
        )
        phases["world"] = time.monotonic() - mark
        runner = _runner(stack, log_path)
        print(f"running the DAGs with {runner.mode}", flush=True)
        drift_start = date.fromisoformat(truth.drift_start_date)
        before_drift = (drift_start - timedelta(days=1)).isoformat()
        training = {"imgsz": 160, "batch": 16}

        mark = time.monotonic()
        print(
            f"retrain_detector: the first champion, {args.epochs} epochs on the 14 days up to {before_drift} ...",
            flush=True,
        )
        first = _retrain_result(
            runner,
            runner.run(
                "retrain_detector",
                {
                    **training,
                    "epochs": args.epochs,
                    "reason": "first champion: the 14 days before the drift",
                    "end_date": before_drift,
                    "base": "yolo11n.yaml",
                },
            ),
        )
        phases["first_champion"] = time.monotonic() - mark

        mark = time.monotonic()
        rows = []
        for day, expected in _check_days(drift_start):
            print(f"drift_monitor: checking the window ending {day} ({expected}) ...", flush=True)
            rows.append({"expected": expected, **_run_check(runner, day)})
        phases["drift_checks"] = time.monotonic() - mark
        last = rows[-1]
        confirmed = last["decision"]["severity"] == "critical" and last["event_id"] is not None

        retrain = None
        if confirmed:
            mark = time.monotonic()
            print(
                f"retrain_detector: drift event {last['event_id']} confirmed, fine-tuning the "
                f"champion on the 14 days up to {last['decision']['window']['end']} "
                f"({'started by the drift-confirmed Asset event' if isinstance(runner, SchedulerRunner) else 'as the drift-confirmed Asset would'}) ...",
                flush=True,
            )
            retrain = _retrain_result(
                runner,
                runner.retrain_after_confirmed_drift(
                    last,
                    {
                        **training,
                        "epochs": args.fine_tune_epochs,
                        "reason": "drift confirmed in "
                        + ", ".join(last["decision"]["drifted_features"]),
                        "end_date": last["decision"]["window"]["end"],
                        "base": "champion",
                    },
                ),
            )
            phases["retrain"] = time.monotonic() - mark
        phases["total"] = time.monotonic() - began

        _print_retrain("1. the first champion (no champion yet: the floors decide)", first)
        print()
        print("2. drift_monitor, day after day, against the champion's training window")
        _print_checks(rows, truth)
        if retrain is not None:
            _print_retrain(
                f"3. retraining for drift event {last['event_id']} (fine-tuned from the champion)",
                retrain,
            )
        client = tracking.client(settings.mlflow_tracking_uri)
        aliases = registry.aliases(client, settings.registered_model)
        verified = Ledger(settings.database_url).verify()
        print()
        print(
            f"registry {settings.registered_model}: "
            + ", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items()))
        )
        latest = retrain or first
        print(
            f"MLflow model version: {_mlflow_model_url(settings.mlflow_tracking_uri, settings.registered_model, latest['candidate']['version'])}"
        )
        print(f"MLflow UI:            {settings.mlflow_tracking_uri}")
        print(
            f"audit ledger: {verified.rows if hasattr(verified, 'rows') else ''} rows, chain {'verified' if verified.ok else 'BROKEN'} (python -m driftloop.audit.ledger verify)"
        )
        print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()))
        if isinstance(runner, SchedulerRunner):
            print(f"Airflow UI:   {runner.api.base_url}/dags  (task logs of every run)")
        else:
            print(f"task logs: {log_path}")
            print()
            print(
                "Airflow and MLflow UIs: `make up`, then `make demo` runs the DAGs under the "
                "scheduler; `make down` to stop."
            )
        summary = {
            "ground_truth": truth.to_dict(),
            "phases_s": phases,
            "checks": [
                {k: r[k] for k in ("run_id", "seconds", "mlflow_url", "event_id")}
                | {
                    "severity": r["decision"]["severity"],
                    "drifted_features": r["decision"]["drifted_features"],
                }
                for r in rows
            ],
            "retrains": [
                {
                    "run_id": r["run_id"],
                    "seconds": r["seconds"],
                    "version": r["candidate"]["version"],
                    "evaluation": r["evaluation"],
                    "promote": r["decision"]["promote"],
                    "reasons": r["decision"]["reasons"],
                }
                for r in (first, retrain)
                if r is not None
            ],
            "aliases": aliases,
            "ledger_ok": verified.ok,
        }
        (args.root / "demo-summary.json").write_text(json.dumps(summary, indent=2, default=str))
        ok = (
            first["decision"]["promote"]
            and rows[0]["decision"]["severity"] == "none"
            and confirmed
            and verified.ok
        )
        if not ok:
            print("unexpected outcome: see the tables above", file=sys.stderr)
        return 0 if ok else 1
    finally:
        if not (already_running or args.keep):
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
