"""One day's labeling batch: :func:`queue_day` picks the frames and writes ``labeling/{day}/``.

Written once, in this order (each file write-once; a re-run writes the same bytes):

- ``tasks.json``: the Label Studio tasks, pre-annotated (:mod:`driftloop.labeling.formats`);
- ``label_config.xml``: the labeling interface the tasks are made for;
- ``yolo/classes.txt`` and ``yolo/labels/<frame_id>.txt``: the served model's boxes as YOLO;
- ``images.txt``: each picked frame's ``s3://`` URI, one a line. The images are **listed, not
  copied**: ``frames/dt=D/`` is write-once, and a labeling tool reads them where they are (a
  Label Studio source storage on the bucket);
- ``labeling/_index/{day}.json``: the picked frame ids (what later days never pick again);
- ``manifest.json`` last: the policy, the reference, and per frame its score, the signals,
  what picked it and why, its image and model version. A day whose manifest exists is done:
  :func:`queue_day` returns its summary again without reading or writing anything else.

A day without a frame manifest has nothing to label (FileNotFoundError); a day whose
inference log is not finished raises :class:`~driftloop.labeling.sources.NotServed`.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from datetime import date
from typing import Any

import numpy as np

from driftloop.config.labeling_policy import Labeling
from driftloop.config.settings import Settings
from driftloop.contracts import storage
from driftloop.contracts.schema import EMBEDDING_COLUMN, EMBEDDING_DIM
from driftloop.contracts.stores import absent_if_not_found
from driftloop.labeling import formats, signals
from driftloop.labeling.select import Candidate, select
from driftloop.labeling.sources import ServedDay, batch_prefix, index_key

FORMAT = "driftloop.labeling/1"
MANIFEST = "manifest.json"
IMAGES_NOTE = (
    "listed, not copied: images.txt holds each frame's s3:// URI (frames/dt=D/ is write-once)"
)


def _day(day: date | str) -> date:
    from driftloop.serving.batch import _day as parse_day

    return parse_day(day)


def candidates_of(served: ServedDay, reference, policy: Labeling) -> list[Candidate]:
    """Every served frame of the day with its four signals (see :mod:`.select`)."""
    from driftloop.drift.sketch import embedding_matrix
    from driftloop.promotion.rollout_records import pair_frames

    table = served.inference
    ids = [str(i) for i in table["image_id"].to_pylist()]
    cameras = [str(c) for c in table["camera_id"].to_pylist()]
    unknown = sorted(set(ids) - {f.image_id for f in served.frames})
    if unknown:
        raise ValueError(
            f"{served.day}: inference rows of frames the manifest lacks: {unknown[:5]}"
        )
    unsure = signals.uncertainty(table["confidence_mean"].to_numpy(zero_copy_only=False))
    roles = set(served.records["role"].to_pylist())
    paired = pair_frames(served.records) if {"subject", "baseline"} <= roles else None
    disagree = signals.lookup(signals.disagreement(paired) if paired else {}, ids)
    if reference is not None and ids:
        embeddings = embedding_matrix(table, EMBEDDING_COLUMN, EMBEDDING_DIM)
        far = signals.novelty(
            embeddings, reference.embeddings, policy.embedding.neighbors, policy.embedding.distance
        )
        new = signals.new_camera(cameras, reference.cameras)
    else:
        far, new = np.zeros(len(ids)), np.zeros(len(ids), dtype=bool)
    return [
        Candidate(i, c, float(u), float(d), float(n), bool(w))
        for i, c, u, d, n, w in zip(ids, cameras, unsure, disagree, far, new, strict=True)
    ]


def image_size(s3, bucket: str, key: str) -> tuple[int, int]:
    from PIL import Image

    data = storage.get_bytes(s3, bucket, key)
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception as err:
        raise ValueError(f"s3://{bucket}/{key}: not a readable image: {err}") from err


def _predictions(frame_id: str, served_version: str, versions: dict, size) -> list[dict]:
    order = sorted(versions, key=lambda v: (v != served_version, v))
    return [formats.prediction(frame_id, v, versions[v]["boxes"], *size) for v in order]


def build_batch(
    s3, bucket: str, served: ServedDay, picks, served_versions: dict[str, str]
) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """The batch's files (``{relative name: bytes}``, manifest and index aside) and the
    manifest's per-frame entries, in pick order."""
    from driftloop.labeling.sources import served_boxes

    frames = {f.image_id: f for f in served.frames}
    boxes = served_boxes(served.records)
    prefix = batch_prefix(served.day)
    tasks, entries = [], []
    files: dict[str, bytes] = {"yolo/classes.txt": formats.classes_text().encode()}
    for pick in picks:
        frame = frames[pick.frame_id]
        uri = storage.s3_uri(bucket, frame.key)
        size = image_size(s3, bucket, frame.key)
        served_version = served_versions[pick.frame_id]
        predictions = _predictions(
            pick.frame_id, served_version, boxes.get(pick.frame_id, {}), size
        )
        first = [formats.predicted_boxes(p) for p in predictions[:1]]
        label = f"yolo/labels/{pick.frame_id}.txt"
        files[label] = formats.yolo_text(first[0] if first else []).encode()
        data = {
            "image": uri,
            "frame_id": pick.frame_id,
            "camera_id": pick.camera_id,
            "ts": frame.ts.isoformat(),
            "day": served.day,
            "batch": prefix,
            "queue_score": pick.score,
            "reasons": "; ".join(pick.reasons) or pick.picked_by,
        }
        tasks.append(formats.task(data, predictions))
        entries.append(
            {
                **pick.to_dict(),
                "image": uri,
                "width": size[0],
                "height": size[1],
                "model_version": served_version,
                "predictions": [p["model_version"] for p in predictions],
                "yolo": label,
            }
        )
    files["tasks.json"] = json.dumps(tasks, indent=1, sort_keys=True).encode()
    files["label_config.xml"] = formats.LABEL_CONFIG.encode()
    files["images.txt"] = "".join(e["image"] + "\n" for e in entries).encode()
    return files, entries


