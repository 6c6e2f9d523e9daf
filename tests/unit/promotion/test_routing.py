"""The routing document (driftloop.promotion.routing): its JSON, the stage invariants, the
builders, the rule serving follows, frame buckets, and the write-once history with a
compare-and-set on ``rollout/routing.json`` (a moto server over HTTP)."""

from __future__ import annotations

import json
import uuid

import pytest

from driftloop.contracts.storage import WriteOnceViolation
from driftloop.promotion import routing
from driftloop.promotion.routing import (
    ROUTING_KEY,
    RoutingDoc,
    RoutingMoved,
    Stamp,
    consistent_with_aliases,
    frame_bucket,
    next_canary_doc,
    next_guard_doc,
    next_serving_doc,
    next_shadow_doc,
    read_history,
    read_routing,
    write_routing,
)
from tests.unit.conftest import s3_client_for

STAMP = Stamp(by="retrain_detector/run-1/update_routing", reason="test", at="2026-11-30T10:15:00Z")


def _rollout() -> list[RoutingDoc]:
    """A whole rollout of v4 against v3: serving, shadow, canary, guard, serving."""
    serving = next_serving_doc(None, STAMP, model="m", champion="3")
    shadow = next_shadow_doc(serving, STAMP, model="m", champion="3", challenger="4")
    canary = next_canary_doc(shadow, STAMP, share=0.05)
    guard = next_guard_doc(
        canary,
        STAMP,
        model="m",
        champion="4",
        previous="3",
        shadow_share=0.25,
        rollout_id=canary.rollout_id,
    )
    done = next_serving_doc(guard, STAMP, model="m", champion="4")
    return [serving, shadow, canary, guard, done]


def test_the_document_is_the_spec_json():
    _, shadow, canary, guard, _ = _rollout()
    assert json.loads(canary.to_json()) == {
        "format": 1,
        "model": "m",
        "sequence": 3,
        "stage": "canary",
        "champion": "3",
        "subject": "4",
        "baseline": "3",
        "share": 0.05,
        "shadow_share": 0.05,
        "rollout_id": "rollout-4-20261130T101500Z",
        "updated_at": "2026-11-30T10:15:00Z",
        "updated_by": "retrain_detector/run-1/update_routing",
        "reason": "test",
    }
    assert list(json.loads(canary.to_json()))[:4] == ["format", "model", "sequence", "stage"]
    assert (shadow.shadow_share, shadow.share) == (1.0, 0.0)
    assert (guard.subject, guard.baseline, guard.champion) == ("4", "3", "4")
    assert guard.rollout_id == shadow.rollout_id  # one rollout from shadow to its guard


def test_round_trip_and_sequences():
    docs = _rollout()
    assert [d.sequence for d in docs] == [1, 2, 3, 4, 5]
    assert [d.stage for d in docs] == ["serving", "shadow", "canary", "guard", "serving"]
    for doc in docs:
        assert RoutingDoc.from_dict(json.loads(doc.to_json())) == doc
        assert doc.to_json() == RoutingDoc.from_dict(doc.to_dict()).to_json()  # stable bytes
    assert docs[-1].to_dict()["subject"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stage": "live"}, "'stage' must be one of"),
        ({"format": 2}, "'format' 2 unknown"),
        ({"sequence": "3"}, "'sequence' must be an integer"),
        ({"sequence": 0}, "'sequence' must be >= 1"),
        ({"share": 0.5, "shadow_share": 0.5, "stage": "shadow"}, "stage shadow has share 0"),
        ({"share": 1.5}, "'share' must be within"),
        ({"shadow_share": 0.2}, "stage canary needs 0 < share < 1 and shadow_share == share"),
        ({"champion": "4"}, "champion v4 must be the baseline"),
        ({"subject": None}, "needs subject, baseline and rollout_id"),
        ({"baseline": "4"}, "subject and baseline are both v4"),
        ({"stage": "serving"}, "stage serving has no subject"),
        ({"extra": 1}, r"unknown keys \['extra'\]"),
    ],
)
def test_a_broken_document_is_refused_naming_the_source(change, message):
    data = {**_rollout()[2].to_dict(), **change}
    with pytest.raises(ValueError, match=message) as caught:
        RoutingDoc.from_dict(data, "s3://b/rollout/routing.json")
    assert str(caught.value).startswith("s3://b/rollout/routing.json: ")


def test_builders_refuse_the_wrong_predecessor():
    serving, shadow, *_ = _rollout()
    with pytest.raises(ValueError, match="a canary follows stage shadow"):
        next_canary_doc(serving, STAMP, share=0.05)
    # another registered model takes the bucket's document over: the sequence goes on
    other = next_serving_doc(shadow, STAMP, model="other", champion="7")
    assert (other.model, other.sequence, other.champion) == ("other", 3, "7")
    with pytest.raises(ValueError, match="0 < share < 1"):
        next_canary_doc(shadow, STAMP, share=0.0)


