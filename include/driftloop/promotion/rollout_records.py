"""A rollout stage's serving records and labels: reading them from S3 and pairing the frames.

Why a module of its own: :mod:`driftloop.promotion.rollout_evidence` judges paired frames;
this is where they come from. :func:`load_stage_records` reads the serving records of one
routing document (its ``rollout_id`` and ``sequence``) from ``serving/dt=*/``;
:func:`load_labels` reads the ground truth of the frames that were labeled; :func:`pair_frames`
turns the records into paired frames — one ``subject`` and one ``baseline`` row with the same
``image_id`` and ``sequence`` — as numpy arrays, boxes flat
(:class:`~driftloop.promotion.rollout_agreement.FrameBoxes`).

Fail closed: only a store's "not found" means absent (a frame without a label file is
unlabeled); an unreadable part, a missing column, a label without its image, a row that has
neither an error nor a latency raise a ``ValueError`` naming the file or column.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from driftloop.promotion.rollout_agreement import FrameBoxes

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

#: the columns of the serving records the rollout evidence reads
RECORD_COLUMNS = (
    *("ts", "image_id", "camera_id", "role", "sequence", "rollout_id"),
    *("latency_ms", "n_detections", "confidence_mean", "boxes", "error"),
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# paired frames


@dataclass(frozen=True, eq=False)
class ModelOutputs:
    """One model's rows of the paired frames, in frame order (NaN where a value is null)."""

    latency_ms: np.ndarray
    n_detections: np.ndarray
    confidence_mean: np.ndarray
    error: np.ndarray  # bool: the model failed on the frame
    boxes: FrameBoxes


@dataclass(frozen=True, eq=False)
class PairedFrames:
    """Frames scored by both the subject and the baseline, ordered by (ts, image_id);
    ``rows``/``errors``: rows and failed rows of each role in the records (paired or not);
    ``unpaired``: frames of each role without the other; ``duplicates``: repeated rows of a
    (frame, role), of which the first was kept."""

    image_id: np.ndarray
    camera_id: np.ndarray
    ts_us: np.ndarray  # the earlier of the two rows' ts, µs since the epoch
    subject: ModelOutputs
    baseline: ModelOutputs
    rows: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    unpaired: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0

    def __len__(self) -> int:
        return int(self.image_id.size)


def _require_columns(records: pa.Table, where: str = "serving records") -> None:
    missing = [c for c in RECORD_COLUMNS if c not in records.column_names]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}")


def _ts_us(column) -> np.ndarray:
    import pyarrow as pa

    return column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()


def _floats(column) -> np.ndarray:
    import pyarrow as pa

    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _outputs(records: pa.Table, rows: np.ndarray) -> ModelOutputs:
    import pyarrow as pa
    import pyarrow.compute as pc

    taken = records.select(RECORD_COLUMNS[6:]).take(pa.array(rows, type=pa.int64()))
    error = np.asarray(pc.is_valid(taken["error"]).to_numpy(zero_copy_only=False), dtype=bool)
    latency, n_det = _floats(taken["latency_ms"]), _floats(taken["n_detections"])
    for name, values in (("latency_ms", latency), ("n_detections", n_det)):
        if np.any(~error & ~np.isfinite(values)):
            raise ValueError(f"serving records: rows without an error have no {name}")
    boxes = taken["boxes"].combine_chunks()
    if isinstance(boxes, pa.ChunkedArray):  # no chunks at all
        boxes = pa.array([], type=boxes.type)
    counts = pc.list_value_length(boxes).fill_null(0).to_numpy(zero_copy_only=False)
    flat = boxes.flatten()

    def part(name: str) -> np.ndarray:
        return np.asarray(flat.field(name).to_numpy(zero_copy_only=False), dtype=np.float64)

    return ModelOutputs(
        latency,
        n_det,
        _floats(taken["confidence_mean"]),
        error,
        FrameBoxes(
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            part("class_id").astype(np.int64),
            part("confidence"),
            np.stack([part(k) for k in ("x1", "y1", "x2", "y2")], axis=1).reshape(-1, 4),
        ),
    )


