"""A day's inputs in S3 (moto server): labeled frames with their cameras, rejected objects,
and the champion's confidences from the inference logs."""

from __future__ import annotations

import io
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from driftloop.contracts import storage
from driftloop.contracts.labeled import LabeledFrameInfo, frames_index_bytes, frames_index_key
from driftloop.performance.labeled_days import load_labeled_day
from driftloop.performance.logs import champion_confidences
from tests.unit.conftest import s3_client_for

DAY = "2026-11-29"


@pytest.fixture
def s3(moto_endpoint):
    return s3_client_for(moto_endpoint)


@pytest.fixture
def bucket(s3):
    name = f"perf-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


def png(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (shade, shade, shade)).save(out, format="PNG")
    return out.getvalue()


def put_frame(s3, bucket, stem, label: bytes, image: bytes | None = None):
    prefix = storage.labeled_prefix(DAY)
    storage.put_bytes(s3, bucket, f"{prefix}images/{stem}.png", image or png(100))
    storage.put_bytes(s3, bucket, f"{prefix}labels/{stem}.txt", label)


def test_frames_keep_their_cameras_and_bad_ones_are_rejected(s3, bucket, tmp_path):
    put_frame(s3, bucket, "f1", b"0 0.5 0.5 0.2 0.2\n")
    put_frame(s3, bucket, "f2", b"1 0.5 0.5 0.4 0.6\n", png(50))
    put_frame(s3, bucket, "f3", b"0 0.5 0.5 0.2 0.2\n", png(80))  # not in the index
    put_frame(s3, bucket, "bad", b"7 0.5 0.5 0.2 0.2\n", png(20))  # no class 7
    storage.put_bytes(s3, bucket, f"{storage.labeled_prefix(DAY)}images/lonely.png", png(9))
    index = [LabeledFrameInfo("f1", "cam-01", "queue"), LabeledFrameInfo("f2", "cam-02")]
    storage.put_bytes(s3, bucket, frames_index_key(DAY), frames_index_bytes(index))

    day = load_labeled_day(s3, bucket, DAY, tmp_path / "spool")
    assert [f.stem for f in day.frames] == ["f1", "f2", "f3"]
    assert day.cameras == ["cam-01", "cam-02", "unknown"]
    reasons = {r["key"].rsplit("/", 1)[-1]: r["reason"] for r in day.rejected}
    assert set(reasons) == {"bad.txt", "lonely.png"}
    assert reasons["bad.txt"].startswith("malformed label: line 1: class id 7")
    assert reasons["lonely.png"].startswith("missing label")
    records = [{"image_id": f.image_file.stem} for f in reversed(day.frames)]
    assert day.cameras_of(records) == ["unknown", "cam-02", "cam-01"]
    assert all(f.image_file.parent == f.label_file.parent == day.folder for f in day.frames)


def test_an_unreadable_frames_index_rejects_the_day(s3, bucket, tmp_path):
    put_frame(s3, bucket, "f1", b"0 0.5 0.5 0.2 0.2\n")
    storage.put_bytes(s3, bucket, frames_index_key(DAY), b'{"stem": "f1"}\n')  # no camera
    day = load_labeled_day(s3, bucket, DAY, tmp_path / "spool")
    assert day.frames == []
    assert day.rejected == [
        {
            "key": frames_index_key(DAY),
            "reason": f"unreadable frames index: {frames_index_key(DAY)} line 1: "
            "'camera_id' must be a non-empty string",
        }
    ]


def part(versions, confidences, *, dictionary: bool = False) -> bytes:
    """A Parquet part with the columns the estimate reads (``model_version`` dictionary-encoded
    as the synthetic world writes it, with ``dictionary``)."""
    out = io.BytesIO()
    model_version = pa.array(versions, pa.string())
    table = pa.table(
        {
            "model_version": model_version.dictionary_encode() if dictionary else model_version,
            "confidence_max": pa.array(confidences, pa.float64()),
            "n_detections": pa.array([1] * len(versions), pa.int32()),
        }
    )
    pq.write_table(table, out)
    return out.getvalue()


def test_champion_confidences_of_a_complete_day(s3, bucket):
    prefix = storage.inference_prefix(DAY)
    storage.put_bytes(s3, bucket, f"{prefix}part-0.parquet", part(["3", "4", "3"], [0.9, 0.1, 0.4]))
    storage.put_bytes(s3, bucket, f"{prefix}part-1.parquet", part(["3"], [0.7], dictionary=True))
    storage.put_bytes(s3, bucket, f"{prefix}part-2.parquet", b"not parquet")
    storage.put_bytes(s3, bucket, f"{prefix}part-3.parquet", part(["3"], [1.7]))
    assert champion_confidences(s3, bucket, DAY, "3").complete is False  # no _SUCCESS yet

    storage.put_bytes(s3, bucket, storage.success_key(DAY), b"")
    found = champion_confidences(s3, bucket, DAY, "3")
    assert found.complete
    assert found.scores == pytest.approx([0.9, 0.4, 0.7])
    reasons = {r["key"].rsplit("/", 1)[-1]: r["reason"] for r in found.rejected}
    assert set(reasons) == {"part-2.parquet", "part-3.parquet"}
    assert "unreadable parquet" in reasons["part-2.parquet"]
    assert "1 confidence_max value(s) missing or outside [0.0, 1.0]" in reasons["part-3.parquet"]
    assert champion_confidences(s3, bucket, "2026-11-30", "3").scores == []
