"""``retrain_detector``'s ``snapshot_dataset`` task: which snapshot errors fail at once (no retry
can fix them) and which end a scheduled run skipped. The DAG's own task callable, against the
session's moto server."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import REPO
from tests.unit.conftest import s3_client_for


@pytest.fixture(scope="module")
def snapshot_task():
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(REPO / "dags" / "retrain_detector.py"))
    return dagbag.dags["retrain_detector"].get_task("snapshot_dataset")


@pytest.fixture
def empty_bucket(moto_endpoint, snapshot_task, monkeypatch):
    """A bucket with nothing in it, which the task's S3 client and settings point at."""
    from driftloop.config.settings import Settings

    s3 = s3_client_for(moto_endpoint)
    bucket = f"snap-task-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv("DRIFTLOOP_BUCKET", bucket)
    task_globals = snapshot_task.python_callable.__globals__
    monkeypatch.setitem(task_globals, "s3_for_task", lambda: (s3, Settings.from_env()))
    return bucket


@pytest.mark.parametrize("trigger", ["schedule", "drift", "manual"])
def test_a_missing_golden_set_fails_at_once_whoever_asked(snapshot_task, empty_bucket, trigger):
    from airflow.sdk.exceptions import AirflowFailException

    plan = {"days": ["2031-01-01"], "trigger": {"kind": trigger}}
    with pytest.raises(AirflowFailException, match=f"s3://{empty_bucket}/labeled/golden/v1/"):
        snapshot_task.python_callable(plan, run_id="manual__no-golden")
