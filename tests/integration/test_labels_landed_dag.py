"""``dag.test()`` of labels_landed on the embedded stack (moto S3 through the Airflow
connection): a labeled day that landed is announced once, with its frames in the event's
extra; the next run finds nothing new and emits nothing; a day still being imported waits for
its ``_SUCCESS``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from driftloop.contracts import storage
from tests.conftest import load_dag

pytestmark = pytest.mark.integration


@pytest.fixture
def bucket(stack, s3, monkeypatch):
    """A bucket of this test's own: labels_landed looks at every labeled day of its bucket."""
    name = f"labels-landed-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    monkeypatch.setenv("DRIFTLOOP_BUCKET", name)
    return name


def _land(s3, bucket: str, day: str, n: int, *, success: bool = True) -> None:
    prefix = storage.labeled_prefix(day)
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=f"{prefix}images/{day}-{i}.png", Body=b"png")
        s3.put_object(Bucket=bucket, Key=f"{prefix}labels/{day}-{i}.txt", Body=b"0 .5 .5 .2 .2\n")
    if success:
        s3.put_object(Bucket=bucket, Key=prefix + storage.SUCCESS_MARKER, Body=b"")


def _run(hour: int):
    moment = datetime(2032, 5, 4, hour, tzinfo=UTC)
    dag_run = load_dag("labels_landed").test(logical_date=moment, run_after=moment)
    return dag_run, {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def _events(run_id: str) -> list[tuple[str, dict]]:
    """The Asset events the run's tasks emitted: (Asset name, extra)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.name, AssetEvent.extra)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_dag_id == "labels_landed", AssetEvent.source_run_id == run_id)
        )
        return [(name, dict(extra or {})) for name, extra in rows]


def test_a_landed_day_is_announced_once(bucket, s3):
    _land(s3, bucket, "2032-05-02", 4)
    _land(s3, bucket, "2032-05-03", 3)
    _land(s3, bucket, "2032-05-04", 2, success=False)  # the import is still writing it

    first, states = _run(1)
    assert states == {
        "find_new_days": "success",
        "announce_labels": "success",
        "record_announced": "success",
    }
    ((name, extra),) = _events(first.run_id)
    assert name == "driftloop_labels"
    assert extra == {
        "day": "2032-05-03",
        "days": ["2032-05-02", "2032-05-03"],
        "frames": 7,
        "frames_per_day": {"2032-05-02": 4, "2032-05-03": 3},
    }
    record = storage.get_json(s3, bucket, "labels/announced/dt=2032-05-02.json")
    assert record == {"day": "2032-05-02", "frames": 4, "announced_by": first.run_id}

    again, states = _run(2)  # nothing landed since: no event, nothing recorded twice
    assert states["announce_labels"] == "skipped"
    assert states["record_announced"] == "success"
    assert _events(again.run_id) == []
    listed = storage.list_keys(s3, bucket, "labels/announced/")
    assert [o["Key"] for o in listed] == [
        "labels/announced/dt=2032-05-02.json",
        "labels/announced/dt=2032-05-03.json",
    ]

    _land(s3, bucket, "2032-05-04", 2)  # its _SUCCESS lands: announced on its own
    last, _ = _run(3)
    assert [extra["days"] for _, extra in _events(last.run_id)] == [["2032-05-04"]]
