"""Where the batch scorer reads and writes in S3 (DESIGN.md's data contracts).

``frames/dt=D/<image_id>.png`` + ``frames/dt=D/_frames.jsonl``: the day's traffic, written by
the camera side (the synthetic world here), one JSON object a line (``image_id``, ``key``,
``ts``, ``camera_id``). ``inference/dt=D/part-serve-<sequence>.parquet``: the day's inference
log. ``serving/dt=D/part-<rollout_id or none>-<sequence>-<token>.parquet``: one row per
(frame, model that scored it), read by the rollout guard. Pure strings, no imports: the
synthetic world and the rollout evidence share these names.
"""

from __future__ import annotations

from datetime import date

from driftloop.contracts import storage

FRAMES_PREFIX = "frames"
SERVING_PREFIX = "serving"
FRAME_MANIFEST = "_frames.jsonl"


def frames_prefix(day: date | str) -> str:
    return f"{FRAMES_PREFIX}/dt={storage.day_str(day)}/"


def frame_key(day: date | str, image_id: str) -> str:
    return f"{frames_prefix(day)}{image_id}.png"


def manifest_key(day: date | str) -> str:
    return f"{frames_prefix(day)}{FRAME_MANIFEST}"


def serving_prefix(day: date | str) -> str:
    return f"{SERVING_PREFIX}/dt={storage.day_str(day)}/"


def serving_part_key(day: date | str, rollout_id: str | None, sequence: int, token: str) -> str:
    return f"{serving_prefix(day)}part-{rollout_id or 'none'}-{sequence:08d}-{token}.parquet"


def inference_part_key(day: date | str, sequence: int) -> str:
    return f"{storage.inference_prefix(day)}part-serve-{sequence:08d}.parquet"
