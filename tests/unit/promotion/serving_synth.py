"""Synthetic serving records of one rollout stage, built with numpy (fast at 200k frames).

Each frame has true boxes; the baseline and the subject each see them with their own jitter
and their own share of missed boxes (the subject's per camera), and their own latency (the
subject's scaled by ``slower``; both share each hour's host load). ``labeled`` frames carry
the true boxes as labels. Also: the shipped policy's SLO of a stage, and writers of a serving
part and a labeled frame to S3. Used by tests/unit/promotion/test_rollout_evidence.py, the S3
integration test and bench/rollout_evidence.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from driftloop.config.promotion_policy import load_promotion_policy
from driftloop.promotion.rollout_evidence import RolloutSLO
from driftloop.serving.records import BOX_TYPE, SERVING_RECORD_SCHEMA

START = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
WIDTH, HEIGHT = 640, 480
ROLLOUT_ID = "rollout-4-20261130T101500Z"


@dataclass(frozen=True)
class World:
    n_frames: int
    hours: float = 8.0
    cameras: tuple[str, ...] = ("cam-a", "cam-b", "cam-c")
    seed: int = 0
    boxes_per_frame: float = 6.0
    jitter_px: float = 1.0  # both models' box noise
    subject_jitter_px: float | None = None  # None: jitter_px
    subject_miss: Mapping[str, float] | float = 0.02  # share of true boxes the subject misses
    baseline_miss: float = 0.02
    slower: float = 1.0  # subject latency / baseline latency
    subject_error_share: float = 0.0
    labeled: int = 0  # the first `labeled` frames carry labels
    stage: str = "shadow"
    sequence: int = 3
    rollout_id: str = ROLLOUT_ID
    start: datetime = START
    id_prefix: str = "f"
    hour_load: float = 0.3  # spread of the per-hour latency load factor (log scale)


def _boxes_of(rng, truth_xyxy, truth_cls, frame_of, n_frames, miss, jitter):
    keep = rng.random(truth_cls.size) >= miss
    xyxy = truth_xyxy[keep] + rng.normal(0.0, jitter, size=(int(keep.sum()), 4))
    conf = rng.uniform(0.3, 0.95, size=int(keep.sum()))
    counts = np.bincount(frame_of[keep], minlength=n_frames)
    return xyxy, truth_cls[keep], conf, counts


def _model_rows(world, role, ts_us, ids, cams, boxes, latency, error):
    xyxy, cls, conf, counts = boxes
    n = ids.size
    offsets = np.concatenate([[0], np.cumsum(np.where(error, 0, counts))]).astype(np.int32)
    # error frames have no boxes: drop theirs from the flat arrays
    frame_of = np.repeat(np.arange(n), counts)
    ok_box = ~error[frame_of]
    values = pa.StructArray.from_arrays(
        [
            pa.array(cls[ok_box], pa.int32()),
            pa.array(conf[ok_box], pa.float32()),
            *(pa.array(xyxy[ok_box, k], pa.float32()) for k in range(4)),
        ],
        fields=list(BOX_TYPE),
    )
    box_list = pa.ListArray.from_arrays(
        pa.array(offsets),
        values,
        type=SERVING_RECORD_SCHEMA.field("boxes").type,
        mask=pa.array(error),
    )
    sums = np.bincount(frame_of[ok_box], weights=conf[ok_box], minlength=n)
    n_det = np.where(error, 0, counts)
    mean_conf = np.where(n_det > 0, sums / np.maximum(n_det, 1), np.nan)
    columns = {
        "ts": pa.array(ts_us, pa.timestamp("us", tz="UTC")),
        "image_id": pa.array(ids, pa.string()),
        "camera_id": pa.array(cams, pa.string()),
        "model_version": pa.array(np.full(n, "4" if role == "subject" else "3"), pa.string()),
        "role": pa.array(np.full(n, role), pa.string()),
        "served": pa.array(np.full(n, role == "baseline"), pa.bool_()),
        "stage": pa.array(np.full(n, world.stage), pa.string()),
        "sequence": pa.array(np.full(n, world.sequence), pa.int64()),
        "rollout_id": pa.array(np.full(n, world.rollout_id), pa.string()),
        "latency_ms": pa.array(latency, pa.float64(), mask=error),
        "n_detections": pa.array(n_det, pa.int32(), mask=error),
        "confidence_mean": pa.array(mean_conf, pa.float64(), mask=error | (n_det == 0)),
        "boxes": box_list,
        "error": pa.array(np.full(n, "RuntimeError: boom"), pa.string(), mask=~error),
    }
    return pa.Table.from_pydict(columns, schema=SERVING_RECORD_SCHEMA)


def build(world: World) -> tuple[pa.Table, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(serving records of both models, labels of the first ``world.labeled`` frames)."""
    rng = np.random.default_rng(world.seed)
    n = world.n_frames
    ids = np.array([f"{world.id_prefix}{i:07d}" for i in range(n)], dtype=object)
    cams = np.array(world.cameras, dtype=object)[np.arange(n) % len(world.cameras)]
    start_us = int(world.start.timestamp() * 1e6)
    ts_us = start_us + (np.arange(n) * (world.hours * 3.6e9 / max(n, 1))).astype(np.int64)
    # the truth
    counts = rng.poisson(world.boxes_per_frame, size=n)
    frame_of = np.repeat(np.arange(n), counts)
    size = rng.uniform(30, 90, size=(frame_of.size, 2))
    corner = rng.uniform(0, 1, size=(frame_of.size, 2)) * (np.array([WIDTH, HEIGHT]) - size)
    truth = np.concatenate([corner, corner + size], axis=1)
    truth_cls = rng.integers(0, 2, size=frame_of.size)
    miss = world.subject_miss
    if isinstance(miss, Mapping):
        per_box_miss = np.array([miss.get(c, 0.0) for c in cams])[frame_of]
    else:
        per_box_miss = np.full(frame_of.size, float(miss))
    jitter_s = world.jitter_px if world.subject_jitter_px is None else world.subject_jitter_px
    baseline_boxes = _boxes_of(
        rng, truth, truth_cls, frame_of, n, world.baseline_miss, world.jitter_px
    )
    subject_boxes = _boxes_of(rng, truth, truth_cls, frame_of, n, per_box_miss, jitter_s)
    # latency: each hour's host load hits both models of a frame
    hour = (ts_us - start_us) // 3_600_000_000
    load = np.exp(rng.normal(0.0, world.hour_load, size=int(hour.max()) + 1 if n else 1))[hour]
    base_ms = 5.0 * load * np.exp(rng.normal(0.0, 0.15, size=n))
    subj_ms = world.slower * 5.0 * load * np.exp(rng.normal(0.0, 0.15, size=n))
    subj_err = rng.random(n) < world.subject_error_share
    table = pa.concat_tables(
        [
            _model_rows(
                world, "subject", ts_us + 3000, ids, cams, subject_boxes, subj_ms, subj_err
            ),
            _model_rows(
                world, "baseline", ts_us, ids, cams, baseline_boxes, base_ms, np.zeros(n, bool)
            ),
        ]
    )
    labels = {}
    for i in range(min(world.labeled, n)):
        rows = frame_of == i
        labels[ids[i]] = (truth_cls[rows], truth[rows])
    return table, labels


