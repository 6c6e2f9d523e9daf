"""rollback_detector: put the previous champion back, by hand, with a reason on the record.

### rollback_detector

The on-call operator's undo for a promotion: **Trigger** with a reason. The MLflow alias
`champion` moves back to `previous-champion` (which is then cleared: one step, not a history
walk), the withdrawn version is tagged `rolled_back` with the reason, and the audit ledger
records who asked, why and both versions. `drift_monitor` follows the alias, so its next
check measures against the restored model's training window. The routing document
(`rollout/routing.json`) then says the restored champion serves alone, and the
`driftloop_champion` Asset announces the change (`rollout_guard` listens). A rollout in shadow
or canary ends with it: its evidence compared the challenger with the withdrawn champion, so
the same alias move clears `challenger` and tags that version `rollout_ended`.

Fails with a clear message when there is no `previous-champion` to go back to. The change is a
guarded transaction (intent row, compare-and-set, completion row): a retry (two, 30 s apart,
after an MLflow or S3 error) or a re-run of the same DAG run after a partial failure finishes
that rollback, never rolls back twice, and never tags the restored version as withdrawn.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from driftloop.airflow.assets import CHAMPION
from driftloop.airflow.notifiers import event_notifier, task_failure_notifier
from driftloop.airflow.s3 import s3_for_task


@dag(
    dag_id="rollback_detector",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # A store error (MLflow, S3) is retried: the rollback is a guarded transaction, so a retry
    # finishes what a failed try left half-done (the alias moved, the tag or the completion row
    # not yet written); what no retry can fix fails at once (AirflowFailException below).
    # A task that fails for good posts to the alerts webhook.
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": task_failure_notifier(),
    },
    doc_md=__doc__,
    tags=["driftloop", "registry", "operations"],
    params={
        "reason": Param(
            type="string",
            minLength=3,
            description="Why the champion is rolled back (incident, ticket): kept in the ledger and on the model version.",
        ),
    },
)
def rollback_detector():
    # success: the rollback as the ledger recorded it goes to the alerts webhook
    # the routing document is written in the same task, so CHAMPION is announced only once
    # both the alias and the document say the restored version serves
    @task(outlets=[CHAMPION], on_success_callback=event_notifier("rollback"))
    def rollback(params=None, dag=None, dag_run=None, run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.airflow.run_conf import check_conf_keys
        from driftloop.contracts.storage import WriteOnceViolation
        from driftloop.promotion.rollback import rollback as roll_back
        from driftloop.promotion.rollout_transitions import after_manual_rollback
        from driftloop.promotion.routing import RoutingMoved
        from driftloop.promotion.transactions import ChampionMoved

        actor = getattr(dag_run, "triggering_user_name", None) or f"airflow:{run_id}"
        try:
            check_conf_keys(dag_run.conf, list(dag.params), dag.dag_id)
            s3, settings = s3_for_task()
            rolled_back = roll_back(settings, params["reason"], actor, run_id)
            routed = after_manual_rollback(s3, settings, run_id, rolled_back, actor)
            return {**rolled_back, "routing_sequence": routed["doc"]["sequence"]}
        # nothing to go back to, a bad conf key, or the champion (or the routing document)
        # moved since the intent
        except (LookupError, ValueError, ChampionMoved, RoutingMoved, WriteOnceViolation) as err:
            raise AirflowFailException(str(err)) from err

    rollback()


rollback_detector()
