"""drift_accept_new_normal: an operator accepts a drift as the new normal, by hand.

### drift_accept_new_normal

A drift event stays **open** until a promoted retraining resolves it, an operator accepts it
as the new normal, or an operator ignores it. While an event measured against a *sliding*
reference is open, `drift_monitor` keeps that event's baseline (the reference of the check
that opened it): the drifted days never slide into the reference, so the alert does not
clear by itself after two weeks.

When the drift is how the world now is (a new camera, a new season, a lighting change that
stays) and no approval form asked about it (policy `approval: none`, or the form timed out),
**Trigger** this DAG with the event's id and a note:

- the event is closed as **ACCEPTED**, with who and why, and the audit ledger records it
  (`drift_event` row, subject `drift_event:<id>`);
- the **accepted window** is the current window of the newest check measured against the
  event's baseline — the window the drift report showed last. Without a champion it is the
  reference of the next checks, until the sliding reference starts on or after its first
  day (from then on the sliding reference holds only days of the new normal). With a
  champion it is recorded on the champion's model version (tags
  `drift_reference_accepted_window`, `drift_reference_accepted_event`) and replaces the
  champion's training reference while that version is champion; a new champion brings its
  own training reference.

Refused, with the reason, for an unknown event, an event already closed (resolved, ignored),
or an event without a recorded drift check. Re-running a run that accepted is harmless.
The approval form of `drift_monitor` offers the same answer ("Accept as new normal").
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from driftloop.airflow.notifiers import task_failure_notifier
from driftloop.airflow.s3 import s3_for_task


@dag(
    dag_id="drift_accept_new_normal",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # a store error (database, MLflow, S3) is retried: the acceptance is idempotent; what no
    # retry can fix (unknown or closed event, a bad conf key) fails at once below
    # A task that fails for good posts to the alerts webhook (on the event: Param event_id).
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
            description="The drift event to close as ACCEPTED (the `event_id` of "
            "drift_monitor's open_drift_event task, or the ledger's `drift_event:<id>`).",
        ),
        "note": Param(
            type="string",
            minLength=3,
            description="Why this drift is the new normal (change, ticket): kept on the "
            "event and in the audit ledger.",
        ),
    },
)
def drift_accept_new_normal():
    @task
    def accept_new_normal(params=None, dag=None, dag_run=None, run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.airflow.run_conf import check_conf_keys
        from driftloop.drift.events import accept_new_normal as accept

        actor = getattr(dag_run, "triggering_user_name", None) or f"airflow:{run_id}"
        try:
            check_conf_keys(dag_run.conf, list(dag.params), dag.dag_id)
            s3, settings = s3_for_task()
            return accept(s3, settings, int(params["event_id"]), actor=actor, note=params["note"])
        # no such event, closed another way, nothing recorded to accept, a bad conf key
        except (LookupError, ValueError) as err:
            raise AirflowFailException(str(err)) from err

    accept_new_normal()


drift_accept_new_normal()
