"""Content-addressed YOLO dataset snapshots: ``datasets/{sha256}/``.

:func:`snapshot_dataset` gathers the labeled frames of a window of days
(``labeled/dt=D/images/<stem>.png`` + ``labeled/dt=D/labels/<stem>.txt``) and the golden set
(:mod:`driftloop.evaluation.golden`), validates every frame, splits them and writes::

    datasets/{sha256}/images/{train,val,eval}/<stem>.png
    datasets/{sha256}/labels/{train,val,eval}/<stem>.txt
    datasets/{sha256}/data.yaml          Ultralytics dataset file (path: . -> set by the consumer)
    datasets/{sha256}/frames.jsonl       camera, source, batch of each window frame
    datasets/{sha256}/manifest.json      written last: its presence means "complete snapshot"
    datasets/{sha256}/requests/<run>.json   provenance of each request (not hashed)

Rules:

- **Validation.** A frame is an image and a label file with the same stem. A label is a
  UTF-8 text of ``cls cx cy w h`` lines (5 numbers; ``cls`` one of
  :data:`driftloop.contracts.schema.CLASS_NAMES`' ids; coordinates in [0, 1]; ``w, h > 0``; the box
  inside the image); an empty label is a valid background frame. An image must decode
  (PNG or JPEG). A frame that breaks a rule, an image without a label, a label without an
  image, duplicate stems or duplicate image bytes are *rejected*: listed in the manifest
  under ``rejected`` as ``{key, reason}`` (``reason`` = ``"<category>: <detail>"``), never
  silently dropped and never fatal. The golden set must be intact (its files match its own
  manifest), otherwise the snapshot fails.
- **Split.** By a hash of the frame's stem, not by random state: ``u = first 8 bytes of
  sha256("driftloop-split/1:" + stem) / 2**64``; ``u < eval_share`` -> eval, ``u <
  eval_share + val_share`` -> val, else train. Golden frames are always eval. A frame's split
  depends only on its stem and the shares, so it keeps its split in every snapshot with the
  same shares (a frame evaluated on is never trained on by a later snapshot either).
- **Cameras.** ``frames.jsonl`` lists every kept window frame as its day's
  ``frames.jsonl`` described it (:mod:`driftloop.contracts.labeled`: ``stem``, ``camera_id``,
  ``source``, ``frame_id``, ``batch``; a frame its day does not list: camera ``unknown``,
  source ``feedback``), sorted by stem; golden frames are not listed (camera ``unknown``). It
  is a file of the snapshot, so a frame's camera is part of the hash; the manifest counts the
  frames per split and camera under ``cameras``. A snapshot from before has no such file:
  :func:`driftloop.retrain.snapshot_io.snapshot_frames` reads its frames as camera
  ``unknown``.
- **Hash.** sha256 of the listing ``"<sha256 of file>  <relative path>\\n"`` (sha256sum
  format) of every file except ``manifest.json`` and ``requests/``, sorted by path. Labels and
  images are copied byte for byte, so any changed byte changes the hash; ``source_run`` never
  enters it.
- **Write-once.** No key is ever overwritten: a file an interrupted run left behind must
  hold the same bytes (checked against one listing of the prefix, else
  :class:`driftloop.contracts.storage.WriteOnceViolation`), the manifest and request records go
  through :func:`driftloop.contracts.storage.put_json_once`, and when ``manifest.json`` exists nothing
  of the snapshot is written again. The manifest holds only what follows from the inputs
  (no time, no run id), so the same request writes the same bytes.

:func:`driftloop.retrain.snapshot_io.download_dataset` copies a snapshot to a local folder,
checks every file against the manifest and points ``data.yaml``'s ``path`` at that folder: the
training entrypoint and the evaluation use it.

Where the parts are: :mod:`driftloop.retrain.frames` (validation, split),
:mod:`driftloop.retrain.snapshot_io` (the S3 layout, write-once writes, download). Here: the
snapshot itself (:func:`snapshot_dataset`) and the DAG step around it (:func:`snapshot_for_plan`).

Imports: boto3 clients are passed in; PIL (image checks), numpy (golden generation) and yaml
load on use. Never torch or ultralytics: this runs inside Airflow tasks.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from driftloop.config.settings import Settings
from driftloop.contracts import schema, storage
from driftloop.contracts.labeled import frames_index_bytes
from driftloop.evaluation import golden as golden_set
from driftloop.retrain.frames import (
    DEFAULT_WORKERS,
    LABEL_EXTENSION,
    SPLIT_RULE,
    SPLIT_SALT,
    SPLITS,
    assign_splits,
    describe_days,
    load_frames,
    no_frames_error,
)
from driftloop.retrain.snapshot_io import (
    DATA_YAML,
    FRAMES_FILE,
    HASH_RULE,
    MANIFEST,
    data_yaml_bytes,
    dataset_prefix,
    dataset_uri,
    listing_sha256,
    record_request,
    write_snapshot,
)

FORMAT = "driftloop.dataset/1"


@dataclass(frozen=True)
class SnapshotResult:
    """What :func:`snapshot_dataset` made (or found): ``uri`` is what downstream tasks get."""

    sha256: str
    uri: str  # s3://bucket/datasets/{sha256}/
    manifest: dict[str, Any]
    counts: dict[str, int]  # train / val / eval images, golden (inside eval), rejected, boxes
    created: bool = False  # False: the snapshot existed already and nothing was rewritten
    request_key: str | None = None  # datasets/{sha256}/requests/<run>.json, if source_run

    def to_dict(self) -> dict[str, Any]:
        """A small XCom-friendly summary (no manifest: read it from ``uri``)."""
        return {
            "sha256": self.sha256,
            "uri": self.uri,
            "counts": dict(self.counts),
            "created": self.created,
            "request_key": self.request_key,
        }


def _counts(manifest: dict[str, Any]) -> dict[str, int]:
    counts = {split: int(manifest["splits"].get(split, 0)) for split in SPLITS}
    counts["golden"] = int(manifest.get("golden", {}).get("frames", 0))
    counts["rejected"] = len(manifest.get("rejected", ()))
    counts["boxes"] = sum(sum(c.values()) for c in manifest.get("class_counts", {}).values())
    return counts


def _check_days(days: Iterable[date | str]) -> list[str]:
    if isinstance(days, str | date) or days is None:
        raise ValueError(f"days must be a list of 'YYYY-MM-DD' dates, got {days!r}")
    out: set[str] = set()
    for day in days:
        text = storage.day_str(day) if isinstance(day, str | date) else None
        try:
            parsed = date.fromisoformat(text) if text is not None else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.isoformat() != text:
            raise ValueError(f"days must be 'YYYY-MM-DD' dates, got {day!r}")
        out.add(text)
    if not out:
        raise ValueError("no days given: a snapshot needs at least one labeled/dt=D/ partition")
    return sorted(out)


def _check_shares(val_share: float, eval_share: float) -> tuple[float, float]:
    for name, value in (("val_share", val_share), ("eval_share", eval_share)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"{name} must be a number, got {value!r}")
    if not 0 < val_share < 1 or not 0 <= eval_share < 1 or val_share + eval_share >= 1:
        raise ValueError(
            "need 0 < val_share, 0 <= eval_share and val_share + eval_share < 1, got "
            f"val_share={val_share!r} eval_share={eval_share!r}"
        )
    return float(val_share), float(eval_share)


def snapshot_dataset(
    s3,
    bucket: str,
    *,
    days: Sequence[date | str],
    golden_version: str = golden_set.DEFAULT_VERSION,
    golden_sha256: str | None = None,
    val_share: float = 0.2,
    eval_share: float = 0.2,
    source_run: str | None = None,
    max_workers: int = DEFAULT_WORKERS,
) -> SnapshotResult:
    """Snapshot the labeled frames of ``days`` plus golden set ``golden_version`` into
    ``s3://bucket/datasets/{sha256}/`` (see the module doc for the rules) and return it.

    Idempotent: the same inputs give the same sha256, and if that snapshot's manifest
    exists nothing of it is rewritten (``created=False``; the stored manifest is returned).
    The golden set must have been published (GoldenSetMissing otherwise) and, with
    ``golden_sha256`` (``DRIFTLOOP_GOLDEN_MANIFEST_SHA256``), its manifest must hash to it. ``source_run``
    (an Airflow run id, …) is provenance only: recorded in ``requests/``, never hashed.
    ValueError: no days, bad shares, no valid frames in the window (naming the days and
    the top rejection reasons), an empty train or val split, or a golden set that does not
    match its manifest.
    """
    days = _check_days(days)
    val_share, eval_share = _check_shares(val_share, eval_share)
    if source_run is not None and (not isinstance(source_run, str) or not source_run):
        raise ValueError(f"source_run must be a non-empty string or None, got {source_run!r}")
    gold = golden_set.load_golden_set(s3, bucket, golden_version, expected_sha256=golden_sha256)
    created_from = {
        "days": days,
        "golden_version": golden_version,
        "val_share": val_share,
        "eval_share": eval_share,
    }

    with tempfile.TemporaryDirectory(prefix="driftloop-snapshot-") as tmp:
        golden_frames, window_frames, rejected = load_frames(
            s3, bucket, gold, golden_version, days, Path(tmp), max_workers
        )
        kept = assign_splits(
            golden_frames, window_frames, rejected, val_share=val_share, eval_share=eval_share
        )
        rejected.sort(key=lambda r: (r["key"], r["reason"]))
        n_window = len(kept) - len(golden_frames)
        if n_window == 0:
            raise no_frames_error(days, rejected, len(window_frames))

        files: dict[str, str] = {}
        local: dict[str, Path | bytes] = {}
        sources: dict[str, str] = {}
        splits = dict.fromkeys(SPLITS, 0)
        backgrounds = dict.fromkeys(SPLITS, 0)
        class_counts = {split: dict.fromkeys(schema.CLASS_NAMES, 0) for split in SPLITS}
        cameras: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
        for frame, split in kept:
            cameras[split][frame.camera_id] = cameras[split].get(frame.camera_id, 0) + 1
            image_path = f"images/{split}/{frame.stem}{frame.ext}"
            label_path = f"labels/{split}/{frame.stem}{LABEL_EXTENSION}"
            files[image_path], local[image_path] = frame.image_sha, frame.image_file
            files[label_path], local[label_path] = frame.label_sha, frame.label_file
            sources[image_path], sources[label_path] = frame.image_key, frame.label_key
            splits[split] += 1
            backgrounds[split] += not frame.boxes
            for cls, *_ in frame.boxes:
                class_counts[split][schema.CLASS_NAMES[cls]] += 1
        if splits["train"] == 0 or splits["val"] == 0:
            raise ValueError(
                f"the split of {n_window} window frame(s) of days {describe_days(days)} leaves "
                f"train={splits['train']} val={splits['val']} (val_share={val_share}, "
                f"eval_share={eval_share}): Ultralytics needs both; widen the window"
            )
        local[DATA_YAML] = data_yaml_bytes()
        # kept = the golden frames, then the window's: only window frames have a camera
        local[FRAMES_FILE] = frames_index_bytes(f.info for f, _ in kept[len(golden_frames) :])
        for path in (DATA_YAML, FRAMES_FILE):
            files[path] = hashlib.sha256(local[path]).hexdigest()
        sha256 = listing_sha256(files)
        manifest = {
            "format": FORMAT,
            "sha256": sha256,
            "hash_rule": HASH_RULE,
            "created_from": created_from,
            "source_partitions": [storage.labeled_prefix(day) for day in days],
            "golden": {
                "version": golden_version,
                "prefix": golden_set.golden_prefix(golden_version),
                "frames": len(golden_frames),
                "manifest_sha256": hashlib.sha256(storage.dumps_canonical(gold)).hexdigest(),
            },
            "split_rule": {
                "description": SPLIT_RULE,
                "salt": SPLIT_SALT,
                "val_share": val_share,
                "eval_share": eval_share,
            },
            "names": {str(i): name for i, name in enumerate(schema.CLASS_NAMES)},
            "splits": splits,
            "window_frames": n_window,
            "background_frames": backgrounds,
            "class_counts": class_counts,
            "cameras": {split: dict(sorted(c.items())) for split, c in cameras.items()},
            "rejected": rejected,
            "files": files,
            "sources": sources,
        }
        created = write_snapshot(s3, bucket, manifest, local, max_workers)
    if not created:
        manifest = storage.get_json(s3, bucket, dataset_prefix(sha256) + MANIFEST)

    request_key = None
    if source_run is not None:
        request = {
            "source_run": source_run,
            "sha256": sha256,
            "created_from": created_from,
            "splits": splits,
            "rejected": rejected,
        }
        request_key = record_request(s3, bucket, sha256, source_run, request)
    return SnapshotResult(
        sha256=sha256,
        uri=dataset_uri(bucket, sha256),
        manifest=manifest,
        counts=_counts(manifest),
        created=created,
        request_key=request_key,
    )


def snapshot_for_plan(
    s3, settings: Settings, plan: Mapping[str, Any], run_id: str
) -> dict[str, Any]:
    """The ``snapshot_dataset`` task: the plan's days as a snapshot, recorded in the ledger.
    NoFramesError when the window has no usable labeled frame."""
    from driftloop.retrain.records import ledger

    result = snapshot_dataset(
        s3,
        settings.bucket,
        days=plan["days"],
        source_run=run_id,
        golden_sha256=settings.golden_manifest_sha256,
    )
    document = result.to_dict()
    ledger(settings).append(
        "dataset_snapshot",
        actor=f"airflow:{run_id}",
        subject=f"dataset:{result.sha256}",
        payload={
            "uri": document["uri"],
            "days": list(plan["days"]),
            "counts": document.get("counts", {}),
        },
        input_hashes={"dataset": result.sha256},
        idempotency_key=f"retrain_detector/{run_id}/snapshot",
    )
    return document
