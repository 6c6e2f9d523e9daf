"""Every DAG file parses, follows the house rules, and imports nothing heavy at parse time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DAG_FILES = sorted((REPO / "dags").glob("*.py"))
HEAVY_MODULES = (
    "pandas",
    "evidently",
    "mlflow",
    "great_expectations",
    "sklearn",
    "torch",
    "ultralytics",
    "onnxruntime",
    "kubernetes",
    "boto3",
    "botocore",
    "numpy",
    "pyarrow",
    "scipy",
    "sqlalchemy",
)


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def _dags_of(dagbag, path: Path):
    return [dag for dag in dagbag.dags.values() if Path(dag.fileloc) == path]


def test_dags_folder_has_dag_files():
    assert DAG_FILES, "no DAG files in dags/"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_without_errors(dagbag, path):
    assert str(path) not in dagbag.import_errors, dagbag.import_errors.get(str(path))
    assert _dags_of(dagbag, path), f"{path.name} defines no DAG"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_follows_house_rules(dagbag, path):
    for dag in _dags_of(dagbag, path):
        assert dag.tags, dag.dag_id
        assert "driftloop" in dag.tags, dag.dag_id
        assert dag.doc_md, f"{dag.dag_id}: doc_md missing"
        assert len(dag.doc_md) > 200, f"{dag.dag_id}: doc_md thin"
        assert dag.catchup is False, dag.dag_id
        for task in dag.tasks:
            assert task.owner not in (None, "", "airflow"), (
                f"{dag.dag_id}.{task.task_id} has no owner"
            )
        retried = [t for t in dag.tasks if t.retries >= 1]
        assert len(retried) >= len(dag.tasks) // 2, f"{dag.dag_id}: most tasks should retry"
        for name, param in dag.params.items():
            assert "type" in param.schema, f"{dag.dag_id}: Param {name!r} is untyped"
            assert param.description, f"{dag.dag_id}: Param {name!r} has no description"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_no_heavy_library(path):
    """What the DAG file itself adds at parse time, in a fresh interpreter. The ``airflow.*``
    modules the file names are imported first, as the DAG processor pre-imports them
    (``parsing_pre_import_modules``): a provider's own imports are not the file's cost."""
    probe = (
        "import importlib, importlib.util, json, sys, time\n"
        "from airflow.utils.file import iter_airflow_imports\n"
        f"for name in iter_airflow_imports({str(path)!r}):\n"
        "    importlib.import_module(name)\n"
        "preloaded = set(sys.modules)\n"
        f"spec = importlib.util.spec_from_file_location('dag_under_test', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "began = time.perf_counter()\n"
        "spec.loader.exec_module(module)\n"
        "seconds = time.perf_counter() - began\n"
        f"heavy = [m for m in {HEAVY_MODULES!r} if m in set(sys.modules) - preloaded]\n"
        "print(json.dumps({'heavy': heavy, 'seconds': seconds}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], f"{path.name} imports {result['heavy']} at parse time"
    print(f"{path.name}: parsed in {result['seconds']:.2f} s")


def test_drift_monitor_wiring(dagbag):
    dag = dagbag.dags["drift_monitor"]
    sensor = dag.get_task("wait_for_data")
    assert sensor.deferrable
    assert sensor.soft_fail
    assert "_SUCCESS" in sensor.bucket_key
    # every kind of run places its window the same way: the end day comes from resolve_run,
    # never from a template variable that Asset- and REST-triggered runs do not have
    assert "resolve_run" in sensor.bucket_key
    assert "data_interval" not in sensor.bucket_key
    first = dag.get_task("resolve_run")
    assert first.upstream_task_ids == set()
    assert first.retries == 0
    assert sensor.upstream_task_ids == {"resolve_run"}
    assert "log_to_mlflow" in dag.get_task("open_drift_event").upstream_task_ids
    # the champion's measured performance is judged in the decision, next to input drift
    assert dag.get_task("measure_performance").upstream_task_ids == {"plan"}
    assert "measure_performance" in dag.get_task("decide").upstream_task_ids
    # the form is worded when the task starts from the recorded event and the check's MLflow
    # run (published by log_to_mlflow, upstream of the event), never from XCom templates
    approval = dag.get_task("await_approval")
    assert approval.describe_request == "driftloop.drift.events:drift_request"
    assert "log_to_mlflow" in {t.task_id for t in approval.get_flat_relatives(upstream=True)}
    profile = dag.get_task("profile_partition")
    assert profile.is_mapped if hasattr(profile, "is_mapped") else True
    route = dag.get_task("route")
    assert route.downstream_task_ids == {"no_drift", "notify_warning", "open_drift_event"}
    confirm = dag.get_task("confirm_drift")
    assert confirm.upstream_task_ids == {"open_drift_event", "approved_by_policy", "await_approval"}
    assert [o.name for o in confirm.outlets] == ["driftloop_drift_confirmed"]
    assert dag.get_task("await_approval").options == ["Retrain", "Ignore", "Accept as new normal"]
    assert dag.get_task("accept_new_normal").upstream_task_ids == {
        "open_drift_event",
        "await_approval",
    }


def test_retrain_detector_wiring(dagbag):
    dag = dagbag.dags["retrain_detector"]
    assert dag.max_active_runs == 1
    assert {"reason", "last_n_days", "epochs", "imgsz", "base", "dry_run"} <= set(dag.params)
    assert dag.params["last_n_days"] == 14
    assert dag.get_task("train").pool == "gpu"
    # bad Params and conf keys fail at once (AirflowFailException); a store error retries once
    assert dag.get_task("plan").retries == 1
    # promotion and rejection are reachable only through their approval paths
    assert dag.get_task("promote").upstream_task_ids == {
        "approved_by_policy",
        "await_promotion_approval",
    }
    assert dag.get_task("reject").upstream_task_ids == {
        "rejected_by_gate",
        "await_promotion_approval",
    }
    assert dag.get_task("gate").trigger_rule == "all_done"  # an evaluation error still reaches it
    assert dag.get_task("route").downstream_task_ids == {
        "open_review",
        "skip_training",
        "snapshot_dataset",
    }
    assert dag.get_task("await_promotion_approval").options == ["Promote", "Reject"]
    # the candidate's drift reference comes from its training output, before its registration
    assert dag.get_task("reference_profile").upstream_task_ids == {"plan", "train"}
    assert "reference_profile" in dag.get_task("register_candidate").upstream_task_ids
    assert "reference_profile" in dag.get_task("record_failure").upstream_task_ids


def test_retrain_detector_starts_on_drift_or_new_labels(dagbag):
    from driftloop.retrain.plan import ACTIONS, after_plan

    dag = dagbag.dags["retrain_detector"]
    condition = dag.timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"  # either Asset starts a run
    assert {asset.name for asset in condition.objects} == {
        "driftloop_drift_confirmed",
        "driftloop_labels",
    }
    assert dag.timetable.timetable.expression == "0 4 1 * *"  # and the monthly cron
    # every action of a plan names one of route's branches
    assert {after_plan({"action": action}) for action in ACTIONS} == set(
        dag.get_task("route").downstream_task_ids
    )
    assert dag.get_task("skip_training").downstream_task_ids == set()


def test_labels_landed_wiring(dagbag):
    from airflow.sdk import CronTriggerTimetable

    dag = dagbag.dags["labels_landed"]
    assert dag.max_active_runs == 1
    assert dag.is_paused_upon_creation is True  # an operator turns label-started training on
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == "0 * * * *"  # hourly
    announce = dag.get_task("announce_labels")
    assert [o.name for o in announce.outlets] == ["driftloop_labels"]
    assert announce.upstream_task_ids == {"find_new_days"}
    record = dag.get_task("record_announced")
    # the records follow the event (a failure in between announces again, never loses a day)
    assert record.upstream_task_ids == {"find_new_days", "announce_labels"}
    assert record.trigger_rule == "none_failed"  # also after a skipped announcement
    assert record.outlets == []


@pytest.mark.parametrize("action", ["train", "dry_run"])
def test_retrain_detector_snapshot_branch_reaches_its_tasks(dagbag, action):
    """continue_or_stop's choice (a task id or the training group's id, which Airflow expands
    to the group's first tasks) names exactly one of its direct downstream tasks."""
    from driftloop.retrain.plan import after_snapshot

    dag = dagbag.dags["retrain_detector"]
    chosen = after_snapshot({"action": action})
    group = dag.task_group_dict.get(chosen)
    followed = {t.task_id for t in group.roots} if group else {chosen}
    assert dag.get_task("continue_or_stop").downstream_task_ids == {"dry_run_done", "train"}
    assert followed == ({"train"} if action == "train" else {"dry_run_done"})


