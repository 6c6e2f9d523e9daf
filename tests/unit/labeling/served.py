"""A served day in S3 made by hand, for the labeling queue's tests: the synthetic world's
traffic frames and manifest (driftloop_dev.synth), an inference log and serving records in
the contracts' exact schemas (driftloop.serving.records), and a drift reference bundle of the
day before (the synthetic world's inference log) recorded as a drift check's reference."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta

import numpy as np

from driftloop.contracts import schema, storage
from driftloop.serving import layout, records
from driftloop.serving.features import FEATURE_NAMES

CHAMPION, CHALLENGER = "1", "2"


def _parquet(table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def build_reference(s3, bucket: str, spec, database_url: str) -> str:
    """A reference bundle of the world's first day, recorded as the reference of a drift
    check whose window ends that day; returns its URI."""
    from driftloop.drift.history import CheckRecord, engine_for, record_check
    from driftloop.drift.reference import build_reference_bundle
    from driftloop_dev.synth.inference import partition_files

    day = spec.date_of(0)
    for key, data in partition_files(spec, 0):
        storage.put_bytes(s3, bucket, key, data)
    storage.put_bytes(s3, bucket, storage.success_key(day), b"")
    bundle = build_reference_bundle(s3, bucket, [storage.list_partition(s3, bucket, day)], 500)
    record_check(
        engine_for(database_url),
        CheckRecord(
            run_id=f"check-{day}",
            window_start=day,
            window_end=day,
            reference_kind="sliding",
            reference_id=bundle.reference_id,
            severity="none",
            policy_version="test",
            feature_levels={},
            drifted_features=[],
            reference_rule="sliding",
        ),
    )
    return bundle.uri


def serve_by_hand(s3, bucket: str, day: str, reference_embeddings: np.ndarray) -> dict:
    """Inference log + serving records + _SUCCESS for the frames of ``day``'s manifest: the
    champion serves every frame, the challenger scores every other frame in shadow (finding
    other boxes on every fourth). Confidence rises with the frame number; a new camera's
    frames get an embedding far from the reference. Returns ``{image_id: camera_id}``."""
    manifest = storage.get_bytes(s3, bucket, layout.manifest_key(day)).decode().splitlines()
    frames = [json.loads(line) for line in manifest]
    known = {"cam-01", "cam-02", "cam-03", "cam-04"}
    rng = np.random.default_rng(0)
    inference, serving = [], []
    ts0 = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)
    for i, frame in enumerate(frames):
        ts = ts0 + timedelta(minutes=i)
        confidence = 0.3 + 0.65 * i / max(1, len(frames) - 1)
        if frame["camera_id"] in known:
            embedding = reference_embeddings[i % len(reference_embeddings)] + rng.normal(
                scale=1e-3, size=schema.EMBEDDING_DIM
            )
        else:
            embedding = np.full(schema.EMBEDDING_DIM, 50.0) * (1 if i % 2 else -1)
        box = {"class_id": 0, "confidence": confidence, "x1": 10.0, "y1": 12.0,
               "x2": 30.0, "y2": 40.0}  # fmt: skip
        inference.append(
            records.inference_row(
                ts=ts,
                image_id=frame["image_id"],
                camera_id=frame["camera_id"],
                model_version=CHAMPION,
                features={name: 1.0 for name in FEATURE_NAMES},
                embedding=embedding,
                scores=np.array([confidence]),
                classes=np.array([0]),
                best_score=confidence,
                latency_ms=5.0,
            )
        )
        common = {"ts": ts, "image_id": frame["image_id"], "camera_id": frame["camera_id"],
                  "stage": "shadow", "sequence": 3, "rollout_id": "rollout-1",
                  "latency_ms": 5.0, "error": None}  # fmt: skip
        serving.append(
            records.serving_row(
                **common, model_version=CHAMPION, role="baseline", served=True, boxes=[box]
            )
        )
        if i % 2 == 0:
            other = dict(box, class_id=1, x1=60.0, x2=90.0) if i % 4 == 0 else box
            serving.append(
                records.serving_row(
                    **common,
                    model_version=CHALLENGER,
                    role="subject",
                    served=False,
                    boxes=[other],
                )
            )
    storage.put_once(
        s3, bucket, layout.inference_part_key(day, 3), _parquet(records.inference_table(inference))
    )
    storage.put_once(
        s3,
        bucket,
        layout.serving_part_key(day, "rollout-1", 3, "t"),
        _parquet(records.serving_table(serving)),
    )
    storage.put_once(s3, bucket, storage.success_key(day), b"")
    return {f["image_id"]: f["camera_id"] for f in frames}
