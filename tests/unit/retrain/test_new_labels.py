"""Labeled frames new to the champion (driftloop.retrain.new_labels): what counts as a frame, what
the champion's snapshot holds, and the verdict a labels-triggered plan records. S3 is the
session's moto server; the registry a stand-in with MLflow's answers."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest

from driftloop.config.settings import Settings
from driftloop.contracts import storage
from driftloop.retrain import new_labels
from driftloop.retrain.new_labels import (
    check_new_labels,
    count_new,
    judge,
    labeled_stems,
    snapshot_frames,
)
from tests.unit.conftest import s3_client_for

SHA = "c" * 64


@pytest.fixture
def bucket(moto_endpoint):
    s3 = s3_client_for(moto_endpoint)
    name = f"new-labels-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return s3, name


def _put_frames(s3, bucket: str, day: str, stems, *, label=True, image=True) -> None:
    prefix = storage.labeled_prefix(day)
    for stem in stems:
        if image:
            s3.put_object(Bucket=bucket, Key=f"{prefix}images/{stem}.png", Body=b"png")
        if label:
            s3.put_object(Bucket=bucket, Key=f"{prefix}labels/{stem}.txt", Body=b"0 .5 .5 .1 .1\n")


def test_a_frame_is_an_image_with_its_label(bucket):
    s3, name = bucket
    day = "2031-03-02"
    _put_frames(s3, name, day, ["a", "b"])
    _put_frames(s3, name, day, ["no-label"], label=False)
    _put_frames(s3, name, day, ["no-image"], image=False)
    prefix = storage.labeled_prefix(day)
    s3.put_object(
        Bucket=name, Key=prefix + "frames.jsonl", Body=b'{"stem": "a", "camera_id": "c"}\n'
    )
    s3.put_object(Bucket=name, Key=prefix + storage.SUCCESS_MARKER, Body=b"")
    assert labeled_stems(s3, name, day) == ["a", "b"]
    assert labeled_stems(s3, name, "2031-03-03") == []  # no partition: no frames


def test_the_snapshot_holds_the_frames_it_took_and_refused_not_the_golden_set():
    manifest = {
        "sources": {
            "images/train/a.png": "labeled/dt=2031-03-01/images/a.png",
            "labels/train/a.txt": "labeled/dt=2031-03-01/labels/a.txt",
            "images/val/x.y.jpg": "labeled/dt=2031-03-02/images/x.y.jpg",
            "images/eval/g1.png": "labeled/golden/v1/images/g1.png",
        },
        "rejected": [
            {"key": "labeled/dt=2031-03-02/labels/bad.txt", "reason": "malformed label: x"},
            {"key": "labeled/golden/v1/manifest.json", "reason": "unexpected object: y"},
        ],
    }
    assert snapshot_frames(manifest) == {
        ("2031-03-01", "a"),
        ("2031-03-02", "x.y"),
        ("2031-03-02", "bad"),
    }
    assert snapshot_frames({}) == set()


def test_a_day_partly_in_the_snapshot_counts_only_its_later_frames():
    known = {("2031-03-01", "a"), ("2031-03-01", "b"), ("2031-03-02", "a")}
    labeled = {"2031-03-01": ["a", "b"], "2031-03-02": ["a", "b", "c"], "2031-03-03": []}
    assert count_new(labeled, known) == {
        "2031-03-01": {"labeled": 2, "new": 0},
        "2031-03-02": {"labeled": 3, "new": 2},  # 'a' was in the snapshot, b and c came later
    }
    # the same stem on another day is another frame
    assert count_new({"2031-03-03": ["a"]}, known) == {"2031-03-03": {"labeled": 1, "new": 1}}
    assert count_new(labeled, None)["2031-03-01"] == {"labeled": 2, "new": 2}


def test_the_verdict_says_how_many_and_what_the_policy_needs():
    counts = {"2031-03-02": {"labeled": 30, "new": 12}}
    few = judge(counts, 200, champion="4", dataset_sha256=SHA)
    assert few["enough"] is False
    assert few["reason"] == "12 new labeled frames since the champion's snapshot, policy needs 200"
    assert (few["new_frames"], few["labeled_frames"], few["min_frames"]) == (12, 30, 200)
    assert judge(counts, 12, champion="4", dataset_sha256=SHA)["enough"] is True  # at the bar
    one = judge({"d": {"labeled": 1, "new": 1}}, 2, champion="4", dataset_sha256=SHA)
    assert one["reason"].startswith("1 new labeled frame since")
    first = judge(counts, 200, champion=None, dataset_sha256=None)
    assert first["enough"] is True  # nothing learned yet: a first training
    assert first["reason"].startswith("no champion yet")
    untagged = judge(counts, 200, champion="4", dataset_sha256=None)
    assert "champion v4 records no dataset snapshot" in untagged["reason"]


class _Registry:
    """MLflow's answers for a registered model whose champion has ``tags``."""

    def __init__(self, champion: str | None, tags: dict[str, str] | None = None, error=None):
        self.champion, self.tags, self.error = champion, tags or {}, error

    def get_registered_model(self, name):
        if self.error is not None:
            raise self.error
        return SimpleNamespace(aliases={"champion": self.champion} if self.champion else {})

    def get_model_version(self, name, version):
        return SimpleNamespace(version=version, tags=self.tags)