def pair_frames(records: pa.Table) -> PairedFrames:
    """The paired frames of serving records: one ``subject`` and one ``baseline`` row with the
    same ``image_id`` and ``sequence`` (other roles and unpaired rows are counted, not used)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    _require_columns(records)
    keyed = pa.table(
        {
            "image_id": records["image_id"],
            "sequence": records["sequence"],
            "role": records["role"],
            "row": pa.array(np.arange(records.num_rows, dtype=np.int64)),
        }
    )
    failed = pc.is_valid(records["error"])
    rows, errors, first, duplicates = {}, {}, {}, 0
    for role in ("subject", "baseline", "champion"):
        mine = pc.equal(records["role"], role)
        rows[role] = int(pc.sum(mine).as_py() or 0)
        errors[role] = int(pc.sum(pc.and_(mine, failed)).as_py() or 0)
        if role == "champion":
            continue
        grouped = (
            keyed.filter(pc.equal(keyed["role"], role))
            .group_by(["image_id", "sequence"])
            .aggregate([("row", "min"), ("row", "count")])
        )
        duplicates += int(pc.sum(grouped["row_count"]).as_py() or 0) - grouped.num_rows
        first[role] = pa.table(
            {
                "image_id": grouped["image_id"],
                "sequence": grouped["sequence"],
                role: grouped["row_min"],
            }
        )
    joined = first["subject"].join(first["baseline"], ["image_id", "sequence"], join_type="inner")
    ts = _ts_us(records["ts"])
    s_rows = joined["subject"].to_numpy().astype(np.int64)
    b_rows = joined["baseline"].to_numpy().astype(np.int64)
    frame_ts = np.minimum(ts[s_rows], ts[b_rows])
    # a canonical order, whatever the order of the records (the join's is not defined)
    order = pc.sort_indices(
        pa.table({"ts": frame_ts, "image_id": joined["image_id"], "seq": joined["sequence"]}),
        sort_keys=[("ts", "ascending"), ("image_id", "ascending"), ("seq", "ascending")],
    ).to_numpy()
    s_rows, b_rows, frame_ts = s_rows[order], b_rows[order], frame_ts[order]
    ids = records["image_id"].take(pa.array(s_rows)).to_numpy(zero_copy_only=False)
    cameras = records["camera_id"].take(pa.array(s_rows)).to_numpy(zero_copy_only=False)
    other = records["camera_id"].take(pa.array(b_rows)).to_numpy(zero_copy_only=False)
    if np.any(cameras != other):
        bad = ids[np.flatnonzero(cameras != other)[0]]
        raise ValueError(f"serving records: frame {bad!r} has two camera_ids")
    return PairedFrames(
        np.asarray(ids, dtype=object),
        np.asarray(cameras, dtype=object),
        frame_ts,
        _outputs(records, s_rows),
        _outputs(records, b_rows),
        rows=rows,
        errors=errors,
        unpaired={
            "subject": first["subject"].num_rows - joined.num_rows,
            "baseline": first["baseline"].num_rows - joined.num_rows,
        },
        duplicates=duplicates,
    )


# --------------------------------------------------------------------------------------------
# reading a stage from S3


def _doc_identity(routing_doc: Mapping[str, Any]) -> tuple[str, int]:
    rollout_id, sequence = routing_doc.get("rollout_id"), routing_doc.get("sequence")
    if not rollout_id:
        raise ValueError(
            f"routing document (stage {routing_doc.get('stage')!r}) has no rollout_id: "
            "there is no rollout stage to read"
        )
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
        raise ValueError(f"routing document: 'sequence' must be an integer >= 0, got {sequence!r}")
    return str(rollout_id), sequence


def _read_part(s3, bucket: str, key: str) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from driftloop.contracts.storage import get_bytes
    from driftloop.serving.records import SERVING_RECORD_SCHEMA

    try:
        table = pq.read_table(pa.BufferReader(get_bytes(s3, bucket, key)))
    except pa.ArrowException as err:
        raise ValueError(f"s3://{bucket}/{key}: not a readable Parquet file: {err}") from err
    missing = [c for c in SERVING_RECORD_SCHEMA.names if c not in table.column_names]
    if missing:
        raise ValueError(f"s3://{bucket}/{key}: missing column(s) {missing}")
    try:
        return table.select(SERVING_RECORD_SCHEMA.names).cast(SERVING_RECORD_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        raise ValueError(f"s3://{bucket}/{key}: columns of the wrong type: {err}") from err


def stage_parts(s3, bucket: str, routing_doc: Mapping[str, Any]) -> list[tuple[str, pa.Table]]:
    """``(day, records)`` of each ``serving/dt=<day>/`` part whose file name carries the
    document's rollout_id and sequence, keeping the rows of that rollout_id and sequence."""
    import pyarrow.compute as pc

    from driftloop.contracts.storage import list_keys
    from driftloop.serving.layout import SERVING_PREFIX

    rollout_id, sequence = _doc_identity(routing_doc)
    # part-<rollout_id>-<sequence, zero-padded>-<token>.parquet
    name = re.compile(
        rf"{re.escape(SERVING_PREFIX)}/dt=(\d{{4}}-\d{{2}}-\d{{2}})/"
        rf"part-{re.escape(rollout_id)}-0*{sequence}-[^/]+\.parquet"
    )
    parts = []
    for obj in list_keys(s3, bucket, f"{SERVING_PREFIX}/dt="):
        found = name.fullmatch(obj["Key"])
        if found is None:
            continue
        table = _read_part(s3, bucket, obj["Key"])
        mine = pc.and_(
            pc.equal(table["rollout_id"], rollout_id), pc.equal(table["sequence"], sequence)
        )
        parts.append((found.group(1), table.filter(pc.fill_null(mine, False))))
    return parts


