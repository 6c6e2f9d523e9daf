"""retrain_detector: from confirmed drift to a promoted (or rejected) and audited model."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from driftloop.airflow.assets import DRIFT_CONFIRMED
from driftloop.airflow.hitl import ANSWER_XCOM_KEY, RecordedHITLBranchOperator
from driftloop.airflow.s3 import s3_for_task
from driftloop.airflow.training_task import training_backend
from driftloop.config.settings import Settings

SETTINGS = Settings.from_env()
BACKEND = training_backend()  # an environment variable: `local` here, `kubernetes` in production
TRAINING_IMAGE = os.environ.get("DRIFTLOOP_TRAINING_IMAGE", "ghcr.io/driftloop/training:latest")
# The scheduled retraining (UTC cron). Airflow runs its latest past time when it first sees the
# DAG (catchup=False): a scheduled run with no labeled frames in its window ends skipped.
RETRAIN_CRON = os.environ.get("DRIFTLOOP_RETRAIN_CRON", "0 4 1 * *")

DOC = """
### retrain_detector

Runs on the `driftloop_drift_confirmed` Asset (emitted by `drift_monitor`), on the 1st of every
month, or by hand (Params: reason, `last_n_days`, epochs, image size, base, `dry_run`, and
`drift_event_id` to retrain for a drift event after its review).

1. `plan` — why (drift event, schedule, person), which days, and the `auto_retrain` flag (policy
   file, overridable by the Airflow Variable `driftloop_auto_retrain`). Off: a confirmed drift
   opens a **review** instead of training. `dry_run`: snapshot only.
2. `snapshot_dataset` — labeled frames of the window + the fixed golden set → an immutable YOLO
   dataset under `datasets/<sha256>/` with a manifest; `reference_profile` — the drift reference
   of the training window, stored with the model version.
3. `train` — one entrypoint (`python -m driftloop.training.train`): a KubernetesPodOperator on the
   GPU pool (`DRIFTLOOP_TRAINING_BACKEND=kubernetes`) or the training virtualenv on this machine
   (`local`); pool `gpu` caps concurrent trainings. It trains, exports ONNX FP32 + INT8 and logs
   everything to MLflow (experiment `retrain-detector`).
4. `register_candidate` — an MLflow model version with dataset hash, code version, trigger and
   drift event tags (one per DAG run, also when re-run).
5. `evaluate` — candidate and champion on the same evaluation split in one process: mAP@0.5 and
   mAP@0.5:0.95 with a paired bootstrap CI of the delta, INT8 p95 latency measured interleaved,
   INT8-vs-FP32 loss. `gate` applies `promotion_policy.yaml`; any evaluation error → no promotion.
6. `promote` (alias `champion`, old one → `previous-champion`; or `challenger` per policy),
   after an operator's approval when the policy asks — or `reject` (reasons tagged on the
   version, champion untouched). Then the model card + `model.json`, retention, and the
   hash-chained audit ledger (`python -m driftloop.audit.ledger verify`).

