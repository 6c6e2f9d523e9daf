"""How the demo runs a DAG: ``dag.test()`` in this process, or through the REST API of the
scheduler that ``make up`` started.

Both runners: :meth:`run` (one run that must succeed), :meth:`output` (a task's XCom),
:meth:`settle` (wait until no run of a DAG is queued or running: under the scheduler, Asset
events start ``rollout_guard`` runs of their own), :meth:`before_world`,
:meth:`before_drift_checks` and
:meth:`retrain_after_confirmed_drift` (the drift-confirmed retraining: the Asset's run under
the scheduler, a run by hand with ``dag.test()``), :meth:`close`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from driftloop_dev.demo.terminal import output_to
from driftloop_dev.stack import DEFAULT_REPO, EmbeddedStack

RETRAIN_OUTPUTS = {
    "plan": "plan",
    "reference": "reference_profile",
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

    def settle(self, dag_id: str) -> None:
        """Nothing runs on its own here."""

    def before_world(self) -> None:
        """Nothing runs on its own here."""

    def before_drift_checks(self, policy) -> str | None:
        """Nothing to prepare: the runs here read the policy this process names."""
        return None

    def retrain_after_confirmed_drift(
        self, check: dict, conf: dict, params: dict
    ) -> tuple[str, float, Any]:
        """What the drift-confirmed Asset starts under the scheduler, triggered by hand here
        (``params``: run-scoped policy Params, e.g. ``promote_to``)."""
        return self.run("retrain_detector", {**conf, **params, "drift_event_id": check["event_id"]})

    def close(self) -> None:
        """Nothing to undo."""


#: drift_monitor's deferrable sensor for the day's ``_SUCCESS`` marker
WAITING_SENSOR = "wait_for_data"


class SchedulerRunner:
    """Triggers runs through the REST API of the running Airflow and waits for them."""

    mode = "the scheduler (REST API)"
    RUN_TIMEOUT_S = 1800.0
    #: while the demo retrains by hand for its drift event (see :meth:`before_drift_checks`)
    AUTO_RETRAIN_VARIABLE = "driftloop_auto_retrain"

    def __init__(self, api):
        from driftloop_dev.airflow_runs import wait_until

        self.api = api
        #: the Variable's value before the demo set it (None: unset), while it is set
        self._saved_variable: tuple[str | None] | None = None
        wait_until(self._dags_parsed, "the DAGs to be parsed", 300)

    def _dags_parsed(self) -> bool:
        dags = {d["dag_id"]: d for d in self.api.get("dags", limit=100)["dags"]}
        wanted = ("drift_monitor", "retrain_detector", "rollout_guard")
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

    def settle(self, dag_id: str) -> None:
        """Wait until no run of ``dag_id`` is queued or running (Asset-triggered ones too)."""
        from driftloop_dev.airflow_runs import FINISHED_RUN_STATES, dag_runs, wait_until

        wait_until(
            lambda: all(r["state"] in FINISHED_RUN_STATES for r in dag_runs(self.api, dag_id)),
            f"the {dag_id} runs to finish",
            self.RUN_TIMEOUT_S,
        )

    def before_world(self) -> None:
        """``make up`` unpauses the DAGs, and the scheduler starts ``retrain_detector``'s
        latest monthly run at once (``catchup=False`` still runs the latest). On the empty
        bucket it ends skipped in seconds; started while the demo writes its world, it would
        train on it next to the demo. So the demo waits until the scheduler has created the
        runs that were due and they have ended, before it writes anything."""
        from datetime import UTC, datetime

        from driftloop_dev.airflow_runs import wait_until

        def due_runs_created() -> bool:
            after = self.api.get("dags/retrain_detector").get("next_dagrun_run_after")
            return after is None or datetime.fromisoformat(after) > datetime.now(UTC)

        wait_until(due_runs_created, "the scheduler to start the runs that were due", 300)
        self.settle("retrain_detector")

    def before_drift_checks(self, policy) -> str | None:
        """Two things stand between the demo's checks and the scheduler; returns what the demo
        did about them, in words. A scheduled check waiting for data the demo's world will
        never have holds the DAG's one run slot (:meth:`_skip_waiting_sensors`). And a policy
        that promotes a passing candidate straight to champion would let the run the
        drift-confirmed Asset starts skip the rollout: the demo then switches ``auto_retrain``
        off (the Airflow Variable, restored by :meth:`close`), so that run opens a review, and
        retrains for the event by hand with the run-scoped ``promote_to`` Param, as an
        operator would."""
        notes = [self._skip_waiting_sensors()]
        if policy.promote_to != "challenger":
            notes.append(self._hold_auto_retrain(policy))
        return "; ".join(n for n in notes if n) or None

    def _skip_waiting_sensors(self) -> str | None:
        """``drift_monitor`` runs one check at a time (``max_active_runs=1``), and the check
        ``make up`` scheduled for today waits (its sensor deferred) for yesterday's inference
        logs, up to ``DRIFTLOOP_SENSOR_TIMEOUT_S`` (6 h), then ends skipped. The demo serves
        other days, so that run would hold back every check of the demo: its sensor (deferred,
        or not started yet) is marked skipped through the REST API — what its timeout would
        do, now, with a note on it. The demo has triggered no check yet."""
        from driftloop_dev.airflow_runs import BUSY_TASK_STATES, dag_runs, run_path, task_states

        skipped = []
        for run in dag_runs(self.api, "drift_monitor", state=["running"]):
            run_id = run["dag_run_id"]
            states = task_states(self.api, "drift_monitor", run_id)
            if WAITING_SENSOR not in states or states[WAITING_SENSOR] not in BUSY_TASK_STATES:
                continue
            self.api.patch(
                f"{run_path('drift_monitor', run_id)}/taskInstances/{WAITING_SENSOR}",
                {"new_state": "skipped", "note": "make demo: its world has no data for this day"},
            )
            skipped.append(run_id)
        if not skipped:
            return None
        return (
            f"drift_monitor {', '.join(skipped)} waited for a day the demo does not serve "
            f"(its sensor would time out after hours): {WAITING_SENSOR} marked skipped"
        )

    def _hold_auto_retrain(self, policy) -> str:
        from driftloop_dev.airflow_api import AirflowAPIError

        key = self.AUTO_RETRAIN_VARIABLE
        try:
            saved = self.api.get(f"variables/{key}")["value"]
        except AirflowAPIError as err:
            if err.status != 404:
                raise
            saved = None
        body = {"key": key, "value": "false"}
        if saved is None:
            self.api.post("variables", body)
        else:
            self.api.patch(f"variables/{key}", body)
        self._saved_variable = (saved,)
        return (
            f"the scheduler's policy ({policy.source}) promotes to champion: the Airflow "
            f"Variable {key} is false until the drift's review is open (was "
            f"{'unset' if saved is None else repr(saved)}), then the demo retrains for the event "
            "with promote_to=challenger"
        )

    def retrain_after_confirmed_drift(
        self, check: dict, conf: dict, params: dict
    ) -> tuple[str, float, Any]:
        """The run that the drift-confirmed Asset event of ``check`` started: waited for, never
        triggered (``conf`` is what the dag.test() path uses; the Asset-triggered run takes
        the DAG's defaults and the event's window and drift event). With ``auto_retrain``
        switched off (:meth:`before_drift_checks`) that run opens a review; then a run by hand
        for the event, with ``conf`` and ``params``."""
        from driftloop_dev.airflow_runs import wait_for_run_started_by

        began = time.monotonic()
        run = wait_for_run_started_by(
            self.api, "drift_monitor", check["run_id"], "retrain_detector", 300
        )
        started = self._wait("retrain_detector", run["run_id"], began)
        if self._saved_variable is None:
            return started
        self.close()  # the review is open: the automation is back as it was
        return self.run("retrain_detector", {**conf, **params, "drift_event_id": check["event_id"]})

    def close(self) -> None:
        """Put the ``auto_retrain`` Variable back as it was."""
        if self._saved_variable is None:
            return
        (saved,) = self._saved_variable
        key = self.AUTO_RETRAIN_VARIABLE
        if saved is None:
            self.api.delete(f"variables/{key}")
        else:
            self.api.patch(f"variables/{key}", {"key": key, "value": saved})
        self._saved_variable = None


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