def concat_parts(parts: list[tuple[str, pa.Table]]) -> pa.Table:
    """The records of :func:`stage_parts` as one table (the schema's empty table for none)."""
    import pyarrow as pa

    from driftloop.serving.records import SERVING_RECORD_SCHEMA

    tables = [table for _, table in parts]
    return pa.concat_tables(tables) if tables else SERVING_RECORD_SCHEMA.empty_table()


def load_stage_records(s3, bucket: str, routing_doc: Mapping[str, Any]) -> pa.Table:
    """The serving records of the routing document's rollout_id and sequence (all days), in
    :data:`~driftloop.serving.records.SERVING_RECORD_SCHEMA`; empty when none were written."""
    return concat_parts(stage_parts(s3, bucket, routing_doc))


def png_size(s3, bucket: str, key: str) -> tuple[int, int]:
    """(width, height) of a PNG in S3, from its header (the first 24 bytes)."""
    from botocore.exceptions import ClientError

    try:
        head = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-23")["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise ValueError(f"s3://{bucket}/{key}: a labeled frame without its image") from err
        raise
    if len(head) < 24 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        raise ValueError(f"s3://{bucket}/{key}: not a PNG image")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def load_labels(
    s3, bucket: str, image_ids_by_day: Mapping[str, Iterable[str]]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{image_id: (classes, xyxy boxes in image pixels)}`` of the frames that are labeled:
    ``labeled/dt=<day>/labels/<image_id>.txt`` exists (the day's listing is the "not found";
    a frame labeled on two days keeps the earlier day's label). Boxes come from
    :func:`driftloop.evaluation.detector.read_labels` at the size of the frame's PNG."""
    from driftloop.contracts.storage import get_bytes, labeled_prefix, list_keys
    from driftloop.evaluation.detector import read_labels

    labels: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="driftloop-rollout-labels-") as work:
        for day in sorted(image_ids_by_day):
            prefix = labeled_prefix(day)
            listed = {
                obj["Key"][len(prefix) + len("labels/") : -len(".txt")]: obj["Key"]
                for obj in list_keys(s3, bucket, f"{prefix}labels/")
                if obj["Key"].endswith(".txt")
            }
            for image_id in sorted(set(image_ids_by_day[day]) & listed.keys()):
                if image_id in labels:
                    continue
                width, height = png_size(s3, bucket, f"{prefix}images/{image_id}.png")
                path = Path(work) / f"{len(labels)}.txt"
                path.write_bytes(get_bytes(s3, bucket, listed[image_id]))
                boxes, classes = read_labels(path, width, height)
                labels[image_id] = (classes, boxes)
    return labels
