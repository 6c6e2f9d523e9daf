"""Content-addressed YOLO dataset snapshots: ``datasets/{sha256}/``.

:func:`snapshot_dataset` gathers the labeled frames of a window of days
(``labeled/dt=D/images/<stem>.png`` + ``labeled/dt=D/labels/<stem>.txt``) and the golden set
(:mod:`driftloop.evaluation.golden`), validates every frame, splits them and writes::

    datasets/{sha256}/images/{train,val,eval}/<stem>.png
    datasets/{sha256}/labels/{train,val,eval}/<stem>.txt
    datasets/{sha256}/data.yaml          Ultralytics dataset file (path: . -> set by the consumer)
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

:func:`download_dataset` copies a snapshot to a local folder, checks every file against the
manifest and points ``data.yaml``'s ``path`` at that folder: the training entrypoint and the
evaluation use it.

Imports: boto3 clients are passed in; PIL (image checks), numpy (golden generation) and yaml
load on use. Never torch or ultralytics: this runs inside Airflow tasks.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Any

from driftloop.contracts import schema, storage
from driftloop.evaluation import golden as golden_set

SPLITS: tuple[str, ...] = ("train", "val", "eval")
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
IMAGE_FORMATS: tuple[str, ...] = ("PNG", "JPEG")
LABEL_EXTENSION = ".txt"
MANIFEST = "manifest.json"
DATA_YAML = "data.yaml"
REQUESTS_DIR = "requests"
FORMAT = "driftloop.dataset/1"
SPLIT_SALT = "driftloop-split/1"
#: slack for boxes touching the frame edge (labels carry 6 decimals)
BOX_TOLERANCE = 1e-6
DEFAULT_WORKERS = 8

SPLIT_RULE = (
    f"window frames: u = int(sha256('{SPLIT_SALT}:' + stem)[:8 bytes], big-endian) / 2**64; "
    "u < eval_share -> eval, u < eval_share + val_share -> val, else train; "
    "golden frames: always eval"
)
HASH_RULE = (
    "sha256 of the lines '<sha256 of file>  <relative path>\\n' (sha256sum format) of every "
    "file in `files`, sorted by path; manifest.json and requests/ are not part of it"
)

_CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".txt": "text/plain",
    ".yaml": "application/yaml",
}

# rejection categories (the part of a reason before the first ": ")
MISSING_LABEL = "missing label"
MISSING_IMAGE = "missing image"
UNREADABLE_IMAGE = "unreadable image"
MALFORMED_LABEL = "malformed label"
DUPLICATE = "duplicate"
UNEXPECTED_OBJECT = "unexpected object"


class LabelError(ValueError):
    """A YOLO label file that breaks the label rules."""


# ---------------------------------------------------------------------------------------------
# Pure helpers: validation, split, hash, data.yaml
# ---------------------------------------------------------------------------------------------


def parse_label(data: bytes) -> list[tuple[int, float, float, float, float]]:
    """The boxes of a YOLO label file, or :class:`LabelError` naming the first broken line.

    A stricter sibling of :func:`driftloop_dev.synth.frames.parse_yolo_labels` (which trusts its
    input): every rule of the module docstring is checked here.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise LabelError(f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    n_classes = len(schema.CLASS_NAMES)
    boxes: list[tuple[int, float, float, float, float]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise LabelError(f"line {n}: expected 5 fields 'cls cx cy w h', got {len(fields)}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise LabelError(f"line {n}: not a number in {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise LabelError(f"line {n}: non-finite value in {line.strip()!r}")
        cls, cx, cy, w, h = values
        if not cls.is_integer() or not 0 <= cls < n_classes:
            classes = ", ".join(f"{i} {name}" for i, name in enumerate(schema.CLASS_NAMES))
            raise LabelError(f"line {n}: class id {fields[0]} not in schema classes ({classes})")
        for name, text, value in zip(("cx", "cy", "w", "h"), fields[1:], values[1:], strict=True):
            if not 0.0 <= value <= 1.0:
                raise LabelError(f"line {n}: {name} = {text} outside [0, 1]")
        if w <= 0.0 or h <= 0.0:
            raise LabelError(f"line {n}: box width and height must be > 0, got w={w:g} h={h:g}")
        if (
            cx - w / 2 < -BOX_TOLERANCE
            or cx + w / 2 > 1 + BOX_TOLERANCE
            or cy - h / 2 < -BOX_TOLERANCE
            or cy + h / 2 > 1 + BOX_TOLERANCE
        ):
            raise LabelError(
                f"line {n}: box ({cx:g}, {cy:g}, {w:g}, {h:g}) extends outside the image"
            )
        boxes.append((int(cls), cx, cy, w, h))
    return boxes


def check_image(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of a decodable PNG/JPEG image, or ValueError saying why not."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decode every pixel: truncated files fail here
            fmt, size = image.format, image.size
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, DecompressionBomb…)
        raise ValueError(f"{type(err).__name__}: {err}") from None
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"format {fmt} is not one of {', '.join(IMAGE_FORMATS)}")
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"empty image {size[0]}x{size[1]}")
    return size


def split_of(stem: str, *, val_share: float, eval_share: float) -> str:
    """The split of a window frame (golden frames are always ``eval``); see the module doc."""
    digest = hashlib.sha256(f"{SPLIT_SALT}:{stem}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < eval_share:
        return "eval"
    if u < eval_share + val_share:
        return "val"
    return "train"


def listing_sha256(files: dict[str, str]) -> str:
    """The dataset hash of ``{relative path: sha256 of bytes}`` (see the module doc)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{files[path]}  {path}\n".encode())
    return digest.hexdigest()


def data_yaml_bytes() -> bytes:
    """The snapshot's Ultralytics dataset file; ``path`` is resolved by the consumer."""
    names = "".join(f"  {i}: {name}\n" for i, name in enumerate(schema.CLASS_NAMES))
    return (
        "# driftloop dataset snapshot; `path` is set to the local folder by download_dataset()\n"
        "path: .\n"
        "train: images/train\n"
        "val: images/val\n"
        "test: images/eval\n"
        f"names:\n{names}"
    ).encode()


def dataset_prefix(sha256: str) -> str:
    return f"{storage.DATASETS_PREFIX}/{sha256}/"


def dataset_uri(bucket: str, sha256: str) -> str:
    return storage.s3_uri(bucket, dataset_prefix(sha256))


def safe_run_name(source_run: str) -> str:
    """A key-safe file name for a run id (``manual__2024-06-30T12:00:00+00:00`` …): unsafe
    characters become ``_`` and a short hash of the original keeps distinct ids distinct."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", source_run)[:160].strip(".") or "run"
    if safe != source_run:
        safe += "-" + hashlib.sha256(source_run.encode()).hexdigest()[:8]
    return safe


def _category(reason: str) -> str:
    return reason.split(": ", 1)[0]


def _content_type(path: str) -> str:
    return _CONTENT_TYPES.get(PurePosixPath(path).suffix.lower(), "application/octet-stream")


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


def _describe_days(days: Sequence[str]) -> str:
    if len(days) <= 6:
        return ", ".join(days)
    return f"{days[0]} .. {days[-1]} ({len(days)} days)"


# ---------------------------------------------------------------------------------------------
# Frames: discovery, loading, checks
# ---------------------------------------------------------------------------------------------


@dataclass
class _Frame:
    stem: str
    image_key: str
    label_key: str
    # filled by _load
    reason: str | None = None
    reject_key: str | None = None
    image_sha: str = ""
    label_sha: str = ""
    image_file: Path | None = None
    label_file: Path | None = None
    boxes: list[tuple[int, float, float, float, float]] = field(default_factory=list)

    @property
    def ext(self) -> str:
        return PurePosixPath(self.image_key).suffix.lower()

    def reject(self, key: str, reason: str) -> _Frame:
        self.reject_key, self.reason = key, reason
        return self


def _discover(
    keys: Iterable[str], prefix: str, rejected: list[dict[str, str]], *, golden: bool = False
) -> list[_Frame]:
    """Pair ``images/<stem>.<ext>`` and ``labels/<stem>.txt`` under ``prefix`` into frames;
    whatever cannot be paired goes to ``rejected``."""
    images: dict[str, list[str]] = {}
    labels: dict[str, list[str]] = {}
    for key in keys:
        rel = key[len(prefix) :]
        if not rel or rel.endswith("/") or (golden and rel == golden_set.MANIFEST):
            continue  # folder markers; the golden set's own manifest
        folder, _, name = rel.partition("/")
        stem, ext = os.path.splitext(name)
        ext = ext.lower()
        if "/" in name or not stem or stem.startswith("."):
            pass
        elif folder == "images" and ext in IMAGE_EXTENSIONS:
            images.setdefault(stem, []).append(key)
            continue
        elif folder == "labels" and ext == LABEL_EXTENSION:
            labels.setdefault(stem, []).append(key)
            continue
        rejected.append(
            {
                "key": key,
                "reason": f"{UNEXPECTED_OBJECT}: not images/<stem>.(png|jpg|jpeg) or "
                "labels/<stem>.txt of the partition",
            }
        )
    frames: list[_Frame] = []
    for stem in sorted(images.keys() | labels.keys()):
        image_keys, label_keys = images.get(stem, []), labels.get(stem, [])
        if len(image_keys) > 1:
            for key in image_keys + label_keys:
                rejected.append(
                    {
                        "key": key,
                        "reason": f"{DUPLICATE}: several images for stem {stem!r}: {', '.join(image_keys)}",
                    }
                )
        elif not image_keys:
            rejected.append(
                {
                    "key": label_keys[0],
                    "reason": f"{MISSING_IMAGE}: no {prefix}images/{stem}.(png|jpg|jpeg) for this label",
                }
            )
        elif not label_keys:
            rejected.append(
                {
                    "key": image_keys[0],
                    "reason": f"{MISSING_LABEL}: no {prefix}labels/{stem}.txt for this image",
                }
            )
        else:
            frames.append(_Frame(stem, image_keys[0], label_keys[0]))
    return frames


def _get(s3, bucket: str, key: str) -> bytes | None:
    """An object's bytes, or None when it is gone (other errors propagate: retry the task)."""
    from botocore.exceptions import ClientError

    try:
        return storage.get_bytes(s3, bucket, key)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _load(s3, bucket: str, frame: _Frame, spool: Path, index: int) -> _Frame:
    """Read, check and spool one frame to local disk (memory stays bounded)."""
    image = _get(s3, bucket, frame.image_key)
    if image is None:
        return frame.reject(
            frame.label_key, f"{MISSING_IMAGE}: {frame.image_key} disappeared while reading"
        )
    label = _get(s3, bucket, frame.label_key)
    if label is None:
        return frame.reject(
            frame.image_key, f"{MISSING_LABEL}: {frame.label_key} disappeared while reading"
        )
    frame.image_sha = hashlib.sha256(image).hexdigest()
    frame.label_sha = hashlib.sha256(label).hexdigest()
    try:
        check_image(image)
    except ValueError as err:
        return frame.reject(frame.image_key, f"{UNREADABLE_IMAGE}: {err}")
    try:
        frame.boxes = parse_label(label)
    except LabelError as err:
        return frame.reject(frame.label_key, f"{MALFORMED_LABEL}: {err}")
    frame.image_file = spool / f"{index:07d}{frame.ext}"
    frame.label_file = spool / f"{index:07d}.txt"
    frame.image_file.write_bytes(image)
    frame.label_file.write_bytes(label)
    return frame


def _map(fn, items: Sequence[Any], workers: int) -> list[Any]:
    """``[fn(item) ...]`` in order, on a thread pool (S3 calls are I/O bound)."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


# ---------------------------------------------------------------------------------------------
# Snapshot
# ---------------------------------------------------------------------------------------------


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


class NoFramesError(ValueError):
    """The window has no usable labeled frame: retrying cannot help until data arrives."""


def _no_frames_error(
    days: list[str], rejected: list[dict[str, str]], n_found: int
) -> NoFramesError:
    where = _describe_days(days)
    if not rejected:
        return NoFramesError(
            f"no labeled frames for days {where}: nothing under "
            f"{', '.join(storage.labeled_prefix(d) for d in days[:3])}{' …' if len(days) > 3 else ''}"
        )
    top = Counter(_category(r["reason"]) for r in rejected).most_common(3)
    examples = {}
    for r in rejected:
        examples.setdefault(_category(r["reason"]), r)
    detail = "; ".join(
        f"{cat} x{n} (e.g. {examples[cat]['key']}: {examples[cat]['reason']})" for cat, n in top
    )
    return NoFramesError(
        f"no valid labeled frames for days {where}: {len(rejected)} object(s) rejected "
        f"({n_found} frame(s) found); top reasons: {detail}"
    )


def _reject(key: str, reason: str) -> dict[str, str]:
    return {"key": key, "reason": reason}


def _load_frames(
    s3,
    bucket: str,
    gold: dict[str, Any],
    golden_version: str,
    days: list[str],
    spool: Path,
    workers: int,
) -> tuple[list[_Frame], list[_Frame], list[dict[str, str]]]:
    """Discover, read, check and spool the golden and window frames: ``(golden frames,
    window frames, rejected objects of the window)``. A golden set that is not intact (a
    file missing, unreadable or not matching its manifest) is an error."""
    gold_prefix = golden_set.golden_prefix(golden_version)
    golden_rejected: list[dict[str, str]] = []
    golden_frames = _discover(sorted(gold["files"]), gold_prefix, golden_rejected, golden=True)
    rejected: list[dict[str, str]] = []
    window_frames: list[_Frame] = []
    for day in days:
        prefix = storage.labeled_prefix(day)
        keys = [o["Key"] for o in storage.list_keys(s3, bucket, prefix)]
        window_frames.extend(_discover(keys, prefix, rejected))

    frames = golden_frames + window_frames
    _map(lambda i: _load(s3, bucket, frames[i], spool, i), range(len(frames)), workers)

    for frame in golden_frames:
        for key, sha in ((frame.image_key, frame.image_sha), (frame.label_key, frame.label_sha)):
            if frame.reason is None and gold["files"].get(key) != sha:
                frame.reject(key, "file differs from the golden set's manifest")
    golden_rejected += [_reject(f.reject_key, f.reason) for f in golden_frames if f.reason]
    if golden_rejected or len(golden_frames) * 2 != len(gold["files"]):
        first = golden_rejected[0] if golden_rejected else _reject(gold_prefix, "frames missing")
        raise ValueError(
            f"golden set {golden_version} at s3://{bucket}/{gold_prefix} is not intact: "
            f"{first['key']}: {first['reason']}"
        )
    rejected += [_reject(f.reject_key, f.reason) for f in window_frames if f.reason]
    return golden_frames, [f for f in window_frames if f.reason is None], rejected


def _assign_splits(
    golden_frames: list[_Frame],
    window_frames: list[_Frame],
    rejected: list[dict[str, str]],
    *,
    val_share: float,
    eval_share: float,
) -> list[tuple[_Frame, str]]:
    """``(frame, split)`` of every kept frame: golden frames -> eval; window frames by the
    hash of their stem, unless their stem is taken or their image bytes are already in the
    snapshot (a golden frame's above all: it would leak eval into training) -> rejected."""
    kept = [(frame, "eval") for frame in golden_frames]
    by_stem = {frame.stem: frame.image_key for frame in golden_frames}
    golden_images = {frame.image_sha: frame.image_key for frame in golden_frames}
    by_image: dict[str, str] = {}
    for frame in window_frames:
        if frame.stem in by_stem:
            reason = f"stem {frame.stem!r} already used by {by_stem[frame.stem]}"
        elif frame.image_sha in golden_images:
            reason = (
                f"identical to golden frame {golden_images[frame.image_sha]} "
                "(golden frames are eval-only)"
            )
        elif frame.image_sha in by_image:
            reason = f"same image bytes as {by_image[frame.image_sha]}"
        else:
            by_stem[frame.stem] = by_image[frame.image_sha] = frame.image_key
            kept.append((frame, split_of(frame.stem, val_share=val_share, eval_share=eval_share)))
            continue
        rejected.append(_reject(frame.image_key, f"{DUPLICATE}: {reason}"))
    return kept


def _write_snapshot(
    s3,
    bucket: str,
    manifest: dict[str, Any],
    local: dict[str, Path | bytes],
    workers: int,
) -> bool:
    """Write the snapshot's files, then its manifest; False when it existed already."""
    prefix = dataset_prefix(manifest["sha256"])
    manifest_key = prefix + MANIFEST
    if storage.exists(s3, bucket, manifest_key):
        return False
    # one listing instead of a HEAD per key: what an interrupted run left behind
    present = {
        o["Key"][len(prefix) :]: o["ETag"].strip('"') for o in storage.list_keys(s3, bucket, prefix)
    }

    def write(path: str) -> None:
        content = local[path]
        data = content if isinstance(content, bytes) else content.read_bytes()
        if path not in present:
            storage.put_bytes(s3, bucket, prefix + path, data, _content_type(path))
        elif present[path] != hashlib.md5(data, usedforsecurity=False).hexdigest():
            raise storage.WriteOnceViolation(
                f"s3://{bucket}/{prefix}{path} already exists with different content"
            )

    _map(write, sorted(manifest["files"]), workers)
    try:  # last: the manifest's presence marks a complete snapshot
        storage.put_json_once(s3, bucket, manifest_key, manifest)
    except storage.WriteOnceViolation:
        return False  # a concurrent request (other days, same content) finished first
    return True


def _record_request(s3, bucket: str, sha256: str, source_run: str, request: dict[str, Any]) -> str:
    """Write the provenance of one snapshot request; returns its key. A retry of the same
    run writes the same bytes (a no-op); should the same run id ever ask for something
    else, its record goes next to the first one instead of over it."""
    base = f"{dataset_prefix(sha256)}{REQUESTS_DIR}/{safe_run_name(source_run)}"
    key = f"{base}.json"
    try:
        storage.put_json_once(s3, bucket, key, request)
    except storage.WriteOnceViolation:
        key = f"{base}--{hashlib.sha256(storage.dumps_canonical(request)).hexdigest()[:12]}.json"
        storage.put_json_once(s3, bucket, key, request)
    return key


def snapshot_dataset(
    s3,
    bucket: str,
    *,
    days: Sequence[date | str],
    golden_version: str = golden_set.DEFAULT_VERSION,
    val_share: float = 0.2,
    eval_share: float = 0.2,
    source_run: str | None = None,
    max_workers: int = DEFAULT_WORKERS,
) -> SnapshotResult:
    """Snapshot the labeled frames of ``days`` plus golden set ``golden_version`` into
    ``s3://bucket/datasets/{sha256}/`` (see the module doc for the rules) and return it.

    Idempotent: the same inputs give the same sha256, and if that snapshot's manifest
    exists nothing of it is rewritten (``created=False``; the stored manifest is returned).
    The golden set must have been published (GoldenSetMissing otherwise). ``source_run``
    (an Airflow run id, …) is provenance only: recorded in ``requests/``, never hashed.
    ValueError: no days, bad shares, no valid frames in the window (naming the days and
    the top rejection reasons), an empty train or val split, or a golden set that does not
    match its manifest.
    """
    days = _check_days(days)
    val_share, eval_share = _check_shares(val_share, eval_share)
    if source_run is not None and (not isinstance(source_run, str) or not source_run):
        raise ValueError(f"source_run must be a non-empty string or None, got {source_run!r}")
    gold = golden_set.load_golden_set(s3, bucket, golden_version)
    created_from = {
        "days": days,
        "golden_version": golden_version,
        "val_share": val_share,
        "eval_share": eval_share,
    }

    with tempfile.TemporaryDirectory(prefix="driftloop-snapshot-") as tmp:
        golden_frames, window_frames, rejected = _load_frames(
            s3, bucket, gold, golden_version, days, Path(tmp), max_workers
        )
        kept = _assign_splits(
            golden_frames, window_frames, rejected, val_share=val_share, eval_share=eval_share
        )
        rejected.sort(key=lambda r: (r["key"], r["reason"]))
        n_window = len(kept) - len(golden_frames)
        if n_window == 0:
            raise _no_frames_error(days, rejected, len(window_frames))

        files: dict[str, str] = {}
        local: dict[str, Path | bytes] = {}
        sources: dict[str, str] = {}
        splits = dict.fromkeys(SPLITS, 0)
        backgrounds = dict.fromkeys(SPLITS, 0)
        class_counts = {split: dict.fromkeys(schema.CLASS_NAMES, 0) for split in SPLITS}
        for frame, split in kept:
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
                f"the split of {n_window} window frame(s) of days {_describe_days(days)} leaves "
                f"train={splits['train']} val={splits['val']} (val_share={val_share}, "
                f"eval_share={eval_share}): Ultralytics needs both; widen the window"
            )
        local[DATA_YAML] = data_yaml_bytes()
        files[DATA_YAML] = hashlib.sha256(local[DATA_YAML]).hexdigest()
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
            "rejected": rejected,
            "files": files,
            "sources": sources,
        }
        created = _write_snapshot(s3, bucket, manifest, local, max_workers)
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
        request_key = _record_request(s3, bucket, sha256, source_run, request)
    return SnapshotResult(
        sha256=sha256,
        uri=dataset_uri(bucket, sha256),
        manifest=manifest,
        counts=_counts(manifest),
        created=created,
        request_key=request_key,
    )


# ---------------------------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------------------------


def _parse_dataset_uri(uri: str) -> tuple[str, str, str]:
    bucket, key = storage.split_s3_uri(uri)
    match = re.fullmatch(rf"{storage.DATASETS_PREFIX}/([0-9a-f]{{64}})/?(?:{MANIFEST})?", key)
    if not match:
        raise ValueError(f"not a dataset snapshot URI (s3://bucket/datasets/<sha256>/): {uri!r}")
    return bucket, dataset_prefix(match.group(1)), match.group(1)


def load_manifest(s3, uri: str) -> dict[str, Any]:
    """The manifest of the snapshot at ``uri``; ValueError if there is none (incomplete)."""
    bucket, prefix, _ = _parse_dataset_uri(uri)
    data = _get(s3, bucket, prefix + MANIFEST)
    if data is None:
        raise ValueError(f"no {MANIFEST} under s3://{bucket}/{prefix}: not a complete snapshot")
    return json.loads(data)


def _safe_relpath(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return (
        bool(parts)
        and not PurePosixPath(path).is_absolute()
        and ".." not in parts
        and "\\" not in path
    )


def download_dataset(
    s3, uri: str, dest_dir: str | Path, *, max_workers: int = DEFAULT_WORKERS
) -> Path:
    """Copy the snapshot at ``uri`` to ``dest_dir`` and return that folder (resolved).

    Every file is checked against the manifest's sha256 (ValueError naming the first file
    that differs or is missing, in path order; such a file is never written), and the
    manifest against the snapshot's own hash. Files already present with the right bytes
    are not downloaded again; files in ``dest_dir`` that are not part of the snapshot are an
    error (they would end up in training). ``data.yaml``'s ``path`` is then set to the
    absolute folder, and ``manifest.json`` is copied next to it.
    """
    import yaml

    bucket, prefix, sha256 = _parse_dataset_uri(uri)
    manifest_bytes = _get(s3, bucket, prefix + MANIFEST)
    if manifest_bytes is None:
        raise ValueError(f"no {MANIFEST} under s3://{bucket}/{prefix}: not a complete snapshot")
    manifest = json.loads(manifest_bytes)
    files: dict[str, str] = manifest.get("files") or {}
    if manifest.get("sha256") != sha256 or listing_sha256(files) != sha256:
        raise ValueError(
            f"{MANIFEST} of s3://{bucket}/{prefix} does not match the snapshot hash {sha256}"
        )
    unsafe = [p for p in files if not _safe_relpath(p) or p == MANIFEST]
    if unsafe or DATA_YAML not in files:
        raise ValueError(
            f"{MANIFEST} of s3://{bucket}/{prefix} lists bad paths: {unsafe or 'no data.yaml'}"
        )

    dest = Path(dest_dir).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    stray = sorted(
        p.relative_to(dest).as_posix()
        for p in dest.rglob("*")
        if p.is_file()
        and p.relative_to(dest).as_posix() not in files
        and p.relative_to(dest).as_posix() != MANIFEST
        and p.suffix not in (".cache", ".part")  # Ultralytics' label caches, our partials
    )
    if stray:
        raise ValueError(f"{dest} holds files that are not part of snapshot {sha256}: {stray[:5]}")

    def fetch(path: str) -> str | None:
        """None when ``path`` is in place and verified, else why not."""
        target = dest / path
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == files[path]:
            return None
        data = _get(s3, bucket, prefix + path)
        if data is None:
            return "missing in S3"
        actual = hashlib.sha256(data).hexdigest()
        if actual != files[path]:
            return f"sha256 {actual} != manifest {files[path]}"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        partial.replace(target)
        return None

    for path, problem in zip(sorted(files), _map(fetch, sorted(files), max_workers), strict=True):
        if problem is not None:
            raise ValueError(f"snapshot {sha256}: file {path} failed verification: {problem}")

    for split in SPLITS:  # data.yaml points at existing folders even for an empty split
        (dest / "images" / split).mkdir(parents=True, exist_ok=True)
        (dest / "labels" / split).mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((dest / DATA_YAML).read_bytes())
    config["path"] = str(dest)
    (dest / DATA_YAML).write_text(yaml.safe_dump(config, sort_keys=False))
    (dest / MANIFEST).write_bytes(manifest_bytes)
    return dest