@pytest.mark.parametrize(
    ("stage_index", "aliases", "consistent"),
    [
        (0, {"champion": "3"}, True),
        (0, {"champion": "3", "challenger": "9"}, True),  # serving looks at the champion only
        (0, {"champion": "4"}, False),
        (0, {}, False),
        (1, {"champion": "3", "challenger": "4"}, True),
        (1, {"champion": "3"}, False),  # the challenger was withdrawn: half a rejection
        (1, {"champion": "4", "previous-champion": "3"}, False),  # half a promotion
        (2, {"champion": "3", "challenger": "4"}, True),
        (2, {"champion": "3", "challenger": "5"}, False),
        (3, {"champion": "4", "previous-champion": "3"}, True),
        (3, {"champion": "3"}, False),  # rolled back, document not yet written
        (3, {"champion": "4", "previous-champion": "2"}, False),
        (3, {"champion": 4, "previous-champion": 3}, True),  # versions as numbers
    ],
)
def test_serving_follows_a_document_only_when_the_aliases_agree(stage_index, aliases, consistent):
    doc = _rollout()[stage_index]
    assert consistent_with_aliases(doc, aliases) is consistent
    assert (routing.disagreement(doc, aliases) == "") is consistent


def test_no_document_is_stage_serving():
    assert consistent_with_aliases(None, {"champion": "3"})
    assert consistent_with_aliases(None, {})


def test_frame_buckets_are_stable_and_uniform():
    assert frame_bucket("cam-01-000001") == frame_bucket("cam-01-000001")
    # the spec: first 8 bytes of sha256(image_id), big-endian, / 2**64
    assert frame_bucket("abc") == 0xBA7816BF8F01CFEA / 2**64
    buckets = [frame_bucket(f"frame-{i}") for i in range(20_000)]
    assert all(0 <= u < 1 for u in buckets)
    share = sum(u < 0.05 for u in buckets) / len(buckets)
    assert 0.04 < share < 0.06  # a 5 % canary gets about 5 % of the frames


def test_summary_names_the_stage():
    serving, shadow, canary, guard, _ = _rollout()
    assert serving.summary() == "#1 serving: v3 serves alone"
    assert "v4 shadows v3 on 100% of frames" in shadow.summary()
    assert "v4 serves 5% of frames" in canary.summary()
    assert "v3 shadows 25%" in guard.summary()


# -- S3 ---------------------------------------------------------------------------------------


@pytest.fixture
def bucket(moto_endpoint):
    s3 = s3_client_for(moto_endpoint)
    name = f"routing-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return s3, name


def test_write_then_read_with_history(bucket):
    s3, name = bucket
    assert read_routing(s3, name) is None  # no document: NoSuchKey, stage serving
    docs = _rollout()
    for doc in docs:
        write_routing(s3, name, doc)
        assert read_routing(s3, name) == doc
    assert [read_history(s3, name, d.sequence) for d in docs] == docs
    assert read_history(s3, name, 6) is None
    history = s3.list_objects_v2(Bucket=name, Prefix="rollout/history/")["Contents"]
    assert [o["Key"] for o in history] == [routing.history_key(d.sequence) for d in docs]
    assert routing.history_key(1) == "rollout/history/00000001.json"


def test_a_rerun_writes_nothing_new_and_a_stale_change_is_refused(bucket):
    s3, name = bucket
    serving, shadow, canary, *_ = _rollout()
    write_routing(s3, name, serving)
    write_routing(s3, name, shadow)
    write_routing(s3, name, shadow)  # the same change again: no-op
    assert read_routing(s3, name) == shadow
    with pytest.raises(RoutingMoved, match="is at sequence 2"):
        write_routing(s3, name, serving)  # an old change never overwrites a newer one
    other = next_serving_doc(serving, STAMP, model="m", champion="3")  # also #2, different
    with pytest.raises(RoutingMoved, match="is at sequence 2"):
        write_routing(s3, name, other)
    with pytest.raises(RoutingMoved, match="built on #3"):
        write_routing(s3, name, next_serving_doc(canary, STAMP, model="m", champion="3"))
    assert read_routing(s3, name) == shadow


def test_a_second_change_of_the_same_sequence_fails_at_the_history(bucket):
    s3, name = bucket
    serving, shadow, *_ = _rollout()
    write_routing(s3, name, serving)
    # another writer took #2 in the history and died before routing.json
    rival = next_serving_doc(serving, Stamp(by="other", reason="x"), model="m", champion="3")
    s3.put_object(Bucket=name, Key=routing.history_key(2), Body=rival.to_json())
    with pytest.raises(WriteOnceViolation):
        write_routing(s3, name, shadow)
    assert read_routing(s3, name) == serving


def test_the_conditional_write_refuses_a_writer_in_between(bucket, monkeypatch):
    s3, name = bucket
    serving, shadow, *_ = _rollout()
    write_routing(s3, name, serving)
    real_read = routing._read

    def read_then_overwritten(client, bucket_name):
        seen = real_read(client, bucket_name)
        # someone rewrites routing.json between this writer's read and its write
        client.put_object(Bucket=bucket_name, Key=ROUTING_KEY, Body=serving.to_json() + b" ")
        return seen

    monkeypatch.setattr(routing, "_read", read_then_overwritten)
    with pytest.raises(RoutingMoved, match="changed while document #2 was written"):
        write_routing(s3, name, shadow)


def test_only_no_such_key_means_absent(bucket):
    s3, name = bucket
    with pytest.raises(Exception, match="NoSuchBucket"):
        read_routing(s3, f"{name}-missing")
    s3.put_object(Bucket=name, Key=ROUTING_KEY, Body=b"{not json")
    with pytest.raises(ValueError, match=r"routing\.json: not valid JSON"):
        read_routing(s3, name)
