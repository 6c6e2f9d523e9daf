"""What the batch scorer writes: serving records (defined here, once) and inference-log rows.

Serving records (``serving/dt=D/part-*.parquet``, :data:`SERVING_RECORD_SCHEMA`): one row per
(frame, model that scored it) — the served model's row and, on a paired frame, the shadow
model's — with the routing document's stage, sequence and rollout id, the model's latency,
its detections at the serving threshold and its error, if any. The rollout guard compares the
two models of paired frames from these rows (:mod:`driftloop.promotion.rollout_evidence`).

Inference-log rows follow :func:`driftloop.contracts.schema.arrow_schema` exactly: the served
model's output only (``model_version`` = the served version). The contract has no nulls, so a
frame without detections carries ``top_class`` "none" and, as its confidences, the score of
its best candidate below the threshold (what the synthetic generator does too); ``top_class``
of a frame with detections is the class of its most confident one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np  # noqa: TID253 (the scorer's process, never a DAG file)
import pyarrow as pa  # noqa: TID253

from driftloop.contracts import schema
from driftloop.serving.features import FEATURE_NAMES

ROLES = ("subject", "baseline", "champion")
STAGES = ("serving", "shadow", "canary", "guard")

BOX_TYPE = pa.struct(
    [
        pa.field("class_id", pa.int32(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("x1", pa.float32(), nullable=False),
        pa.field("y1", pa.float32(), nullable=False),
        pa.field("x2", pa.float32(), nullable=False),
        pa.field("y2", pa.float32(), nullable=False),
    ]
)

SERVING_RECORD_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("camera_id", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("served", pa.bool_(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("sequence", pa.int64(), nullable=False),
        pa.field("rollout_id", pa.string(), nullable=True),
        pa.field("latency_ms", pa.float64(), nullable=True),
        pa.field("n_detections", pa.int32(), nullable=True),
        pa.field("confidence_mean", pa.float64(), nullable=True),
        pa.field("boxes", pa.list_(pa.field("item", BOX_TYPE)), nullable=True),
        pa.field("error", pa.string(), nullable=True),
    ]
)


def box_rows(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> list[dict[str, Any]]:
    """Detections (xyxy in image pixels, confidences, class ids) as :data:`BOX_TYPE` rows."""
    return [
        {
            "class_id": int(c),
            "confidence": float(s),
            "x1": float(b[0]),
            "y1": float(b[1]),
            "x2": float(b[2]),
            "y2": float(b[3]),
        }
        for b, s, c in zip(np.asarray(boxes).reshape(-1, 4), scores, classes, strict=True)
    ]


def serving_row(
    *,
    ts: datetime,
    image_id: str,
    camera_id: str,
    model_version: str,
    role: str,
    served: bool,
    stage: str,
    sequence: int,
    rollout_id: str | None,
    latency_ms: float | None,
    boxes: Sequence[Mapping[str, Any]] | None,
    error: str | None,
) -> dict[str, Any]:
    """One serving record; ``boxes`` and ``latency_ms`` are None exactly when ``error`` says
    the model failed on the frame."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if (error is None) == (boxes is None):
        raise ValueError("a serving record has either detections or an error, not both")
    confidences = [b["confidence"] for b in boxes or ()]
    return {
        "ts": ts,
        "image_id": image_id,
        "camera_id": camera_id,
        "model_version": str(model_version),
        "role": role,
        "served": bool(served),
        "stage": stage,
        "sequence": int(sequence),
        "rollout_id": rollout_id,
        "latency_ms": None if error is not None else float(latency_ms),
        "n_detections": None if boxes is None else len(boxes),
        "confidence_mean": float(np.mean(confidences)) if confidences else None,
        "boxes": None if boxes is None else list(boxes),
        "error": error,
    }


def inference_row(
    *,
    ts: datetime,
    image_id: str,
    camera_id: str,
    model_version: str,
    features: Mapping[str, float],
    embedding: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    best_score: float,
    latency_ms: float,
) -> dict[str, Any]:
    """One inference-log row (the contract's columns) from the served model's output;
    ``best_score`` is the best candidate's confidence, below the threshold or not."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores):
        top = schema.CLASS_NAMES[int(classes[int(np.argmax(scores))])]
        confidence_mean, confidence_max = float(scores.mean()), float(scores.max())
    else:
        top, confidence_mean = "none", float(best_score)
        confidence_max = confidence_mean
    vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if vector.shape != (schema.EMBEDDING_DIM,):
        raise ValueError(f"embedding must have {schema.EMBEDDING_DIM} values, got {vector.shape}")
    return {
        "ts": ts,
        "image_id": image_id,
        "camera_id": camera_id,
        "model_version": str(model_version),
        **{name: float(features[name]) for name in FEATURE_NAMES},
        "embedding": vector,
        "n_detections": min(len(scores), 100),
        "top_class": top,
        "confidence_mean": confidence_mean,
        "confidence_max": confidence_max,
        "latency_ms": float(latency_ms),
    }


def serving_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Serving records with exactly :data:`SERVING_RECORD_SCHEMA`."""
    return pa.Table.from_pylist(list(rows), schema=SERVING_RECORD_SCHEMA)


def inference_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Inference-log rows with exactly :func:`driftloop.contracts.schema.arrow_schema`."""
    target = schema.arrow_schema()
    columns = {name: [row[name] for row in rows] for name in target.names}
    flat = np.concatenate(columns.pop("embedding")) if rows else np.zeros(0, np.float32)
    arrays = [
        pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), schema.EMBEDDING_DIM)
        if field.name == "embedding"
        else pa.array(columns[field.name], field.type)
        for field in target
    ]
    return pa.Table.from_arrays(arrays, schema=target)
