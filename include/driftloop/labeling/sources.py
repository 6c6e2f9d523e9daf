"""What the labeling queue reads from S3: a served day, and the frames it must not pick again.

A **served day** (:func:`read_served_day`) is the frame manifest ``frames/dt=D/_frames.jsonl``
(:func:`driftloop.serving.batch.read_manifest`: image keys and cameras), the inference log
``inference/dt=D/*.parquet`` (the served model's row per frame: its version, mean
confidence, embedding), required finished (``_SUCCESS``), and the serving records
``serving/dt=D/*.parquet`` (each model's boxes per frame, both models' on paired frames).

**Never again** (:func:`already_taken`): the frames of the queue's index
``labeling/_index/<day>.json`` of every other day (one write-once file per batch, listing
its frame ids) and every frame already labeled: the stems under ``labeled/dt=*/images/`` and
the ``frame_id`` of every ``labeled/dt=*/frames.jsonl`` entry.

Fail closed: only S3's "not found" means absent; a broken file raises naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from driftloop.contracts import schema, storage
from driftloop.serving import layout

LABELING_PREFIX = "labeling"
INDEX_PREFIX = f"{LABELING_PREFIX}/_index/"
#: inference-log columns the queue reads
INFERENCE_COLUMNS = ("image_id", "camera_id", "model_version", "confidence_mean", "embedding")


class NotServed(RuntimeError):
    """The day's inference log is not finished (no ``_SUCCESS``): serving may still write."""


def batch_prefix(day: date | str) -> str:
    return f"{LABELING_PREFIX}/{storage.day_str(day)}/"


def index_key(day: date | str) -> str:
    return f"{INDEX_PREFIX}{storage.day_str(day)}.json"


@dataclass(frozen=True, eq=False)
class ServedDay:
    day: str
    frames: list  # driftloop.serving.scorer.Frame, manifest order
    inference: Any  # pyarrow.Table of INFERENCE_COLUMNS, one row per served frame
    records: Any  # pyarrow.Table of SERVING_RECORD_SCHEMA


def _parquet(s3, bucket: str, key: str, columns=None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(storage.get_bytes(s3, bucket, key)), columns=columns)
    except (pa.ArrowInvalid, KeyError) as err:
        raise ValueError(f"s3://{bucket}/{key}: not a readable inference log: {err}") from err


def read_inference(s3, bucket: str, day: date | str):
    """The day's inference-log rows (:data:`INFERENCE_COLUMNS`); :class:`NotServed` without
    ``_SUCCESS``; a frame logged twice is an error."""
    import pyarrow as pa
    import pyarrow.compute as pc

    partition = storage.list_partition(s3, bucket, day)
    if not partition.has_success:
        raise NotServed(
            f"s3://{bucket}/{storage.success_key(day)} is missing: {storage.day_str(day)} is "
            "not served yet (or its inference log is not finished)"
        )
    tables = [_parquet(s3, bucket, key, list(INFERENCE_COLUMNS)) for key in partition.keys]
    if not tables:
        return pa.schema(
            [schema.arrow_schema().field(name) for name in INFERENCE_COLUMNS]
        ).empty_table()
    table = pa.concat_tables(tables, promote_options="default")
    if pc.count_distinct(table["image_id"]).as_py() != table.num_rows:
        raise ValueError(
            f"s3://{bucket}/{storage.inference_prefix(day)}: a frame has several inference rows"
        )
    return table


def read_serving_records(s3, bucket: str, day: date | str):
    """Every serving record of the day (all parts of ``serving/dt=D/``)."""
    from driftloop.promotion.rollout_records import _read_part, concat_parts

    keys = [
        o["Key"]
        for o in storage.list_keys(s3, bucket, layout.serving_prefix(day))
        if o["Key"].endswith(".parquet")
    ]
    return concat_parts([(storage.day_str(day), _read_part(s3, bucket, k)) for k in keys])


def read_served_day(s3, bucket: str, day: date | str) -> ServedDay:
    """The manifest (FileNotFoundError when the day has none), the finished inference log and
    the serving records of ``day``."""
    from driftloop.serving.batch import read_manifest

    frames = read_manifest(s3, bucket, day)
    inference = read_inference(s3, bucket, day)
    return ServedDay(storage.day_str(day), frames, inference, read_serving_records(s3, bucket, day))


def served_boxes(records) -> dict[str, dict[str, Any]]:
    """``{image_id: {version: {"served": bool, "boxes": [...]}}}`` of the records without an
    error (the served model's and, on paired frames, the other one's)."""
    out: dict[str, dict[str, Any]] = {}
    for row in records.select(
        ["image_id", "model_version", "served", "boxes", "error"]
    ).to_pylist():
        if row["error"] is not None or row["boxes"] is None:
            continue
        out.setdefault(row["image_id"], {})[row["model_version"]] = {
            "served": bool(row["served"]),
            "boxes": row["boxes"],
        }
    return out


def queued_frames(s3, bucket: str, *, other_than: date | str) -> set[str]:
    """Frame ids of the queue's index of every day but ``other_than``."""
    mine = index_key(other_than)
    taken: set[str] = set()
    for obj in storage.list_keys(s3, bucket, INDEX_PREFIX):
        if obj["Key"] == mine or not obj["Key"].endswith(".json"):
            continue
        try:
            document = json.loads(storage.get_bytes(s3, bucket, obj["Key"]))
            taken.update(str(f) for f in document["frames"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"s3://{bucket}/{obj['Key']}: not a queue index: {err}") from err
    return taken


def labeled_frames(s3, bucket: str) -> set[str]:
    """Stems of every labeled image and frame ids of every labeled day's ``frames.jsonl``."""
    from driftloop.contracts.labeled import FRAMES_INDEX, parse_frames_index

    taken: set[str] = set()
    for obj in storage.list_keys(s3, bucket, f"{storage.LABELED_PREFIX}/dt="):
        key = obj["Key"]
        parts = key.split("/")  # labeled, dt=D, images, <stem>.<ext> | labeled, dt=D, frames.jsonl
        if len(parts) == 4 and parts[2] == "images" and "." in parts[3]:
            taken.add(parts[3].rsplit(".", 1)[0])
        elif len(parts) == 3 and parts[2] == FRAMES_INDEX:
            index = parse_frames_index(storage.get_bytes(s3, bucket, key), key)
            taken.update(info.frame_id or info.stem for info in index.values())
    return taken


def already_taken(s3, bucket: str, day: date | str) -> set[str]:
    """Frames the queue must not pick for ``day`` (see the module doc)."""
    return queued_frames(s3, bucket, other_than=day) | labeled_frames(s3, bucket)