A failed run leaves the champion untouched, records the failed tasks in the ledger and marks
its drift event `RETRAINING_FAILED`. To undo a promotion, trigger `rollback_detector`.
"""

default_args = {"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(minutes=5)}


def _promotion_policy():
    from driftloop.promotion.gate import DEFAULT_PROMOTION_POLICY_PATH, load_promotion_policy

    return load_promotion_policy(
        os.environ.get("DRIFTLOOP_PROMOTION_POLICY_PATH", DEFAULT_PROMOTION_POLICY_PATH)
    )


@dag(
    dag_id="retrain_detector",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(RETRAIN_CRON, timezone="UTC"), assets=DRIFT_CONFIRMED
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    doc_md=DOC,
    tags=["driftloop", "training", "registry"],
    params={
        "reason": Param(
            "manual retraining",
            type="string",
            minLength=3,
            description="Why this run: recorded in the ledger and the model card.",
        ),
        "last_n_days": Param(
            14,
            type="integer",
            minimum=1,
            maximum=90,
            description="Days of labeled frames to train on, ending at end_date.",
        ),
        "end_date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Last day of the training window (default: the drift window's end, else yesterday).",
        ),
        "epochs": Param(
            5,
            type="integer",
            minimum=0,
            maximum=500,
            description="Training epochs (0: no training, the base model is the candidate).",
        ),
        "imgsz": Param(
            160,
            type="integer",
            minimum=64,
            maximum=1280,
            multipleOf=32,
            description="Training and serving image size.",
        ),
        "batch": Param(
            16, type="integer", minimum=1, maximum=512, description="Training batch size."
        ),
        "hyperparameters": Param(
            {},
            type="object",
            description="Ultralytics training arguments (name: value) over the defaults: AdamW, no warm-up, lr0 0.005 from a model yaml, 0.0005 when fine-tuning the champion. Logged with the run.",
        ),
        "base": Param(
            "champion",
            type="string",
            description="`champion` (fine-tune its weights; a model yaml when there is none) or a model yaml such as yolo11n.yaml.",
        ),
        "drift_event_id": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description="Retrain for this drift event (after a review, when auto_retrain is off): linked in the ledger, the model version and the event's status.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            description="Snapshot the dataset and stop: no training, no registry change.",
        ),
    },
)
def retrain_detector():
    # retries=0: everything it refuses (unknown conf keys, a bad Param or drift event id, a
    # mistyped Variable) needs a person to change something; a retry only holds the run slot
    @task(retries=0)
    def plan(params=None, triggering_asset_events=None, dag=None, dag_run=None) -> dict:
        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.retrain.steps import (
            AUTO_RETRAIN_VARIABLE,
            plan_retrain,
            resolve_auto_retrain,
            resolve_trigger,
            take_up_drift_event,
        )

        events = (
            [e.extra for e in (triggering_asset_events or {}).get(DRIFT_CONFIRMED, [])]
            if triggering_asset_events
            else []
        )
        from driftloop.airflow.run_conf import check_conf_keys

        # the Task SDK's DagRunType prints as "DagRunType.SCHEDULED": compare its value
        run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
        trigger = resolve_trigger(params, events, str(run_type))
        # the same "day before the run" as drift_monitor's window (see driftloop.contracts.windows)
        moment = dag_run.logical_date or dag_run.run_after
        try:
            check_conf_keys(dag_run.conf, list(dag.params), dag.dag_id)
            auto_retrain = resolve_auto_retrain(
                _promotion_policy().auto_retrain, Variable.get(AUTO_RETRAIN_VARIABLE, default=None)
            )
            planned = plan_retrain(
                params,
                trigger,
                today=pendulum.instance(moment).in_tz("UTC").date(),
                auto_retrain=auto_retrain,
            )
            take_up_drift_event(Settings.from_env(), planned, dag_run.run_id)
        except (ValueError, LookupError) as err:  # bad input: fix it, a retry cannot
            raise AirflowFailException(str(err)) from err
        return planned

    @task.branch
    def route(plan: dict) -> str:
        return {
            "review": "open_review",
            "dry_run": "snapshot_dataset",
            "train": "snapshot_dataset",
        }[plan["action"]]

    @task
    def open_review(plan: dict, run_id=None) -> dict:
        from driftloop.retrain.steps import open_review as open_it

        return open_it(Settings.from_env(), plan, run_id)

    @task
    def snapshot_dataset(plan: dict, run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from driftloop.retrain import snapshot
        from driftloop.retrain.snapshot import NoFramesError

        s3, settings = s3_for_task()
        try:
            return snapshot(s3, settings, plan, run_id)
        except NoFramesError as err:
            if plan["trigger"]["kind"] == "schedule":
                # the routine retraining has nothing to learn from: nothing to do, not an error
                raise AirflowSkipException(f"scheduled retraining skipped: {err}") from err
            # a drift or a person asked for it: no labeled data is an error no retry fixes
            raise AirflowFailException(str(err)) from err

    @task.branch
    def continue_or_stop(plan: dict) -> str:
        return "dry_run_done" if plan["action"] == "dry_run" else "reference_profile"

    dry_run_done = EmptyOperator(
        task_id="dry_run_done",
        doc_md="Dry run: the dataset snapshot is written; nothing else changes.",
    )

    @task
    def reference_profile(plan: dict) -> dict:
        from driftloop.drift.decision import load_policy
        from driftloop.retrain.steps import training_window_reference

        s3, settings = s3_for_task()
        return training_window_reference(
            s3, settings, plan, load_policy(settings.policy_path).sample_size
        )

    if BACKEND == "kubernetes":

        @task
        def training_arguments(plan: dict, snapshot: dict, run_id=None) -> list:
            from driftloop.airflow.training_task import XCOM_RETURN_PATH, pod_arguments
            from driftloop.retrain.steps import resolve_base
            from driftloop.retrain.steps import training_arguments as arguments

            settings = Settings.from_env()
            return pod_arguments(
                arguments(plan, snapshot, resolve_base(settings, plan), run_id, XCOM_RETURN_PATH)
            )

        def train_in_pod(arguments):
            from driftloop.airflow.training_task import training_pod_operator

            return training_pod_operator(
                task_id="train",
                image=TRAINING_IMAGE,
                namespace=os.environ.get("DRIFTLOOP_TRAINING_NAMESPACE", "driftloop"),
                arguments=arguments,  # the list computed by training_arguments, at run time
                mlflow_tracking_uri=SETTINGS.mlflow_tracking_uri,
                bucket=SETTINGS.bucket,
                retries=0,
                execution_timeout=timedelta(hours=6),
            )
    else:

        @task(task_id="train", pool="gpu", retries=0, execution_timeout=timedelta(hours=6))
        def train_locally(plan: dict, snapshot: dict, run_id=None) -> dict:
            from driftloop.retrain.steps import train_local

            return train_local(Settings.from_env(), plan, snapshot, run_id)

    @task
    def register_candidate(
        plan: dict, snapshot: dict, training: dict, reference: dict, run_id=None
    ) -> dict:
        from driftloop.retrain.steps import register

        s3, settings = s3_for_task()
        return register(s3, settings, plan, snapshot, training, reference, run_id)

    @task(retries=0)
    def evaluate(snapshot: dict, candidate: dict, run_id=None) -> dict:
        from driftloop.retrain.steps import evaluate as run_evaluation

        s3, settings = s3_for_task()
        return run_evaluation(s3, settings, snapshot, candidate, _promotion_policy(), run_id)

    # all_done: a failed evaluation still reaches the gate, which then rejects (fail closed).
    # Inputs are pulled, not passed, so that a missing candidate skips instead of erroring.
    @task(trigger_rule="all_done")
    def gate(run_id=None, ti=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from driftloop.retrain.steps import gate as decide

        candidate = ti.xcom_pull(task_ids="register_candidate")
        if not candidate:
            raise AirflowSkipException("no registered candidate: nothing to decide")
        evaluation = ti.xcom_pull(task_ids="evaluate")
        return decide(Settings.from_env(), evaluation, candidate, _promotion_policy(), run_id)

    @task.branch
    def route_decision(decision: dict) -> str:
        if not decision["promote"]:
            return "rejected_by_gate"
        return "await_promotion_approval" if decision["requires_approval"] else "approved_by_policy"

    approved_by_policy = EmptyOperator(
        task_id="approved_by_policy", doc_md="The policy does not require an approval."
    )
    rejected_by_gate = EmptyOperator(
        task_id="rejected_by_gate", doc_md="The gate failed: see its checks."
    )

    await_promotion_approval = RecordedHITLBranchOperator(
        task_id="await_promotion_approval",
        subject="Promote driftloop-detector v{{ ti.xcom_pull(task_ids='register_candidate')['version'] }}?",
        body="The gate passed:\n\n```\n{{ ti.xcom_pull(task_ids='gate')['table'] }}\n```",
        options=["Promote", "Reject"],
        options_mapping={"Promote": "promote", "Reject": "reject"},
        response_timeout=timedelta(hours=48),
        retries=0,
    )

    def outcome_inputs(ti) -> tuple[dict, dict, dict | None]:
        """The candidate, the gate's decision and the operator's answer (None without one)."""
        return (
            ti.xcom_pull(task_ids="register_candidate"),
            ti.xcom_pull(task_ids="gate"),
            ti.xcom_pull(task_ids="await_promotion_approval", key=ANSWER_XCOM_KEY),
        )

    # Upstream of it are only the two approval paths, so it is skipped unless one was taken.
    @task(trigger_rule="none_failed_min_one_success")
    def promote(run_id=None, ti=None) -> dict:
        from driftloop.retrain.steps import promote as do_promote

        return do_promote(Settings.from_env(), *outcome_inputs(ti), run_id)

    # like promote: upstream only the gate's and the operator's reject paths
    @task(trigger_rule="none_failed_min_one_success")
    def reject(run_id=None, ti=None) -> dict:
        from driftloop.retrain.steps import reject as do_reject

        return do_reject(Settings.from_env(), *outcome_inputs(ti), run_id)

    # after promote or reject, whichever ran (inputs pulled: its only upstreams are those two)
    @task(trigger_rule="none_failed_min_one_success")
    def model_record(ti=None) -> dict:
        from driftloop.retrain.steps import write_model_record

        pull = {
            name: ti.xcom_pull(task_ids=name)
            for name in (
                "plan",
                "snapshot_dataset",
                "register_candidate",
                "gate",
                "reference_profile",
                "evaluate",
            )
        }
        return write_model_record(
            Settings.from_env(),
            pull["snapshot_dataset"],
            pull["evaluate"],
            pull["gate"],
            pull["register_candidate"],
            pull["plan"],
            pull["reference_profile"],
        )

    @task(trigger_rule="none_failed_min_one_success")
    def retention(run_id=None) -> dict:
        from driftloop.retrain.steps import apply_retention

        return apply_retention(Settings.from_env(), _promotion_policy(), run_id)

    @task(trigger_rule="one_failed", retries=0)
    def record_failure(run_id=None, ti=None) -> dict:
        from driftloop.retrain.steps import record_failure as record

        # the task SDK's DagRun has no task instances: ask the API server for the run's states
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {})
        failed = sorted(task for task, state in states.items() if state == "failed")
        return record(Settings.from_env(), ti.xcom_pull(task_ids="plan"), run_id, failed)

    planned = plan()
    routed = route(planned)
    review = open_review(planned)
    snap = snapshot_dataset(planned)
    routed >> [review, snap]
    ref = reference_profile(planned)
    snap >> continue_or_stop(planned) >> [dry_run_done, ref]
    if BACKEND == "kubernetes":
        trained = train_in_pod(training_arguments(planned, snap)).output
        ref >> trained
    else:
        trained = train_locally(planned, snap)
        ref >> trained
    candidate = register_candidate(planned, snap, trained, ref)
    evaluated = evaluate(snap, candidate)
    decision = gate()
    [candidate, evaluated] >> decision
    promoted = promote()
    rejected = reject()
    route_decision(decision) >> [rejected_by_gate, await_promotion_approval, approved_by_policy]
    approved_by_policy >> promoted
    rejected_by_gate >> rejected
    await_promotion_approval >> [promoted, rejected]
    record = model_record()
    [promoted, rejected] >> record >> retention()
    [snap, ref, trained, candidate, decision] >> record_failure()


retrain_detector()
