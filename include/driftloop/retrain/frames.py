"""The frames of a dataset snapshot: reading, checking and splitting labeled images.

A frame is an image and a YOLO label file with the same stem (``images/<stem>.png`` +
``labels/<stem>.txt``). :func:`load_frames` finds the golden set's and the window's frames,
reads and checks each one (:func:`parse_label`, :func:`check_image`) and spools it to local
disk; :func:`assign_splits` puts each kept frame in ``train``, ``val`` or ``eval`` by the hash
of its stem (:func:`split_of`). A window frame knows its camera, source and labeling batch
from its day's ``frames.jsonl`` (:mod:`driftloop.contracts.labeled`); the day's ``_SUCCESS``
marker and index are no frames. A frame that breaks a rule is *rejected* with a reason
``"<category>: <detail>"``, never dropped silently. The rules themselves are in
:mod:`driftloop.retrain.snapshot`.

Imports: PIL (image checks) and botocore (S3 errors) load on use.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from driftloop.contracts import schema, storage
from driftloop.contracts.labeled import (
    FRAMES_INDEX,
    UNKNOWN_CAMERA,
    LabeledFrameInfo,
    info_of,
    read_frames_index,
)
from driftloop.evaluation import golden as golden_set

SPLITS: tuple[str, ...] = ("train", "val", "eval")
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
IMAGE_FORMATS: tuple[str, ...] = ("PNG", "JPEG")
LABEL_EXTENSION = ".txt"
SPLIT_SALT = "driftloop-split/1"
#: slack for boxes touching the frame edge (labels carry 6 decimals)
BOX_TOLERANCE = 1e-6
DEFAULT_WORKERS = 8

SPLIT_RULE = (
    f"window frames: u = int(sha256('{SPLIT_SALT}:' + stem)[:8 bytes], big-endian) / 2**64; "
    "u < eval_share -> eval, u < eval_share + val_share -> val, else train; "
    "golden frames: always eval"
)

# rejection categories (the part of a reason before the first ": ")
MISSING_LABEL = "missing label"
MISSING_IMAGE = "missing image"
UNREADABLE_IMAGE = "unreadable image"
MALFORMED_LABEL = "malformed label"
DUPLICATE = "duplicate"
UNEXPECTED_OBJECT = "unexpected object"


class LabelError(ValueError):
    """A YOLO label file that breaks the label rules."""


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


def category_of(reason: str) -> str:
    return reason.split(": ", 1)[0]


def describe_days(days: Sequence[str]) -> str:
    if len(days) <= 6:
        return ", ".join(days)
    return f"{days[0]} .. {days[-1]} ({len(days)} days)"


@dataclass
class Frame:
    stem: str
    image_key: str
    label_key: str
    # filled by load_frame
    reason: str | None = None
    reject_key: str | None = None
    image_sha: str = ""
    label_sha: str = ""
    image_file: Path | None = None
    label_file: Path | None = None
    boxes: list[tuple[int, float, float, float, float]] = field(default_factory=list)
    # from the day's frames.jsonl (driftloop.contracts.labeled); golden frames keep the defaults
    camera_id: str = UNKNOWN_CAMERA
    source: str = "feedback"
    batch: str | None = None
    frame_id: str | None = None

    @property
    def ext(self) -> str:
        return PurePosixPath(self.image_key).suffix.lower()

    def reject(self, key: str, reason: str) -> Frame:
        self.reject_key, self.reason = key, reason
        return self

    def describe(self, info: LabeledFrameInfo) -> Frame:
        """Take camera, source, batch and frame id from the day's index entry ``info``."""
        self.camera_id, self.source = info.camera_id, info.source
        self.batch, self.frame_id = info.batch, info.frame_id
        return self

    @property
    def info(self) -> LabeledFrameInfo:
        return LabeledFrameInfo(self.stem, self.camera_id, self.source, self.frame_id, self.batch)


_GOLDEN_OWN = (golden_set.MANIFEST,)
#: a labeled day's own objects: its frame index and its completeness marker
_DAY_OWN = (FRAMES_INDEX, storage.SUCCESS_MARKER)


def discover_frames(
    keys: Iterable[str], prefix: str, rejected: list[dict[str, str]], *, golden: bool = False
) -> list[Frame]:
    """Pair ``images/<stem>.<ext>`` and ``labels/<stem>.txt`` under ``prefix`` into frames;
    whatever cannot be paired goes to ``rejected``."""
    images: dict[str, list[str]] = {}
    labels: dict[str, list[str]] = {}
    for key in keys:
        rel = key[len(prefix) :]
        if not rel or rel.endswith("/") or rel in (_GOLDEN_OWN if golden else _DAY_OWN):
            continue  # folder markers; the golden set's manifest; a day's index and _SUCCESS
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
    frames: list[Frame] = []
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
            frames.append(Frame(stem, image_keys[0], label_keys[0]))
    return frames


