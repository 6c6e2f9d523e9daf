"""Which labeled days landed since the last announcement (driftloop.retrain.labels_landed):
complete days only, each announced once, records write-once; against the session's moto
server."""

from __future__ import annotations

import uuid

import pytest

from driftloop.contracts import storage
from driftloop.retrain.labels_landed import (
    announced_key,
    announcement,
    new_labeled_days,
    record_announced,
)
from tests.unit.conftest import s3_client_for


@pytest.fixture
def bucket(moto_endpoint):
    s3 = s3_client_for(moto_endpoint)
    name = f"labels-landed-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return s3, name


def _land(s3, bucket: str, day: str, n: int, *, success: bool = True) -> None:
    prefix = storage.labeled_prefix(day)
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=f"{prefix}images/f{i}.png", Body=b"png")
        s3.put_object(Bucket=bucket, Key=f"{prefix}labels/f{i}.txt", Body=b"")
    if success:
        s3.put_object(Bucket=bucket, Key=prefix + storage.SUCCESS_MARKER, Body=b"")


def test_complete_days_are_found_once(bucket):
    s3, name = bucket
    _land(s3, name, "2031-04-01", 3)
    _land(s3, name, "2031-04-02", 2, success=False)  # still being imported
    _land(s3, name, "2031-04-03", 0)  # complete, nothing labeled
    s3.put_object(Bucket=name, Key="labeled/golden/v1/manifest.json", Body=b"{}")  # no day
    found = new_labeled_days(s3, name)
    assert found == [{"day": "2031-04-01", "frames": 3}, {"day": "2031-04-03", "frames": 0}]

    keys = record_announced(s3, name, found, "scheduled__1")
    assert keys == [announced_key("2031-04-01"), announced_key("2031-04-03")]
    assert storage.get_json(s3, name, "labels/announced/dt=2031-04-01.json") == {
        "day": "2031-04-01",
        "frames": 3,
        "announced_by": "scheduled__1",
    }
    assert new_labeled_days(s3, name) == []  # announced: not again
    _land(s3, name, "2031-04-02", 2)  # its _SUCCESS lands
    assert new_labeled_days(s3, name) == [{"day": "2031-04-02", "frames": 2}]


def test_records_are_write_once_and_a_recorded_day_keeps_its_record(bucket):
    s3, name = bucket
    found = [{"day": "2031-04-01", "frames": 3}]
    record_announced(s3, name, found, "run-a")
    record_announced(s3, name, found, "run-a")  # the same run again: the same bytes
    record_announced(s3, name, found, "run-b")  # another run meanwhile: the first record stays
    record = storage.get_json(s3, name, announced_key("2031-04-01"))
    assert record["announced_by"] == "run-a"


def test_the_event_names_the_days_and_their_frames():
    found = [
        {"day": "2031-04-03", "frames": 4},
        {"day": "2031-04-01", "frames": 3},
        {"day": "2031-04-02", "frames": 0},
    ]
    assert announcement(found) == {
        "day": "2031-04-03",
        "days": ["2031-04-01", "2031-04-03"],
        "frames": 7,
        "frames_per_day": {"2031-04-01": 3, "2031-04-03": 4},
    }
    assert announcement([]) is None
    assert announcement([{"day": "2031-04-02", "frames": 0}]) is None  # nothing new: no event


def test_an_unreadable_bucket_is_no_empty_one(moto_endpoint):
    from botocore.exceptions import ClientError

    s3 = s3_client_for(moto_endpoint)
    with pytest.raises(ClientError, match="NoSuchBucket"):
        new_labeled_days(s3, f"missing-{uuid.uuid4().hex[:10]}")
