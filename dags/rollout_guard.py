"""rollout_guard: shadow → canary → promote a challenger, or reject it; guard a new champion and
roll it back on an SLO miss.

### rollout_guard

Runs every hour, and whenever the champion alias moves or a rollout changes stage (the
`driftloop_champion` / `driftloop_rollout` Assets). It reads the routing document
`s3://<bucket>/rollout/routing.json` — what serving follows — and judges its stage:

| stage | serving | pass | fail |
|---|---|---|---|
| shadow | champion serves; the challenger scores every frame too | → canary | reject |
| canary | the challenger serves `rollout.canary.share` of the frames, paired | → promote | reject |
| guard | a new champion serves; `previous-champion` scores a share | → serving | **rollback** |

1. `routing` — finishes a change an earlier run left half done, then reads the document. No
   document or stage `serving`: the run ends here, the rest skipped. A document that names
   other versions than the MLflow aliases (a change half done) fails after its retries; serving
   follows the `champion` alias alone meanwhile. The XCom `rollout_stage` names the stage.
2. `evidence` — subject vs baseline on the same frames of this stage (the serving records of
   the document's rollout and sequence): p95 latency, detections per frame, mean confidence,
   agreement, error share, mAP on labeled frames, with paired, noise-aware intervals; hours
   are log time. Written once to `reports/rollout/<run id>/evidence.json`.
3. `decide` — hold (not enough evidence), or the stage's pass / fail action, recorded in the
   audit ledger with the document and aliases it saw; then one of `hold`, `to_canary`,
   `promote`, `reject`, `rollback`, `end_guard`. Each acts only while the document and the
   aliases are still what the decision saw (otherwise it fails naming what moved), as a guarded
   change: intent row, compare-and-set on aliases and on the document's sequence, completion
   row; a retry or re-run finishes a half-done change.
4. `notify` (stage change, promotion, rejection, rollback), `announce_champion` (the
   `driftloop_champion` Asset after a promotion or rollback) and `announce_rollout`
   (`driftloop_rollout` after any stage change).

A rejected challenger loses its alias and is tagged `rollout_rejected` and `rollout_evidence`;
an automatic rollback tags the withdrawn version `rolled_back` and `rollout_evidence`; the
full evidence is in the ledger. Stages, shares, durations and SLOs: the `rollout:` section of
the promotion policy. **Trigger** by hand with `abort` to reject the current challenger now
(recorded with your name and `reason`); to undo a promotion, trigger `rollback_detector`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from driftloop.airflow.announce import announce_task
from driftloop.airflow.assets import CHAMPION, ROLLOUT
from driftloop.airflow.notifiers import task_failure_notifier
from driftloop.airflow.s3 import s3_for_task
from driftloop.config.settings import Settings

# the schedule is read when the file is parsed (DRIFTLOOP_ROLLOUT_CRON)
SETTINGS = Settings.from_env()

#: the action tasks, named as the actions of driftloop.promotion.rollout
ACTIONS = {
    "to_canary": "Shadow passed: the challenger serves the canary share of the frames.",
    "promote": "Canary passed: the challenger becomes champion (its guard period starts).",
    "reject": "Shadow or canary failed (or an operator aborted): the challenger is withdrawn.",
    "rollback": "An SLO miss in the guard period: previous-champion is champion again.",
    "end_guard": "The guard period passed: the champion serves alone.",
}


@dag(
    dag_id="rollout_guard",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(SETTINGS.rollout_cron, timezone="UTC"),
        assets=CHAMPION | ROLLOUT,
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # A store error (MLflow, S3, the ledger) is retried: every change is a guarded transaction
    # that a retry finishes; what no retry can fix fails at once (AirflowFailException).
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "on_failure_callback": task_failure_notifier(),
    },
    doc_md=__doc__,
    tags=["driftloop", "rollout", "registry"],
    params={
        "reason": Param(
            "",
            type="string",
            description="Why this run was triggered by hand (ticket, incident): kept in the "
            "ledger. Required with abort.",
        ),
        "abort": Param(
            False,
            type="boolean",
            description="Reject the current challenger now (stage shadow or canary), without "
            "waiting for evidence; recorded with your name and the reason.",
        ),
    },
)
def rollout_guard():
    @task.short_circuit(
        doc_md="Reads the routing document; stage serving (or none) ends the run here."
    )
    def routing(params=None, dag=None, dag_run=None, ti=None):
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.airflow.run_conf import check_conf_keys
        from driftloop.promotion.rollout_steps import current_stage

        try:
            check_conf_keys(dag_run.conf, list(dag.params), dag.dag_id)
        except ValueError as err:
            raise AirflowFailException(str(err)) from err
        if params["abort"] and not (params["reason"] or "").strip():
            raise AirflowFailException("abort needs a reason (Param reason): it goes on record")
        stage = current_stage(*s3_for_task())
        if stage is None and params["abort"]:
            raise AirflowFailException("abort: no rollout in progress (stage serving)")
        ti.xcom_push(key="rollout_stage", value=stage["summary"] if stage else "serving")
        return stage or False

    @task
    def evidence(params=None, run_id=None) -> dict:
        from driftloop.config.promotion_policy import load_promotion_policy
        from driftloop.promotion.rollout_steps import gather_evidence

        if params["abort"]:  # an operator's abort needs no evidence
            return {"abort": True}
        s3, settings = s3_for_task()
        policy = load_promotion_policy(settings.promotion_policy_path)
        return gather_evidence(s3, settings, run_id, policy)

    @task.branch
    def decide(params=None, dag_run=None, run_id=None) -> str:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.promotion.rollout_steps import decide as record_decision
        from driftloop.promotion.rollout_transitions import RolloutRefused
        from driftloop.promotion.routing import RoutingMoved

        operator = getattr(dag_run, "triggering_user_name", None) or f"airflow:{run_id}"
        s3, settings = s3_for_task()
        try:
            decision = record_decision(
                s3,
                settings,
                run_id,
                abort=bool(params["abort"]),
                reason=params["reason"],
                operator=operator,
            )
        except (RoutingMoved, RolloutRefused) as err:
            raise AirflowFailException(str(err)) from err
        return decision["action"]

    def action_task(action: str, doc: str):
        @task(task_id=action, doc_md=doc)
        def act(run_id=None) -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from driftloop.config.promotion_policy import load_promotion_policy
            from driftloop.contracts.storage import WriteOnceViolation
            from driftloop.promotion.rollout_steps import act as carry_out
            from driftloop.promotion.rollout_transitions import RolloutRefused
            from driftloop.promotion.routing import RoutingMoved
            from driftloop.promotion.transactions import ChampionMoved

            s3, settings = s3_for_task()
            policy = load_promotion_policy(settings.promotion_policy_path)
            try:
                return carry_out(s3, settings, run_id, action, policy)
            # the document or an alias moved since the decision, or the records refuse it
            except (RoutingMoved, ChampionMoved, RolloutRefused, WriteOnceViolation) as err:
                raise AirflowFailException(str(err)) from err

        return act()

    @task(trigger_rule="none_failed_min_one_success")
    def notify(run_id=None) -> bool:
        from airflow.sdk.exceptions import AirflowSkipException

        from driftloop.airflow.notifiers import send
        from driftloop.promotion.rollout_steps import notification

        message = notification(Settings.from_env(), run_id)
        if message is None:
            raise AirflowSkipException("the rollout held: nothing to tell")
        return send(*message)

    decided = decide()
    routing() >> evidence() >> decided
    hold = EmptyOperator(task_id="hold", doc_md="Not enough evidence yet: the stage goes on.")
    actions = [hold, *(action_task(action, doc) for action, doc in ACTIONS.items())]
    decided >> actions
    actions >> notify()
    # after a promotion or rollback / any stage change (the reason comes from the ledger)
    announced = "driftloop.promotion.rollout_steps:announcement"
    done = "none_failed_min_one_success"
    actions >> announce_task(CHAMPION, "champion", announced, trigger_rule=done)
    actions >> announce_task(ROLLOUT, "rollout", announced, trigger_rule=done)


rollout_guard()
