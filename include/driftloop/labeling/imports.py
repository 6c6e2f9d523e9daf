"""Labels back from the labelers: a Label Studio JSON export of a batch → a labeled day.

:func:`import_export` reads the export (Label Studio's *Export → JSON*: a list of tasks,
each with its ``id``, the ``data`` the batch gave it and its ``annotations``), checks it
against the batch's ``labeling/{batch day}/manifest.json`` and writes ``labeled/dt=D/``
(``D``: the batch's day unless told otherwise):

- ``images/<frame_id>.<ext>``: the frame's bytes, copied from where the batch listed it;
- ``labels/<frame_id>.txt``: the annotation as YOLO (an empty file: a frame with no object);
- ``frames.jsonl`` (:mod:`driftloop.contracts.labeled`): per frame ``source: queue``, the
  batch, its camera and frame id — the snapshot carries them per frame;
- ``_SUCCESS`` last: what was imported (batch, content digest, frames, skipped tasks).

Checks, each an :class:`ExportError` naming the task id: a task whose ``data`` is not a frame
of this batch (frame id, batch, image URI), a frame twice, an annotation that is no rectangle,
an unknown label, a rotated box, a box outside the image, several finished annotations
without exactly one marked ground truth. A task without a finished annotation (none, or
only cancelled ones) is skipped and counted.

Write-once: every file is written once. The same labels again (the same export, or a new
export of the same annotations) finish or confirm the day; a day finished with other labels
is refused (:class:`ImportRefused`): import those into another ``day``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import date
from typing import Any

from driftloop.contracts import storage
from driftloop.contracts.labeled import LabeledFrameInfo, frames_index_bytes, frames_index_key
from driftloop.contracts.stores import absent_if_not_found
from driftloop.labeling import formats
from driftloop.labeling.queue import MANIFEST, _day
from driftloop.labeling.sources import batch_prefix

FORMAT = "driftloop.labels-import/1"
#: image extensions a labeled day takes (driftloop.retrain.frames.IMAGE_EXTENSIONS)
IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg"}


class ExportError(ValueError):
    """An export that cannot be imported; the message names the task."""


class ImportRefused(RuntimeError):
    """The labeled day is already finished with other labels."""


def read_batch(s3, bucket: str, batch_day: date | str) -> dict[str, Any]:
    key = batch_prefix(_day(batch_day)) + MANIFEST
    manifest = absent_if_not_found(lambda: storage.get_json(s3, bucket, key))
    if manifest is None:
        raise ExportError(f"no labeling batch for {batch_day}: s3://{bucket}/{key} does not exist")
    return manifest


def parse_export(data: bytes) -> list[dict[str, Any]]:
    try:
        tasks = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ExportError(f"the export is not JSON: {err}") from None
    if not isinstance(tasks, list) or not all(isinstance(t, Mapping) for t in tasks):
        raise ExportError("the export must be a JSON list of tasks (Label Studio: Export → JSON)")
    return tasks


def _annotation(task: Mapping[str, Any], where: str) -> Mapping[str, Any] | None:
    """The task's finished annotation; None when it has none."""
    done = [
        a
        for a in task.get("annotations") or []
        if isinstance(a, Mapping) and not a.get("was_cancelled")
    ]
    if len(done) > 1:
        truth = [a for a in done if a.get("ground_truth")]
        if len(truth) != 1:
            raise ExportError(
                f"{where}: {len(done)} finished annotations and {len(truth)} marked ground "
                "truth: mark exactly one as ground truth in Label Studio"
            )
        done = truth
    return done[0] if done else None