def slo_for(stage: str, **changes) -> RolloutSLO:
    """The shipped policy's SLO of ``stage``, with ``changes``."""
    return replace(RolloutSLO.from_policy(load_promotion_policy().rollout, stage), **changes)


def put_part(s3, bucket, day, world: World, token: str, rollout_id=None):
    """The world's records as the serving part ``serving/dt=<day>/part-<rollout>-<seq>-<token>``;
    returns (records, labels)."""
    import pyarrow.parquet as pq

    from driftloop.contracts.storage import put_bytes
    from driftloop.serving.layout import serving_part_key

    records, labels = build(world)
    sink = pa.BufferOutputStream()
    pq.write_table(records, sink)
    key = serving_part_key(day, rollout_id or world.rollout_id, world.sequence, token)
    put_bytes(s3, bucket, key, sink.getvalue().to_pybytes())
    return records, labels


def put_label(s3, bucket, day, image_id, classes, xyxy, *, image=True):
    """A labeled frame: its PNG (``image``) and its YOLO label from pixel xyxy boxes."""
    import io

    from PIL import Image

    from driftloop.contracts.storage import labeled_prefix, put_bytes

    prefix = labeled_prefix(day)
    if image:
        png = io.BytesIO()
        Image.new("RGB", (WIDTH, HEIGHT), (90, 120, 60)).save(png, format="PNG")
        put_bytes(s3, bucket, f"{prefix}images/{image_id}.png", png.getvalue(), "image/png")
    size = np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], dtype=np.float64)
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    wh = xyxy[:, 2:] - xyxy[:, :2]
    rows = np.concatenate([centre, wh], axis=1) / size
    text = "".join(
        f"{c} {' '.join(f'{v:.6f}' for v in r)}\n" for c, r in zip(classes, rows, strict=True)
    )
    put_bytes(s3, bucket, f"{prefix}labels/{image_id}.txt", text.encode(), "text/plain")
