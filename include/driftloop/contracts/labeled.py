"""What a labeled day knows about its frames beyond pixels and boxes: ``frames.jsonl``.

``labeled/dt=YYYY-MM-DD/frames.jsonl`` holds one JSON object per line and frame::

    {"stem": "2026-11-30-0007", "camera_id": "cam-03", "source": "queue",
     "frame_id": "...", "batch": "labeling/2026-11-29/"}

``stem`` names ``images/<stem>.*`` and ``labels/<stem>.txt``; ``camera_id`` is the camera
that took it, which per-camera mAP (performance slices, the gate's no-slice-may-regress
check) needs; ``source`` is ``queue`` (chosen by the labeling queue, ``batch`` says which)
or ``feedback`` (any other labeled frame). ``frame_id`` links the frame to its inference-log
row where there is one. The file is optional: a day without it has frames of camera
:data:`UNKNOWN_CAMERA` from source ``feedback``. A malformed line is an error naming the key
and the line, never skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from driftloop.contracts import storage

FRAMES_INDEX = "frames.jsonl"
FRAME_SOURCES = ("queue", "feedback")
UNKNOWN_CAMERA = "unknown"


@dataclass(frozen=True)
class LabeledFrameInfo:
    stem: str
    camera_id: str = UNKNOWN_CAMERA
    source: str = "feedback"
    frame_id: str | None = None
    batch: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class FramesIndexError(ValueError):
    """A ``frames.jsonl`` that cannot be read: names the key and the line."""


def frames_index_key(day: date | str) -> str:
    return storage.labeled_prefix(day) + FRAMES_INDEX


def parse_frames_index(data: bytes, key: str) -> dict[str, LabeledFrameInfo]:
    """``{stem: info}`` from a ``frames.jsonl``; a bad line raises :class:`FramesIndexError`."""
    frames: dict[str, LabeledFrameInfo] = {}
    for number, line in enumerate(data.decode("utf-8", errors="strict").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{key} line {number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise FramesIndexError(f"{where}: not JSON ({err.msg})") from None
        info = _info_of(entry, where)
        if info.stem in frames:
            raise FramesIndexError(f"{where}: stem {info.stem!r} is listed twice")
        frames[info.stem] = info
    return frames


def _info_of(entry: Any, where: str) -> LabeledFrameInfo:
    if not isinstance(entry, Mapping):
        raise FramesIndexError(f"{where}: expected an object, got {type(entry).__name__}")
    unknown = set(entry) - {"stem", "camera_id", "source", "frame_id", "batch"}
    if unknown:
        raise FramesIndexError(f"{where}: unknown field(s) {sorted(unknown)}")
    for field in ("stem", "camera_id"):
        if not isinstance(entry.get(field), str) or not entry[field]:
            raise FramesIndexError(f"{where}: {field!r} must be a non-empty string")
    source = entry.get("source", "feedback")
    if source not in FRAME_SOURCES:
        raise FramesIndexError(f"{where}: source must be one of {FRAME_SOURCES}, got {source!r}")
    for field in ("frame_id", "batch"):
        if entry.get(field) is not None and not isinstance(entry[field], str):
            raise FramesIndexError(f"{where}: {field!r} must be a string")
    return LabeledFrameInfo(
        entry["stem"], entry["camera_id"], source, entry.get("frame_id"), entry.get("batch")
    )


def frames_index_bytes(frames: Iterable[LabeledFrameInfo]) -> bytes:
    """The ``frames.jsonl`` of ``frames``, sorted by stem (the same frames give the same bytes)."""
    lines = [json.dumps(f.to_dict(), sort_keys=True) for f in sorted(frames, key=lambda f: f.stem)]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def read_frames_index(s3, bucket: str, day: date | str) -> dict[str, LabeledFrameInfo]:
    """The day's index; ``{}`` only when the day has none (S3 "not found"), any other error
    propagates."""
    from driftloop.contracts.stores import absent_if_not_found

    key = frames_index_key(day)
    data = absent_if_not_found(lambda: storage.get_bytes(s3, bucket, key))
    return {} if data is None else parse_frames_index(data, key)


def info_of(index: Mapping[str, LabeledFrameInfo], stem: str) -> LabeledFrameInfo:
    """A frame's info; a frame the index does not list is camera ``unknown``, ``feedback``."""
    return index.get(stem) or LabeledFrameInfo(stem)
