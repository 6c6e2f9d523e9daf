"""rollback_detector: put the previous champion back, by hand, with a reason on the record.

### rollback_detector

The on-call operator's undo for a promotion: **Trigger** with a reason. The MLflow alias
`champion` moves back to `previous-champion` (which is then cleared: one step, not a history
walk), the withdrawn version is tagged `rolled_back` with the reason, and the audit ledger
records who asked, why and both versions. `drift_monitor` follows the alias, so its next
check measures against the restored model's training window.

Fails with a clear message when there is no `previous-champion` to go back to. The change is a
guarded transaction (intent row, compare-and-set, completion row): a retry (two, 30 s apart,
after an MLflow or S3 error) or a re-run of the same DAG run after a partial failure finishes
that rollback, never rolls back twice, and never tags the restored version as withdrawn.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from driftloop.config.settings import Settings


@dag(
    dag_id="rollback_detector",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # A store error (MLflow, S3) is retried: the rollback is a guarded transaction, so a retry
    # finishes what a failed try left half-done (the alias moved, the tag or the completion row
    # not yet written); what no retry can fix fails at once (AirflowFailException below).
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": timedelta(seconds=30)},
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
    @task
    def rollback(params=None, dag=None, dag_run=None, run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.airflow.run_conf import check_conf_keys
        from driftloop.promotion.rollback import rollback as roll_back
        from driftloop.promotion.transactions import ChampionMoved

        actor = getattr(dag_run, "triggering_user_name", None) or f"airflow:{run_id}"
        try:
            check_conf_keys(dag_run.conf, list(dag.params), dag.dag_id)
            return roll_back(Settings.from_env(), params["reason"], actor, run_id)
        # nothing to go back to, a bad conf key, or the champion moved since the intent
        except (LookupError, ValueError, ChampionMoved) as err:
            raise AirflowFailException(str(err)) from err

    rollback()


rollback_detector()