def get_object_or_none(s3, bucket: str, key: str) -> bytes | None:
    """An object's bytes, or None when it is gone (other errors propagate: retry the task)."""
    from driftloop.contracts.stores import absent_if_not_found

    return absent_if_not_found(lambda: storage.get_bytes(s3, bucket, key))


def load_frame(s3, bucket: str, frame: Frame, spool: Path, index: int) -> Frame:
    """Read, check and spool one frame to local disk (memory stays bounded)."""
    image = get_object_or_none(s3, bucket, frame.image_key)
    if image is None:
        return frame.reject(
            frame.label_key, f"{MISSING_IMAGE}: {frame.image_key} disappeared while reading"
        )
    label = get_object_or_none(s3, bucket, frame.label_key)
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


def map_in_threads(fn, items: Sequence[Any], workers: int) -> list[Any]:
    """``[fn(item) ...]`` in order, on a thread pool (S3 calls are I/O bound)."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


class NoFramesError(ValueError):
    """The window has no usable labeled frame: retrying cannot help until data arrives."""


def no_frames_error(days: list[str], rejected: list[dict[str, str]], n_found: int) -> NoFramesError:
    where = describe_days(days)
    if not rejected:
        return NoFramesError(
            f"no labeled frames for days {where}: nothing under "
            f"{', '.join(storage.labeled_prefix(d) for d in days[:3])}{' …' if len(days) > 3 else ''}"
        )
    top = Counter(category_of(r["reason"]) for r in rejected).most_common(3)
    examples = {}
    for r in rejected:
        examples.setdefault(category_of(r["reason"]), r)
    detail = "; ".join(
        f"{cat} x{n} (e.g. {examples[cat]['key']}: {examples[cat]['reason']})" for cat, n in top
    )
    return NoFramesError(
        f"no valid labeled frames for days {where}: {len(rejected)} object(s) rejected "
        f"({n_found} frame(s) found); top reasons: {detail}"
    )


def rejection(key: str, reason: str) -> dict[str, str]:
    return {"key": key, "reason": reason}


def load_frames(
    s3,
    bucket: str,
    gold: dict[str, Any],
    golden_version: str,
    days: list[str],
    spool: Path,
    workers: int,
) -> tuple[list[Frame], list[Frame], list[dict[str, str]]]:
    """Discover, read, check and spool the golden and window frames: ``(golden frames,
    window frames, rejected objects of the window)``. A window frame carries its camera,
    source and batch from its day's ``frames.jsonl`` (one it does not list: camera
    ``unknown``, source ``feedback``; a malformed index raises ``FramesIndexError``). A golden
    set that is not intact (a file missing, unreadable or not matching its manifest) is an
    error."""
    gold_prefix = golden_set.golden_prefix(golden_version)
    golden_rejected: list[dict[str, str]] = []
    golden_frames = discover_frames(
        sorted(gold["files"]), gold_prefix, golden_rejected, golden=True
    )
    rejected: list[dict[str, str]] = []
    window_frames: list[Frame] = []
    for day in days:
        prefix = storage.labeled_prefix(day)
        keys = [o["Key"] for o in storage.list_keys(s3, bucket, prefix)]
        index = read_frames_index(s3, bucket, day) if prefix + FRAMES_INDEX in keys else {}
        window_frames.extend(
            frame.describe(info_of(index, frame.stem))
            for frame in discover_frames(keys, prefix, rejected)
        )

    frames = golden_frames + window_frames
    map_in_threads(
        lambda i: load_frame(s3, bucket, frames[i], spool, i), range(len(frames)), workers
    )

    for frame in golden_frames:
        for key, sha in ((frame.image_key, frame.image_sha), (frame.label_key, frame.label_sha)):
            if frame.reason is None and gold["files"].get(key) != sha:
                frame.reject(key, "file differs from the golden set's manifest")
    golden_rejected += [rejection(f.reject_key, f.reason) for f in golden_frames if f.reason]
    if golden_rejected or len(golden_frames) * 2 != len(gold["files"]):
        first = golden_rejected[0] if golden_rejected else rejection(gold_prefix, "frames missing")
        raise ValueError(
            f"golden set {golden_version} at s3://{bucket}/{gold_prefix} is not intact: "
            f"{first['key']}: {first['reason']}"
        )
    rejected += [rejection(f.reject_key, f.reason) for f in window_frames if f.reason]
    return golden_frames, [f for f in window_frames if f.reason is None], rejected


def assign_splits(
    golden_frames: list[Frame],
    window_frames: list[Frame],
    rejected: list[dict[str, str]],
    *,
    val_share: float,
    eval_share: float,
) -> list[tuple[Frame, str]]:
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
        rejected.append(rejection(frame.image_key, f"{DUPLICATE}: {reason}"))
    return kept
