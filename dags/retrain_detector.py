"""retrain_detector: from confirmed drift to a promoted (or rejected) and audited model.

The graph and each step are described in its `doc_md`
(:data:`driftloop.airflow.retrain_doc.RETRAIN_DETECTOR_DOC`); the logic lives in
`driftloop.retrain`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, TaskGroup, dag, task

from driftloop.airflow.announce import announce_task
from driftloop.airflow.assets import CHAMPION, DRIFT_CONFIRMED, LABELS, ROLLOUT
from driftloop.airflow.hitl import RecordedHITLBranchOperator
from driftloop.airflow.notifiers import event_notifier, task_failure_notifier
from driftloop.airflow.retrain_doc import RETRAIN_DETECTOR_DOC
from driftloop.airflow.retrain_params import retrain_detector_params
from driftloop.airflow.s3 import s3_for_task
from driftloop.config.settings import Settings

# read when the file is parsed: the backend (`local` here, `kubernetes` in production), the
# image and namespace of the training pod, and the scheduled retraining (UTC cron; Airflow
# runs its latest past time when it first sees the DAG, catchup=False: a scheduled run with
# no labeled frames in its window ends skipped)
SETTINGS = Settings.from_env()
#: why this run announces a new champion or a started rollout (None: it does not)
ANNOUNCEMENT = "driftloop.promotion.rollout_transitions:promotion_announcement"

default_args = {
    "owner": "ml-platform",
    "retries": 1,
    "retry_delay": timedelta(minutes=5),
    # a task that fails for good posts to the alerts webhook (the run's drift event: the plan's)
    "on_failure_callback": task_failure_notifier(drift_event_task="plan"),
}


@dag(
    dag_id="retrain_detector",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(SETTINGS.retrain_cron, timezone="UTC"),
        assets=DRIFT_CONFIRMED | LABELS,
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    doc_md=RETRAIN_DETECTOR_DOC,
    tags=["driftloop", "training", "registry"],
    params=retrain_detector_params(),
)
def retrain_detector():
    # everything it refuses (unknown conf keys, a bad Param, policy override, drift event id or
    # label event, a mistyped Variable) needs a person: AirflowFailException, no retry. A store
    # error (the champion's snapshot for new labels, the drift history) is retried once.
    @task(retries=1, retry_delay=timedelta(seconds=30))
    def plan(params=None, triggering_asset_events=None, dag=None, dag_run=None, run_id=None):
        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.airflow.run_conf import check_conf_keys
        from driftloop.retrain.plan import AUTO_RETRAIN_VARIABLE, asset_event_extras, plan_run

        try:
            check_conf_keys(dag_run.conf, list(dag.params), dag.dag_id)
            s3, settings = s3_for_task()
            return plan_run(
                settings,
                params,
                asset_events=asset_event_extras(triggering_asset_events, DRIFT_CONFIRMED),
                label_events=asset_event_extras(triggering_asset_events, LABELS),
                s3=s3,
                run_type=dag_run.run_type,
                moment=dag_run.logical_date or dag_run.run_after,
                auto_retrain_variable=Variable.get(AUTO_RETRAIN_VARIABLE, default=None),
                run_id=run_id,
            )
        except (ValueError, LookupError) as err:  # bad input: fix it, a retry cannot
            raise AirflowFailException(str(err)) from err

    @task.branch
    def route(plan: dict) -> str:
        from driftloop.retrain.plan import after_plan

        return after_plan(plan)

    @task
    def open_review(plan: dict, run_id=None) -> dict:
        from driftloop.retrain.plan import open_review as open_it

        return open_it(Settings.from_env(), plan, run_id)

    @task
    def skip_training(plan: dict, run_id=None) -> dict:
        from driftloop.retrain.plan import skip_training as skip

        return skip(Settings.from_env(), plan, run_id)

    @task
    def snapshot_dataset(plan: dict, run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from driftloop.evaluation.golden import GoldenSetIntegrityError, GoldenSetMissing
        from driftloop.retrain.frames import NoFramesError
        from driftloop.retrain.snapshot import snapshot_for_plan

        s3, settings = s3_for_task()
        try:
            return snapshot_for_plan(s3, settings, plan, run_id)
        except (GoldenSetMissing, GoldenSetIntegrityError) as err:  # a person must publish it
            raise AirflowFailException(str(err)) from err
        except NoFramesError as err:
            if plan["trigger"]["kind"] == "schedule":
                # the routine retraining has nothing to learn from: nothing to do, not an error
                raise AirflowSkipException(f"scheduled retraining skipped: {err}") from err
            # a drift or a person asked for it: no labeled data is an error no retry fixes
            raise AirflowFailException(str(err)) from err

    @task.branch
    def continue_or_stop(plan: dict) -> str:
        from driftloop.retrain.plan import after_snapshot

        return after_snapshot(plan)

    @task
    def reference_profile(plan: dict, training: dict, run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.config.drift_policy import load_policy
        from driftloop.retrain.reference_profile import training_window_reference

        s3, settings = s3_for_task()
        policy = load_policy(settings.policy_path)
        try:
            return training_window_reference(
                s3,
                settings,
                plan,
                training,
                run_id,
                sample_size=policy.sample_size,
                max_frames_per_day=policy.reference_scoring.max_frames_per_day,
            )
        except ValueError as err:  # no data, a bad model or partition: a retry cannot fix it
            raise AirflowFailException(str(err)) from err

    @task
    def training_arguments(plan: dict, snapshot: dict, run_id=None) -> list:
        from driftloop.airflow.training_task import XCOM_RETURN_PATH, pod_arguments
        from driftloop.retrain.training_arguments import resolve_base
        from driftloop.retrain.training_arguments import training_arguments as arguments

        settings = Settings.from_env()
        return pod_arguments(
            arguments(plan, snapshot, resolve_base(settings, plan), run_id, XCOM_RETURN_PATH)
        )

    def train_in_pod(arguments):
        from driftloop.airflow.training_task import training_pod_operator

        return training_pod_operator(
            task_id="train",
            image=SETTINGS.training_image,
            namespace=SETTINGS.training_namespace,
            arguments=arguments,  # the list computed by training_arguments, at run time
            # the pods run on the GPU cluster, which may reach MLflow by another address
            mlflow_tracking_uri=SETTINGS.training_mlflow_tracking_uri
            or SETTINGS.mlflow_tracking_uri,
            bucket=SETTINGS.bucket,
            retries=0,
            execution_timeout=timedelta(hours=6),
        )

    @task(task_id="train", pool="gpu", retries=0, execution_timeout=timedelta(hours=6))
    def train_locally(plan: dict, snapshot: dict, run_id=None, ti=None) -> dict:
        from driftloop.airflow.links import MLFLOW_RUN_URL_KEY, mlflow_run_url
        from driftloop.retrain.local_training import train_local

        settings = Settings.from_env()
        trained = train_local(settings, plan, snapshot, run_id)
        url = mlflow_run_url(
            settings.mlflow_tracking_uri, trained["experiment_id"], trained["run_id"]
        )
        ti.xcom_push(key=MLFLOW_RUN_URL_KEY, value=url)
        return trained

    @task(
        doc_md="Registers the run's INT8 ONNX MLflow model. Extra links: **MLflow run** (the "
        "training run) and **Registered model** (the version's page in the MLflow UI)."
    )
    def register_candidate(
        plan: dict, snapshot: dict, training: dict, reference: dict, run_id=None, ti=None
    ) -> dict:
        from driftloop.airflow.links import MLFLOW_RUN_URL_KEY, REGISTERED_MODEL_URL_KEY
        from driftloop.retrain.register import register

        s3, settings = s3_for_task()
        registered = register(s3, settings, plan, snapshot, training, reference, run_id)
        ti.xcom_push(key=MLFLOW_RUN_URL_KEY, value=registered["run_url"])
        ti.xcom_push(key=REGISTERED_MODEL_URL_KEY, value=registered["model_url"])
        return registered

    @task(retries=0)
    def evaluate(snapshot: dict, candidate: dict, params=None, run_id=None) -> dict:
        from driftloop.retrain.evaluate import evaluate as run_evaluation
        from driftloop.retrain.policy import run_policy

        s3, settings = s3_for_task()
        policy = run_policy(settings, params)
        return run_evaluation(s3, settings, snapshot, candidate, policy, run_id)

    # all_done: a failed evaluation still reaches the gate, which then rejects (fail closed).
    # The candidate comes from the registry and the evaluation from the ledger, not XCom.
    @task(trigger_rule="all_done")
    def gate(params=None, run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from driftloop.retrain.decision import PromotionRefused, registered_candidate
        from driftloop.retrain.decision import gate as decide
        from driftloop.retrain.policy import run_policy

        settings = Settings.from_env()
        candidate = registered_candidate(settings, run_id)
        if candidate is None:
            raise AirflowSkipException("no registered candidate: nothing to decide")
        try:
            return decide(settings, candidate.version, run_policy(settings, params), run_id)
        except PromotionRefused as err:
            raise AirflowFailException(str(err)) from err

    @task.branch
    def route_decision(decision: dict) -> str:
        from driftloop.retrain.decision import after_gate

        return after_gate(decision)

    # Upstream of it are only the two approval paths, so it is skipped unless one was taken.
    # It acts on the ledger (gate row, approval row) and the registry, never on XCom.
    # success: the promotion as the ledger recorded it goes to the alerts webhook
    @task(
        trigger_rule="none_failed_min_one_success", on_success_callback=event_notifier("promotion")
    )
    def promote(run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.promotion.transactions import ChampionMoved
        from driftloop.retrain.decision import PromotionRefused
        from driftloop.retrain.decision import promote as do_promote
        from driftloop.retrain.finish import resolve_drift_event

        settings = Settings.from_env()
        try:
            promoted = do_promote(settings, run_id)
        except (PromotionRefused, ChampionMoved) as err:  # records or registry say no: final
            raise AirflowFailException(str(err)) from err
        # a new champion resolves the drift event this run retrained for (from the ledger)
        return {**promoted, "drift_event": resolve_drift_event(settings, run_id)}

    # like promote: upstream only the gate's and the operator's reject paths
    @task(
        trigger_rule="none_failed_min_one_success", on_success_callback=event_notifier("rejection")
    )
    def reject(run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.retrain.decision import PromotionRefused
        from driftloop.retrain.decision import reject as do_reject

        try:
            return do_reject(Settings.from_env(), run_id)
        except PromotionRefused as err:
            raise AirflowFailException(str(err)) from err

    # after promote: the routing document follows the aliases (from the ledger's promote row)
    @task
    def update_routing(run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from driftloop.promotion.rollout_transitions import RolloutRefused, after_promotion
        from driftloop.promotion.routing import RoutingMoved
        from driftloop.promotion.transactions import ChampionMoved

        try:
            return after_promotion(*s3_for_task(), run_id)
        except (RolloutRefused, RoutingMoved, ChampionMoved) as err:  # no retry fixes these
            raise AirflowFailException(str(err)) from err

    # right after the gate, before any alias moves: the record of what would be promoted is
    # complete (and its hash tagged on the version) before promote may act on it
    @task
    def model_record(decision: dict, ti=None) -> dict:
        from driftloop.retrain.model_card import write_model_record

        pull = {
            name: ti.xcom_pull(task_ids=name)
            for name in (
                "plan",
                "snapshot_dataset",
                "register_candidate",
                "reference_profile",
                "evaluate",
            )
        }
        return write_model_record(
            Settings.from_env(),
            pull["snapshot_dataset"],
            pull["evaluate"],
            decision,
            pull["register_candidate"],
            pull["plan"],
            pull["reference_profile"],
        )

    @task(trigger_rule="none_failed_min_one_success")
    def retention(params=None, run_id=None) -> dict:
        from driftloop.retrain.finish import apply_retention
        from driftloop.retrain.policy import run_policy

        settings = Settings.from_env()
        return apply_retention(settings, run_policy(settings, params), run_id)

    @task(trigger_rule="one_failed", retries=0)
    def record_failure(run_id=None, ti=None) -> dict:
        from driftloop.retrain.finish import record_failure as record

        # the task SDK's DagRun has no task instances: ask the API server for the run's states
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {})
        failed = sorted(task for task, state in states.items() if state == "failed")
        return record(Settings.from_env(), ti.xcom_pull(task_ids="plan"), run_id, failed)

    # wiring: groups for the graph view only (prefix_group_id=False keeps the task ids)
    planned = plan()
    routed = route(planned)
    review = open_review(planned)
    skipped = skip_training(planned)
    with TaskGroup("dataset", prefix_group_id=False, tooltip="snapshot"):
        snap = snapshot_dataset(planned)
        dry_run_done = EmptyOperator(
            task_id="dry_run_done",
            doc_md="Dry run: the dataset snapshot is written; nothing else changes.",
        )
        stop_or_train = continue_or_stop(planned)
        snap >> stop_or_train >> dry_run_done
    routed >> [review, skipped, snap]
    # continue_or_stop names the group: Airflow follows it to train or training_arguments
    with TaskGroup("training", prefix_group_id=False, tooltip="train, reference, register"):
        if SETTINGS.training_backend == "kubernetes":
            arguments = training_arguments(planned, snap)
            stop_or_train >> arguments
            trained = train_in_pod(arguments).output  # the pod's XCom: the training result
        else:
            trained = train_locally(planned, snap)
            stop_or_train >> trained
        ref = reference_profile(planned, trained)
        candidate = register_candidate(planned, snap, trained, ref)
    with TaskGroup("evaluation", prefix_group_id=False, tooltip="candidate vs champion, gate"):
        evaluated = evaluate(snap, candidate)
        decision = gate()
        [candidate, evaluated] >> decision
        record = model_record(decision)
        decided = route_decision(decision)
        record >> decided
    with TaskGroup("promotion", prefix_group_id=False, tooltip="approval, alias or rejection"):
        approved_by_policy = EmptyOperator(
            task_id="approved_by_policy", doc_md="The policy does not require an approval."
        )
        rejected_by_gate = EmptyOperator(
            task_id="rejected_by_gate", doc_md="The gate failed: see its checks."
        )
        await_promotion_approval = RecordedHITLBranchOperator(
            task_id="await_promotion_approval",
            # worded from the gate's ledger row when the task starts (see promotion_request)
            subject="Promote the candidate of this run?",
            describe_request="driftloop.retrain.decision:promotion_request",
            options=["Promote", "Reject"],
            options_mapping={"Promote": "promote", "Reject": "reject"},
            record_answer="driftloop.retrain.decision:record_promotion_answer",
            response_timeout=timedelta(hours=48),
            retries=0,
        )
        promoted = promote()
        rejected = reject()
        approved_by_policy >> promoted
        rejected_by_gate >> rejected
        await_promotion_approval >> [promoted, rejected]
        routed = update_routing()
        (
            promoted
            >> routed
            >> [
                announce_task(CHAMPION, "champion", ANNOUNCEMENT),
                announce_task(ROLLOUT, "rollout", ANNOUNCEMENT),
            ]
        )
    decided >> [rejected_by_gate, await_promotion_approval, approved_by_policy]
    with TaskGroup("record", prefix_group_id=False, tooltip="retention"):
        retained = retention()
        [promoted, rejected] >> retained
    # every failure from the dataset on reaches the ledger and the drift event
    after_training = [candidate, evaluated, decision, record, decided, await_promotion_approval]
    [snap, ref, trained, *after_training, promoted, routed, rejected, retained] >> record_failure()


retrain_detector()
