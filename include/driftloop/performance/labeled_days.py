"""A labeled day's frames, read and checked the way a snapshot reads them, with their cameras.

``labeled/dt=D/images/<stem>.*`` + ``labels/<stem>.txt`` are paired, read, checked and
spooled by :mod:`driftloop.retrain.frames` (the same rules as a training snapshot), once the
day is complete (its ``_SUCCESS`` marker, :func:`labeled_days`); whatever
breaks a rule is *rejected* with its key and reason, never dropped silently. Each kept
frame's camera comes from the day's ``frames.jsonl`` (:mod:`driftloop.contracts.labeled`;
a frame it does not list is camera ``unknown``). A ``frames.jsonl`` that cannot be read
rejects the day: its frames cannot be attributed to cameras, and the day stays unmeasured
until the index is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from driftloop.contracts import storage
from driftloop.contracts.labeled import (
    FramesIndexError,
    frames_index_key,
    info_of,
    read_frames_index,
)
from driftloop.contracts.storage import SUCCESS_MARKER
from driftloop.retrain.frames import (
    DEFAULT_WORKERS,
    Frame,
    discover_frames,
    load_frame,
    map_in_threads,
    rejection,
)


@dataclass
class LabeledDay:
    """The kept frames of one day (spooled under ``folder``, ``image_file`` / ``label_file``
    side by side, so :func:`driftloop.evaluation.detector.image_label_pairs` finds them), the
    camera of each, and the objects rejected."""

    day: str
    folder: Path
    frames: list[Frame] = field(default_factory=list)
    cameras: list[str] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)

    def cameras_of(self, records: list[dict]) -> list[str]:
        """The camera of each scored record (its ``image_id`` is the spooled file's stem)."""
        by_file = {
            f.image_file.stem: camera
            for f, camera in zip(self.frames, self.cameras, strict=True)
            if f.image_file is not None
        }
        return [by_file[r["image_id"]] for r in records]


def labeled_days(s3, bucket: str, days: list[date]) -> list[date]:
    """The days of ``days`` whose labels are complete: ``labeled/dt=D/_SUCCESS`` exists
    (written last by the label import). A day still being labeled is measured once it is
    complete, never half-way (a measured day is not measured again)."""
    return [
        d for d in days if storage.exists(s3, bucket, storage.labeled_prefix(d) + SUCCESS_MARKER)
    ]


def load_labeled_day(
    s3, bucket: str, day: date | str, spool: Path, *, workers: int = DEFAULT_WORKERS
) -> LabeledDay:
    """Read, check and spool the day's labeled frames under ``spool`` (a fresh folder)."""
    day = storage.day_str(day)
    out = LabeledDay(day, spool)
    try:
        index = read_frames_index(s3, bucket, day)
    except (FramesIndexError, UnicodeDecodeError) as err:
        out.rejected.append(rejection(frames_index_key(day), f"unreadable frames index: {err}"))
        return out
    prefix = storage.labeled_prefix(day)
    keys = [o["Key"] for o in storage.list_keys(s3, bucket, prefix)]
    found = discover_frames(keys, prefix, out.rejected)
    spool.mkdir(parents=True, exist_ok=True)
    map_in_threads(lambda i: load_frame(s3, bucket, found[i], spool, i), range(len(found)), workers)
    out.rejected += [rejection(f.reject_key, f.reason) for f in found if f.reason]
    out.frames = [f for f in found if f.reason is None]
    out.cameras = [info_of(index, f.stem).camera_id for f in out.frames]
    return out
