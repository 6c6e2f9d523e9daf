"""drift_monitor: is the detector in production still seeing the world it was trained on?

### drift_monitor

Every day (02:30 UTC, or as soon as new inference data is announced through the
`driftloop_inference_logs` Asset) this DAG compares the **current window** (14 days) with the
**reference**: the champion model's stored training-window profile when there is one,
otherwise the 14 days before the current window — unless a drift event holds it (below).

**The window's last day**, the same rule for every kind of run: the `end_date` Param when set;
else, for an Asset-triggered run, the latest day its events announced (`extra.day`); else the
day before the run's logical date (the 02:30 run on the 29th checks the 28th), or before its
`run_after` when it has no logical date (REST trigger with `logical_date: null`).

0. `resolve_run` — refuses unknown conf keys and contradictory Params at once (no retries),
   fixes the end day and the effective policy. A day that another run already checked (the
   Asset run and the cron run of the same day) is checked once: `plan` skips the second run,
   unless `end_date` asks for that day explicitly.
1. `wait_for_data` — deferrable sensor on `inference/dt=<end day>/_SUCCESS`; no data before the
   timeout ends the run as *skipped*, not failed.
2. `plan` — windows, partitions present, missing days (reported, never guessed), the effective
   policy (the versioned `drift_policy.yaml` plus this run's overrides).
3. `validate_partition` (mapped, one per planned day of both windows) / `validate` — the Great
   Expectations suite per partition, evaluated with Arrow compute one record batch at a time;
   verdicts are cached by the partition's content and the suite's identity
   (`validation/verdicts/`), so a daily run reads only the new or changed days. Failures are
   copied to `quarantine/` with their validation result and left out; `validate` gathers the
   verdicts, and too few valid days fails the run, naming them. One partition's failure of
   any kind (unreadable part, timestamps outside its day, NaN, a key S3 metadata cannot
   hold) sets that partition aside with its reason and never stops the others; only a store
   fault (S3 5xx, a timeout) fails the task, for Airflow to retry. Extra columns are accepted
   and listed as warnings; a duplicate part file counts once.
4. `reference` / `profile_partition` (mapped, one per day) / `statistics` — mergeable sketches,
   cached per partition: PSI, Jensen–Shannon, normalised Wasserstein, KS, KL, chi-square,
   embedding MMD and PCA components, on the **full** windows.
5. `measure_performance` — the champion's mAP on new labeled days and its label-free estimate.
   `decide` — effect-size thresholds, Benjamini–Hochberg, k-of-n hysteresis over the stored
   history, and the performance verdict → `none` / `warn` / `critical`, recorded in the history.
6. `evidently_report` — Evidently HTML + JSON on a bounded sample, in `reports/drift/<run>/`,
   showing the verdict: per feature (the embedding included) the policy's statistic and
   threshold, drifted exactly where `decide` alerts; its headline is the severity.
   `log_to_mlflow` (experiment `drift-monitor`) and `push_metrics` (Pushgateway) record the
   check. `log_to_mlflow`'s Details tab has the **MLflow run** and **Drift report** links (the
   report opens in the MLflow UI); the warning and the approval form link the same page.
7. critical → a drift event is opened; with `approval: required` an operator chooses
   **Retrain**, **Ignore** or **Accept as new normal** in the *Required actions* view;
   `confirm_drift` emits the `driftloop_drift_confirmed` Asset that triggers
   `retrain_detector`. A critical check of a drift whose event is still open belongs to it
   (`drift_event_already_open`): one drift, one approval, one retraining.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, TaskGroup, dag, task

from driftloop.airflow.assets import DRIFT_CONFIRMED, INFERENCE_LOGS
from driftloop.airflow.drift_docs import DRIFT_MONITOR_DOC, LOG_TO_MLFLOW_DOC
from driftloop.airflow.hitl import RecordedHITLBranchOperator
from driftloop.airflow.links import DRIFT_REPORT_URL_KEY
from driftloop.airflow.notifiers import send, task_failure_notifier
from driftloop.airflow.params import drift_monitor_params
from driftloop.airflow.s3 import s3_for_task
from driftloop.config.settings import Settings
from driftloop.contracts.storage import success_key
from driftloop.notify.payloads import drift_payload

# Settings, not Airflow Variables: the schedule, the sensor's timing and the retry delay are
# read when the file is parsed. The inference-logs Asset can start a check any time.
SETTINGS = Settings.from_env()


#: mapped validations running at once in one DAG run
VALIDATIONS_AT_ONCE = 4

default_args = {
    "owner": "ml-platform",
    "retries": 2,
    # the first retry's delay (then exponential): long enough to ride out a store's restart
    "retry_delay": timedelta(seconds=SETTINGS.retry_delay_s),
    "retry_exponential_backoff": True,
    # a task that fails for good posts to the alerts webhook; notifications never fail a task
    "on_failure_callback": task_failure_notifier(drift_event_task="open_drift_event"),
}


def _policy(document):
    from driftloop.config.drift_policy import parse_policy

    return parse_policy(document, source="run policy")


@dag(
    dag_id="drift_monitor",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(SETTINGS.drift_cron, timezone="UTC"), assets=INFERENCE_LOGS
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    doc_md=__doc__ + DRIFT_MONITOR_DOC,
    tags=["driftloop", "drift", "monitoring"],
    params=drift_monitor_params(),
)
def drift_monitor():
    # No retries: what it refuses (unknown conf keys, contradictory Params, a broken policy
    # file) does not get better by retrying, and a retry would hold the only active-run slot.
    @task(retries=0)
    def resolve_run(params=None, dag=None, dag_run=None, triggering_asset_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.config.policies import PolicyError
        from driftloop.drift.run import announced_days, resolve_drift_run

        events = (triggering_asset_events or {}).get(INFERENCE_LOGS, [])
        try:
            return resolve_drift_run(
                Settings.from_env(),
                params,
                conf=dag_run.conf,
                declared_params=list(dag.params),
                announced_days=announced_days([event.extra for event in events]),
                logical_date=dag_run.logical_date,
                run_after=dag_run.run_after,
            )
        except (ValueError, PolicyError) as err:  # RunConfError is a ValueError
            raise AirflowFailException(str(err)) from err

    wait_for_data = S3KeySensor(
        task_id="wait_for_data",
        bucket_name=SETTINGS.bucket,
        bucket_key="inference/dt={{ ti.xcom_pull(task_ids='resolve_run')['end_day'] }}/_SUCCESS",
        aws_conn_id=SETTINGS.aws_conn_id,
        deferrable=True,  # waits in the triggerer, holding no worker slot
        poke_interval=SETTINGS.sensor_poke_s,
        timeout=SETTINGS.sensor_timeout_s,
        soft_fail=True,  # no data: the run is skipped, not failed
        retries=0,
        doc_md=f"Waits for `{success_key('<end day>')}`; the end day is `resolve_run`'s.",
    )

    @task(multiple_outputs=True)
    def plan(resolved: dict, run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from driftloop.drift.run import earlier_check_of_the_day, plan_windows

        s3, settings = s3_for_task()
        end_day = resolved["end_day"]
        if resolved["end_day_from"] != "end_date":
            earlier = earlier_check_of_the_day(settings, end_day, run_id)
            if earlier:
                raise AirflowSkipException(
                    f"the window ending {end_day} was already checked by run {earlier}; "
                    f"trigger with end_date={end_day} to check it again"
                )
        policy = _policy(resolved["policy"])
        return {
            "plan": plan_windows(s3, settings, end_day, policy),
            "policy": resolved["policy"],
        }

    @task
    def partitions_to_validate(plan: dict) -> list:
        """``{window, day, partition}`` per planned partition: what ``validate_partition``
        maps over (listings only, no data)."""
        from driftloop.drift.validation_steps import planned_validations

        return planned_validations(plan)

    # One instance per partition; a few at a time, so that a cold run (28 days without a
    # champion) does not hold every worker slot (each instance: one part and one batch).
    @task(
        map_index_template="{{ task.op_kwargs['item']['day'] }} "
        "({{ task.op_kwargs['item']['window'] }})",
        max_active_tis_per_dagrun=VALIDATIONS_AT_ONCE,
    )
    def validate_partition(item: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.drift.validation_steps import VerdictCacheError, validate_planned_partition

        s3, settings = s3_for_task()
        try:
            return validate_planned_partition(s3, settings.bucket, item)
        except VerdictCacheError as err:  # a broken cached verdict: retrying reads it again
            raise AirflowFailException(str(err)) from err

    # Runs when the expansion was empty (no partition planned: too few valid days, said
    # below), never after a failed validation or a skipped plan.
    @task(trigger_rule="none_failed_min_one_success")
    def validate(plan: dict, policy: dict, checked: list) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.drift.validation_results import InsufficientValidData
        from driftloop.drift.validation_steps import VerdictCacheError, summarize_validations

        s3, _ = s3_for_task()
        try:
            return summarize_validations(s3, plan, list(checked or []), _policy(policy))
        except (InsufficientValidData, VerdictCacheError) as err:
            # bad data does not get better by retrying: fail now, naming the partitions
            raise AirflowFailException(str(err)) from err

    @task
    def valid_current_partitions(validation: dict) -> list:
        """The current window's valid partitions: what ``profile_partition`` maps over."""
        return validation["valid"]["current"]

    @task
    def reference(plan: dict, validation: dict, policy: dict) -> dict:
        from driftloop.drift.profiling import resolve_reference

        s3, settings = s3_for_task()
        return resolve_reference(s3, settings, plan, validation, _policy(policy))

    @task(map_index_template="{{ task.op_kwargs['partition']['day'] }}")
    def profile_partition(partition: dict, reference: dict, policy: dict) -> dict:
        from driftloop.drift.profiling import profile_current_partition

        s3, settings = s3_for_task()
        return profile_current_partition(s3, settings, partition, reference, _policy(policy))

    @task
    def statistics(reference: dict, profiles: list, policy: dict, run_id=None) -> dict:
        from driftloop.drift.profiling import compute_statistics

        s3, settings = s3_for_task()
        return compute_statistics(s3, settings, reference, list(profiles), _policy(policy), run_id)

    @task
    def evidently_report(reference: dict, statistics: dict, decision: dict, run_id=None) -> dict:
        from driftloop.drift.publish import render_evidently

        s3, settings = s3_for_task()
        return render_evidently(s3, settings, reference, statistics, decision, run_id)

    @task
    def measure_performance(plan: dict, run_id=None) -> str:
        from driftloop.drift.verdict import measure_performance as measure

        return measure(*s3_for_task(), plan, run_id)

    @task
    def decide(
        plan: dict,
        reference: dict,
        statistics: dict,
        validation: dict,
        policy: dict,
        performance: str,
        run_id=None,
    ) -> dict:
        from driftloop.drift.verdict import decide_and_record

        s3, settings = s3_for_task()
        return decide_and_record(
            s3,
            settings,
            plan=plan,
            reference=reference,
            statistics=statistics,
            validated=validation,
            policy=_policy(policy),
            run_id=run_id,
            performance_uri=performance,
        )

    @task(doc_md=LOG_TO_MLFLOW_DOC)
    def log_to_mlflow(decision: dict, report: dict, run_id=None, ti=None) -> dict:
        from driftloop.airflow.links import DRIFT_REPORT_URL_KEY, MLFLOW_RUN_URL_KEY
        from driftloop.drift.publish import log_to_mlflow as log_run

        s3, settings = s3_for_task()
        logged = log_run(s3, settings, decision, report, run_id)
        # the task's "MLflow run" and "Drift report" buttons (Details tab, Extra links)
        ti.xcom_push(key=MLFLOW_RUN_URL_KEY, value=logged["url"])
        ti.xcom_push(key=DRIFT_REPORT_URL_KEY, value=logged["report_url"])
        return logged

    @task
    def push_metrics(decision: dict, dag_run=None) -> bool:
        from driftloop.drift.publish import push_metrics as push

        s3, settings = s3_for_task()
        started = dag_run.start_date.timestamp() if dag_run and dag_run.start_date else None
        return push(s3, settings, decision, started)

    @task.branch
    def route(decision: dict) -> str:
        from driftloop.drift.events import route_for_severity

        return route_for_severity(decision["severity"])

    no_drift = EmptyOperator(
        task_id="no_drift", doc_md="Nothing drifted beyond the policy's thresholds."
    )

    @task
    def notify_warning(decision: dict, logged: dict) -> dict:
        import logging

        from driftloop.drift.events import warning_summary

        summary = warning_summary(decision, logged["report_url"])
        logging.getLogger("airflow.task").warning("drift warning: %s", summary["message"])
        notified = send("drift_warning", drift_payload(decision, logged["report_url"]))
        return {**summary, "notified": notified}

    @task
    def open_drift_event(decision: dict, run_id=None, ti=None) -> dict:
        from driftloop.drift.events import open_drift_event as open_event

        event = open_event(Settings.from_env(), decision, run_id)
        if not event["already_open"]:  # an event already open was announced when it opened
            report = ti.xcom_pull(task_ids="log_to_mlflow", key=DRIFT_REPORT_URL_KEY)
            send("drift_critical", drift_payload(decision, report, event["event_id"]))
        return event

    @task.branch
    def approval_gate(event: dict) -> str:
        from driftloop.drift.events import approval_route

        return approval_route(event)

    drift_event_already_open = EmptyOperator(
        task_id="drift_event_already_open",
        doc_md="The drift belongs to an event that still waits for its answer or retraining: "
        "this check is recorded, no second approval or retraining is started.",
    )

    approved_by_policy = EmptyOperator(
        task_id="approved_by_policy", doc_md="The policy does not require an operator's approval."
    )

    await_approval = RecordedHITLBranchOperator(
        task_id="await_approval",
        # worded from the drift event's ledger row when the task starts (see drift_request)
        subject="Critical drift: retrain the detector?",
        describe_request="driftloop.drift.events:drift_request",
        options=["Retrain", "Ignore", "Accept as new normal"],
        options_mapping={
            "Retrain": "confirm_drift",
            "Ignore": "ignore_drift",
            "Accept as new normal": "accept_new_normal",
        },
        record_answer="driftloop.drift.events:record_drift_answer",
        response_timeout=timedelta(hours=24),
        retries=0,
    )

    # Upstream of it are only the event and the two approval paths (never `decide` directly),
    # so that it is skipped whenever no path to it was taken.
    @task(outlets=[DRIFT_CONFIRMED], trigger_rule="none_failed_min_one_success")
    def confirm_drift(event: dict, run_id=None, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from driftloop.drift.events import event_kind, record_event_answer, recorded_answer
        from driftloop.drift.history import EventClosedError

        if event.get("already_open"):  # its own event emits (or emitted) the Asset
            raise AirflowSkipException(f"drift event {event['event_id']} is already open")

        settings = Settings.from_env()
        decision, event_id = event["decision"], event["event_id"]
        answer = recorded_answer(settings, event_id)  # from the HITL record, not XCom
        try:
            record = record_event_answer(settings, event_id, "ACTIONED", answer)
        except EventClosedError as err:  # accepted by hand meanwhile: no retraining
            raise AirflowFailException(str(err)) from err
        outlet_events[DRIFT_CONFIRMED].extra = {
            "event_id": event_id,
            "drift_run_id": run_id,
            "window_end": decision["window"]["end"],
            "drifted_features": decision["drifted_features"],
            "decision_uri": decision["decision_uri"],
            "kind": event_kind(decision),  # input drift, or the champion's accuracy alone
        }
        return record

    @task
    def ignore_drift(event: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.drift.events import record_event_answer, recorded_answer
        from driftloop.drift.history import EventClosedError

        settings = Settings.from_env()
        answer = recorded_answer(settings, event["event_id"])  # from the HITL record
        try:
            return record_event_answer(settings, event["event_id"], "IGNORED", answer)
        except EventClosedError as err:  # closed another way meanwhile: left as it is
            raise AirflowFailException(str(err)) from err

    @task
    def accept_new_normal(event: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.drift.events import accept_from_answer

        s3, settings = s3_for_task()
        try:  # the answer from the HITL record, not XCom
            return accept_from_answer(s3, settings, event["event_id"])
        except ValueError as err:  # closed another way meanwhile, or no such answer
            raise AirflowFailException(str(err)) from err

    resolved = resolve_run()
    with TaskGroup("data", prefix_group_id=False, tooltip="windows, validation, quarantine"):
        checked = plan(resolved)
        verdicts = validate_partition.expand(item=partitions_to_validate(checked["plan"]))
        validated = validate(checked["plan"], checked["policy"], verdicts)
    resolved >> wait_for_data >> checked
    with TaskGroup("statistics_on_full_windows", prefix_group_id=False, tooltip="sketches"):
        ref = reference(checked["plan"], validated, checked["policy"])
        profiles = profile_partition.partial(reference=ref, policy=checked["policy"]).expand(
            partition=valid_current_partitions(validated)
        )
        stats = statistics(ref, profiles, checked["policy"])
    performance = measure_performance(checked["plan"])
    decision = decide(checked["plan"], ref, stats, validated, checked["policy"], performance)
    with TaskGroup("publish", prefix_group_id=False, tooltip="report, MLflow, metrics"):
        report = evidently_report(ref, stats, decision)
        logged = log_to_mlflow(decision, report)
        push_metrics(decision)
    with TaskGroup("act", prefix_group_id=False, tooltip="warning, drift event, approval"):
        event = open_drift_event(decision)
        logged >> event  # the approval form links the report that log_to_mlflow published
        confirmed = confirm_drift(event)
        ignored = ignore_drift(event)
        accepted = accept_new_normal(event)
        route(decision) >> [no_drift, notify_warning(decision, logged), event]
        gate = approval_gate(event)
        event >> gate >> [await_approval, approved_by_policy, drift_event_already_open]
        approved_by_policy >> confirmed
        await_approval >> [confirmed, ignored, accepted]


drift_monitor()
