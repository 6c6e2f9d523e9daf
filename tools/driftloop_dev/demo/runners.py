"""How the demo runs a DAG: ``dag.test()`` in this process, or through the REST API of the
scheduler that ``make up`` started."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from driftloop_dev.demo.terminal import output_to
from driftloop_dev.stack import DEFAULT_REPO, EmbeddedStack

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
        with output_to(self.log_path):
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
    from driftloop.drift.run import report_prefix

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


def _runner(stack: EmbeddedStack, log_path: Path):
    """Under the scheduler when the stack runs Airflow's processes, else ``dag.test()``."""
    if stack.runs_airflow:
        return SchedulerRunner(stack.airflow_client())
    return DagTestRunner(log_path)