def _settings(name: str) -> Settings:
    return Settings(bucket=name, mlflow_tracking_uri="http://mlflow.invalid")


def _with_registry(monkeypatch, registry) -> None:
    from driftloop.drift import tracking

    monkeypatch.setattr(tracking, "client", lambda uri: registry)


def test_check_compares_the_window_with_the_champions_snapshot(bucket, monkeypatch):
    s3, name = bucket
    days = ["2031-03-01", "2031-03-02"]
    _put_frames(s3, name, days[0], ["a", "b"])
    _put_frames(s3, name, days[1], ["a", "b", "c"])
    manifest = {
        "sources": {
            f"images/train/{d}-{s}.png": f"labeled/dt={d}/images/{s}.png"
            for d, s in (("2031-03-01", "a"), ("2031-03-01", "b"), ("2031-03-02", "a"))
        }
    }
    storage.put_json_once(s3, name, f"datasets/{SHA}/manifest.json", manifest)
    _with_registry(monkeypatch, _Registry("7", {new_labels.DATASET_TAG: SHA}))

    verdict = check_new_labels(s3, _settings(name), days, 2)
    assert (verdict["champion"], verdict["dataset_sha256"]) == ("7", SHA)
    assert verdict["days"] == {
        "2031-03-01": {"labeled": 2, "new": 0},
        "2031-03-02": {"labeled": 3, "new": 2},
    }
    assert verdict["enough"] is True
    assert check_new_labels(s3, _settings(name), days, 3)["enough"] is False

    _with_registry(monkeypatch, _Registry(None))  # no champion: a first training
    first = check_new_labels(s3, _settings(name), days, 200)
    assert (first["champion"], first["enough"], first["new_frames"]) == (None, True, 5)


def test_a_broken_record_or_an_unreadable_registry_fails_closed(bucket, monkeypatch):
    s3, name = bucket
    _with_registry(monkeypatch, _Registry("7", {new_labels.DATASET_TAG: "d" * 64}))
    with pytest.raises(ValueError, match=f"no manifest.json under s3://{name}/datasets/d{{64}}/"):
        check_new_labels(s3, _settings(name), ["2031-03-01"], 200)
    _with_registry(monkeypatch, _Registry("7", error=ConnectionError("registry unreachable")))
    with pytest.raises(ConnectionError):  # never read as "no champion: train"
        check_new_labels(s3, _settings(name), ["2031-03-01"], 200)