def _content_type(name: str) -> str:
    if name.endswith(".json"):
        return "application/json"
    return "application/xml" if name.endswith(".xml") else "text/plain"


def queue_day(
    settings: Settings, day: date | str, run_id: str, *, s3=None, policy: Labeling | None = None
) -> dict[str, Any]:
    """Pick the frames of served ``day`` worth a label and write the batch (module doc);
    returns its summary. ``s3``: the task's client (default: boto3's environment);
    ``policy``: the ``labeling:`` section (default: the settings' drift policy)."""
    from driftloop.config.drift_policy import load_policy
    from driftloop.labeling.reference import find_reference, load_reference
    from driftloop.labeling.sources import already_taken, read_served_day

    day = _day(day)
    s3 = s3 if s3 is not None else storage.s3_client()
    bucket = settings.bucket
    prefix = batch_prefix(day)
    done = absent_if_not_found(lambda: storage.get_json(s3, bucket, prefix + MANIFEST))
    if done is not None:
        return {**done["summary"], "already_queued": True}
    full_policy = load_policy(settings.policy_path)
    policy = policy or full_policy.labeling
    served = read_served_day(s3, bucket, day)
    found = find_reference(settings, day)
    reference = load_reference(s3, found, policy.embedding.reference_rows) if found else None
    candidates = candidates_of(served, reference, policy)
    taken = already_taken(s3, bucket, day)
    picks = select(candidates, policy, taken)
    versions = dict(
        zip(
            served.inference["image_id"].to_pylist(),
            served.inference["model_version"].to_pylist(),
            strict=True,
        )
    )
    files, entries = build_batch(s3, bucket, served, picks, versions)
    for name in sorted(files):
        storage.put_once(s3, bucket, prefix + name, files[name], _content_type(name))
    index = {"day": served.day, "batch": prefix, "frames": sorted(p.frame_id for p in picks)}
    storage.put_json_once(s3, bucket, index_key(day), index)
    new_cameras = sorted({p.camera_id for p in picks if p.signals["new_camera"]})
    summary = {
        "day": served.day,
        "batch": storage.s3_uri(bucket, prefix),
        "frames_served": served.inference.num_rows,
        "candidates": len(candidates),
        "excluded": sum(1 for c in candidates if c.frame_id in taken),
        "queued": len(picks),
        "budget": policy.budget_per_day,
        "picked_by": dict(sorted(Counter(p.picked_by for p in picks).items())),
        "new_cameras": new_cameras,
        "reference": None if reference is None else reference.rule,
    }
    manifest = {
        "format": FORMAT,
        "day": served.day,
        "batch": prefix,
        "run_id": run_id,
        "policy_version": full_policy.version,
        "policy": policy.model_dump(mode="json"),
        "reference": None if reference is None else reference.describe(),
        "images": IMAGES_NOTE,
        "files": {n: hashlib.sha256(files[n]).hexdigest() for n in sorted(files)},
        "frames": entries,
        "summary": summary,
    }
    storage.put_json_once(s3, bucket, prefix + MANIFEST, manifest)  # last
    return summary
