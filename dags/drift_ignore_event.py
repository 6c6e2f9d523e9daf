"""drift_ignore_event: an operator ignores a drift event, by hand or from the Drift page.

### drift_ignore_event

A drift event stays **open** (NEEDS_REVIEW, ACTIONED, RETRAINING_FAILED) until a promoted
retraining resolves it, an operator accepts it as the new normal (`drift_accept_new_normal`)
or an operator ignores it. **Ignore** says: *not drift worth acting on* — the data is fine.

The **Drift** page (Airflow's navigation) triggers this DAG from an open event's *Ignore*
button, as the signed-in user, through Airflow's REST API; it can also be triggered here with
the event's id and a note:

- the event is closed as **IGNORED**, with who (the user who triggered the run) and why, and
  the audit ledger records it (`drift_event` row, subject `drift_event:<id>`);
- a reference frozen by the event is released: the next checks use the plain sliding
  reference again, and a drift that persists opens a new event.

Refused, with the reason, for an unknown event or an event already closed (resolved,
accepted, ignored by someone else). Re-running a run that ignored it is harmless.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from driftloop.airflow.notifiers import task_failure_notifier


@dag(
    dag_id="drift_ignore_event",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # a database error is retried (the close is idempotent); what no retry can fix (unknown
    # or closed event, a bad conf key) fails at once below
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": task_failure_notifier(),
    },
    doc_md=__doc__,
    tags=["driftloop", "drift", "operations"],
    params={
        "event_id": Param(
            type="integer",
            minimum=1,
            description="The drift event to close as IGNORED (the id on the Drift page, or "
            "the ledger's `drift_event:<id>`).",
        ),
        "note": Param(
            type="string",
            minLength=3,
            description="Why this is not drift worth acting on: kept on the event and in "
            "the audit ledger.",
        ),
    },
)
def drift_ignore_event():
    @task
    def ignore_event(params=None, dag=None, dag_run=None, run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.airflow.run_conf import check_conf_keys
        from driftloop.config.settings import Settings
        from driftloop.drift.ignore import ignore_event as ignore

        actor = getattr(dag_run, "triggering_user_name", None) or f"airflow:{run_id}"
        try:
            check_conf_keys(dag_run.conf, list(dag.params), dag.dag_id)
            return ignore(
                Settings.from_env(), int(params["event_id"]), actor=actor, note=params["note"]
            )
        # no such event, closed already, a bad note or conf key
        except (LookupError, ValueError) as err:
            raise AirflowFailException(str(err)) from err

    ignore_event()


drift_ignore_event()
