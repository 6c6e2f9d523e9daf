"""A frame's camera travels from its labeled day's ``frames.jsonl`` through the dataset
snapshot (a hashed file of it) to the evaluation, which groups its images by camera."""

from __future__ import annotations

import json

import pytest

from driftloop.contracts import storage
from driftloop.contracts.labeled import (
    UNKNOWN_CAMERA,
    FramesIndexError,
    LabeledFrameInfo,
    frames_index_bytes,
    frames_index_key,
    read_frames_index,
)
from driftloop.retrain.frames import SPLITS
from driftloop.retrain.snapshot import snapshot_dataset
from driftloop.retrain.snapshot_io import (
    FRAMES_FILE,
    MANIFEST,
    download_dataset,
    load_manifest,
    snapshot_frames,
)
from driftloop_dev.synth.scenarios import BASELINE_CAMERAS
from tests.unit.retrain import test_snapshot as snap

DAYS, GOLDEN_N, PER_DAY = snap.DAYS, snap.GOLDEN_N, snap.PER_DAY
# the snapshot tests' fixtures: one moto S3 for the module, a bucket with the golden set and
# the synthetic labeled days of DAYS
aws_s3, bucket, s3, world = snap.aws_s3, snap.bucket, snap.s3, snap.world
golden_v1, window_files = snap.golden_v1, snap.window_files


def window_stems(manifest) -> dict[str, str]:
    """``{stem: split}`` of the snapshot's window frames (golden frames left out)."""
    out = {}
    for path in manifest["files"]:
        if path.startswith("images/") and "/golden-" not in path:
            _, split, name = path.split("/")
            out[name.rsplit(".", 1)[0]] = split
    return out


def test_cameras_travel_from_the_labeled_days_to_the_evaluation(s3, world, tmp_path):
    indexes = {day: read_frames_index(s3, world, day) for day in DAYS}
    assert all(len(index) == PER_DAY for index in indexes.values())  # the synth writes them
    result = snapshot_dataset(s3, world, days=DAYS)
    manifest = result.manifest
    # the day's own objects are no frames, and nothing was rejected for them
    assert manifest["rejected"] == []
    assert result.counts["train"] + result.counts["val"] + result.counts["eval"] == (
        len(DAYS) * PER_DAY + GOLDEN_N
    )
    assert FRAMES_FILE in manifest["files"]  # hashed like every other file
    # per split and camera; the golden frames have none
    for split in SPLITS:
        assert sum(manifest["cameras"][split].values()) == manifest["splits"][split]
    assert manifest["cameras"]["eval"][UNKNOWN_CAMERA] == GOLDEN_N
    assert set(manifest["cameras"]["train"]) <= set(BASELINE_CAMERAS)

    root = download_dataset(s3, result.uri, tmp_path / "data")
    frames = snapshot_frames(root)
    expected = {stem: info for index in indexes.values() for stem, info in index.items()}
    assert frames == {stem: expected[stem] for stem in window_stems(manifest)}
    assert {info.source for info in frames.values()} == {"feedback"}
    assert json.loads((root / MANIFEST).read_text()) == load_manifest(s3, result.uri)


def test_a_changed_camera_is_a_new_snapshot(s3, world):
    before = snapshot_dataset(s3, world, days=DAYS)
    day = DAYS[1]
    index = read_frames_index(s3, world, day)
    stem = sorted(index)[0]
    moved = {**index, stem: LabeledFrameInfo(stem, "cam-99", "queue", stem, "labeling/x/")}
    storage.put_bytes(s3, world, frames_index_key(day), frames_index_bytes(moved.values()))
    after = snapshot_dataset(s3, world, days=DAYS)
    assert after.created
    assert after.sha256 != before.sha256
    changed = {
        p
        for p in before.manifest["files"]
        if before.manifest["files"][p] != after.manifest["files"].get(p)
    }
    assert changed == {FRAMES_FILE}  # only the cameras changed; the pixels did not
    split = window_stems(after.manifest)[stem]
    assert after.manifest["cameras"][split]["cam-99"] == 1


def test_a_day_without_an_index_has_frames_of_no_camera(s3, world, tmp_path):
    s3.delete_object(Bucket=world, Key=frames_index_key(DAYS[0]))
    result = snapshot_dataset(s3, world, days=DAYS)
    frames = snapshot_frames(download_dataset(s3, result.uri, tmp_path / "data"))
    of_day = {stem: info for stem, info in frames.items() if stem.startswith(DAYS[0])}
    assert of_day
    assert {(i.camera_id, i.source) for i in of_day.values()} == {(UNKNOWN_CAMERA, "feedback")}
    others = {i.camera_id for stem, i in frames.items() if not stem.startswith(DAYS[0])}
    assert others <= set(BASELINE_CAMERAS)


def test_a_malformed_index_fails_the_snapshot_naming_key_and_line(s3, world):
    key = frames_index_key(DAYS[2])
    storage.put_bytes(s3, world, key, b'{"stem": "a", "camera_id": "cam-01"}\nnot json\n')
    with pytest.raises(FramesIndexError, match=f"{key} line 2: not JSON"):
        snapshot_dataset(s3, world, days=DAYS)


def test_a_snapshot_from_before_cameras_reads_as_no_camera(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({"sha256": "a" * 64, "files": {}}))
    assert snapshot_frames(tmp_path) == {}
    listed = {"sha256": "b" * 64, "files": {FRAMES_FILE: "c" * 64}}
    (tmp_path / MANIFEST).write_text(json.dumps(listed))
    with pytest.raises(ValueError, match=r"frames\.jsonl is missing: snapshot b+ lists it"):
        snapshot_frames(tmp_path)