def convert(manifest: Mapping[str, Any], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"labels": {frame_id: YOLO text}, "skipped": [task ids]}`` of the export's tasks,
    checked against the batch (module doc)."""
    frames = {f["frame_id"]: f for f in manifest["frames"]}
    labels: dict[str, str] = {}
    task_of: dict[str, Any] = {}
    skipped = []
    for number, task in enumerate(tasks, 1):
        where = f"task {task.get('id', f'#{number} (no id)')}"
        data = task.get("data")
        if not isinstance(data, Mapping):
            raise ExportError(f"{where}: no data")
        frame = frames.get(data.get("frame_id"))
        if (
            frame is None
            or data.get("batch") != manifest["batch"]
            or data.get("image") != frame["image"]
        ):
            raise ExportError(
                f"{where}: not a task of batch {manifest['batch']} (frame_id "
                f"{data.get('frame_id')!r}, batch {data.get('batch')!r}, image {data.get('image')!r})"
            )
        frame_id = frame["frame_id"]
        if frame_id in task_of:
            raise ExportError(f"{where}: frame {frame_id} is also {task_of[frame_id]}")
        task_of[frame_id] = where
        annotation = _annotation(task, where)
        if annotation is None:
            skipped.append(task.get("id"))
            continue
        try:
            boxes = formats.result_to_yolo(annotation.get("result") or [])
        except formats.AnnotationError as err:
            raise ExportError(f"{where} (frame {frame_id}): {err}") from None
        labels[frame_id] = formats.yolo_text(boxes)
    return {"labels": labels, "skipped": skipped}


def _content_digest(batch: str, labels: Mapping[str, str]) -> str:
    return hashlib.sha256(storage.dumps_canonical({"batch": batch, "labels": labels})).hexdigest()


def import_export(
    s3, bucket: str, export: bytes, batch_day: date | str, *, day: date | str | None = None
) -> dict[str, Any]:
    """Import a Label Studio export of the batch of ``batch_day`` into ``labeled/dt={day}/``
    (default: the batch's day); returns what was imported (module doc)."""
    manifest = read_batch(s3, bucket, batch_day)
    converted = convert(manifest, parse_export(export))
    labels = converted["labels"]
    target = storage.day_str(_day(day if day is not None else manifest["day"]))
    prefix = storage.labeled_prefix(target)
    digest = _content_digest(manifest["batch"], labels)
    summary = {
        "format": FORMAT,
        "day": target,
        "batch": manifest["batch"],
        "labeled": storage.s3_uri(bucket, prefix),
        "frames": len(labels),
        "skipped_tasks": converted["skipped"],
        "content_sha256": digest,
    }
    marker = prefix + storage.SUCCESS_MARKER
    finished = absent_if_not_found(lambda: storage.get_json(s3, bucket, marker))
    if finished is not None:
        if finished.get("content_sha256") == digest:
            return {**finished, "already_imported": True}
        raise ImportRefused(
            f"s3://{bucket}/{marker}: {target} is already labeled from batch "
            f"{finished.get('batch')} with other labels (content {finished.get('content_sha256')}"
            f", this export {digest}): import it into another day"
        )
    if not labels:
        raise ExportError(
            f"the export has no finished annotation ({len(converted['skipped'])} tasks skipped)"
        )
    frames = {f["frame_id"]: f for f in manifest["frames"]}
    infos = []
    for frame_id in sorted(labels):
        frame = frames[frame_id]
        source_bucket, key = storage.split_s3_uri(frame["image"])
        name = key.rsplit("/", 1)[-1]
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if ext not in IMAGE_TYPES:
            raise ExportError(f"frame {frame_id}: {frame['image']} is no {sorted(IMAGE_TYPES)}")
        image = storage.get_bytes(s3, source_bucket, key)
        storage.put_once(s3, bucket, f"{prefix}images/{frame_id}.{ext}", image, IMAGE_TYPES[ext])
        storage.put_once(
            s3, bucket, f"{prefix}labels/{frame_id}.txt", labels[frame_id].encode(), "text/plain"
        )
        infos.append(
            LabeledFrameInfo(frame_id, frame["camera_id"], "queue", frame_id, manifest["batch"])
        )
    storage.put_once(
        s3, bucket, frames_index_key(target), frames_index_bytes(infos), "application/x-ndjson"
    )
    storage.put_json_once(s3, bucket, marker, summary)  # last
    return {**summary, "export_sha256": hashlib.sha256(export).hexdigest()}