def test_retrain_detector_kubernetes_backend_has_the_same_graph(dagbag, monkeypatch):
    """DRIFTLOOP_TRAINING_BACKEND=kubernetes swaps the local training task for a
    KubernetesPodOperator running the same entrypoint with the same arguments; the rest of
    the graph does not change. The pod is rendered without a cluster."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from driftloop.airflow.training_task import XCOM_RETURN_PATH, pod_arguments
    from driftloop.retrain.training_arguments import ResolvedBase, training_arguments
    from driftloop.training.train import build_parser

    monkeypatch.setenv("DRIFTLOOP_TRAINING_BACKEND", "kubernetes")
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes"}))
    k8s_bag = DagBag(dag_folder=str(REPO / "dags" / "retrain_detector.py"))
    assert not k8s_bag.import_errors, k8s_bag.import_errors
    local, k8s = dagbag.dags["retrain_detector"], k8s_bag.dags["retrain_detector"]

    assert set(k8s.task_ids) == set(local.task_ids) | {"training_arguments"}
    train = k8s.get_task("train")
    assert isinstance(train, KubernetesPodOperator)
    assert train.pool == "gpu"
    assert train.retries == 0
    assert train.upstream_task_ids == {"training_arguments"}
    assert train.downstream_task_ids == local.get_task("train").downstream_task_ids
    # the reference reads the pod's XCom (the training result), like the local task's return
    assert k8s.get_task("reference_profile").upstream_task_ids == {"plan", "train"}
    # the snapshot branch's group id now leads to the arguments, the group's first task
    assert [t.task_id for t in k8s.task_group_dict["training"].roots] == ["training_arguments"]
    for task_id in set(local.task_ids) - {"train"}:
        expected = set(local.get_task(task_id).downstream_task_ids)
        # they feed the arguments (or, the branch, start them), not the pod
        if task_id in ("plan", "snapshot_dataset", "continue_or_stop"):
            expected = expected - {"train"} | {"training_arguments"}
        assert k8s.get_task(task_id).downstream_task_ids == expected, task_id

    # what training_arguments returns at run time, rendered into the pod
    plan = {
        "days": ["2031-06-17", "2031-06-30"], "epochs": 30, "imgsz": 640, "batch": 32,
        "trigger": {"kind": "drift"}, "hyperparameters": {"lr0": 0.001},
    }  # fmt: skip
    snapshot = {"uri": "s3://driftloop/datasets/" + "a" * 64 + "/"}
    args = pod_arguments(
        training_arguments(
            plan,
            snapshot,
            ResolvedBase("runs:/abc/weights/best.pt", "b" * 64),  # weights go with their hash
            "run-1",
            XCOM_RETURN_PATH,
        )
    )
    train.arguments = args
    pod = train.build_pod_request_obj(dry_run=True)
    container = pod.spec.containers[0]
    assert container.args == args
    parsed = build_parser().parse_args(container.args)  # the entrypoint accepts them
    assert parsed.xcom_path == XCOM_RETURN_PATH
    assert parsed.epochs == 30
    assert parsed.base == "runs:/abc/weights/best.pt"
    assert parsed.base_sha256 == "b" * 64
    assert parsed.imgsz == 640
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert any(v.empty_dir and v.empty_dir.medium == "Memory" for v in pod.spec.volumes)
    assert pod.spec.security_context.run_as_non_root is True


def test_rollout_guard_wiring(dagbag):
    from airflow.sdk import AssetOrTimeSchedule

    dag = dagbag.dags["rollout_guard"]
    assert dag.max_active_runs == 1
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.timetable.expression == "0 * * * *"  # hourly
    assert str(dag.timetable.timetable.timezone) == "UTC"
    condition = dag.timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"  # either Asset starts a run
    assert {asset.name for asset in condition.objects} == {
        "driftloop_champion",
        "driftloop_rollout",
    }
    assert set(dag.params) == {"reason", "abort"}
    assert dag.params["abort"] is False
    # routing short-circuits the run; the evidence feeds the decision, which branches
    assert dag.get_task("routing").upstream_task_ids == set()
    assert dag.get_task("evidence").upstream_task_ids == {"routing"}
    actions = {"hold", "to_canary", "promote", "reject", "rollback", "end_guard"}
    assert dag.get_task("decide").downstream_task_ids == actions
    for task_id in ("notify", "announce_champion", "announce_rollout"):
        task = dag.get_task(task_id)
        assert task.upstream_task_ids == actions, task_id
        assert task.trigger_rule == "none_failed_min_one_success", task_id
    assert [o.name for o in dag.get_task("announce_champion").outlets] == ["driftloop_champion"]
    assert [o.name for o in dag.get_task("announce_rollout").outlets] == ["driftloop_rollout"]


def test_promotion_and_rollback_announce_the_champion(dagbag):
    retrain = dagbag.dags["retrain_detector"]
    assert retrain.get_task("update_routing").upstream_task_ids == {"promote"}
    for name, asset in (("champion", "driftloop_champion"), ("rollout", "driftloop_rollout")):
        task = retrain.get_task(f"announce_{name}")
        assert task.upstream_task_ids == {"update_routing"}
        assert [o.name for o in task.outlets] == [asset]
    assert "update_routing" in retrain.get_task("record_failure").upstream_task_ids
    rollback = dagbag.dags["rollback_detector"].get_task("rollback")
    assert [o.name for o in rollback.outlets] == ["driftloop_champion"]
