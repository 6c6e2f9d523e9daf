"""labeling_queue: its schedule, Param and task (the house rules: test_dag_integrity.py)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags" / "labeling_queue.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["labeling_queue"]


def test_labeling_queue_is_one_daily_task_with_a_typed_day(dag):
    from driftloop.config.settings import Settings

    assert dag.task_ids == ["queue"]
    assert dag.timetable.expression == Settings().labeling_cron
    assert dag.max_active_runs == 1
    assert dag.get_task("queue").retries >= 1
    assert dag.params["day"] is None
    schema = dag.params.get_param("day").schema
    assert schema["type"] == ["null", "string"]
    assert schema["format"] == "date"
    assert {"driftloop", "labeling"} <= set(dag.tags)


def test_the_schedule_follows_the_setting(monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("DRIFTLOOP_LABELING_CRON", "15 6 * * 1-5")
    bag = DagBag(dag_folder=str(REPO / "dags" / "labeling_queue.py"))
    assert bag.dags["labeling_queue"].timetable.expression == "15 6 * * 1-5"
