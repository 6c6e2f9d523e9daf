"""A day's camera traffic: the frames the reference batch scorer (``driftloop serve-batch``)
scores, so that the inference logs after the first champion come from real model outputs.

:func:`traffic_files` gives ``frames/dt=D/<image_id>.png`` for ``frames_per_day`` frames and the
day's manifest ``frames/dt=D/_frames.jsonl`` (one JSON object a line, in capture order:
``image_id``, ``key``, ``ts`` (ISO 8601 UTC, spread uniformly over the day), ``camera_id``
drawn from the day's camera mix — :mod:`.scenarios`: the four baseline cameras, plus the new
``cam-05`` from the drift day of ``abrupt``). Layout: :mod:`driftloop.serving.layout`.

Frame ``i`` of day ``D`` is ``D-<i:04d>``. The first ``labeled_per_day`` frames ARE the day's
labeled frames: same ids, same cameras, same PNG bytes as ``labeled/dt=D/images/`` (their
render carries no camera look unless the world asks for ``camera_looks``: the model-quality
floors were calibrated on frames without; see :mod:`.frames`). Every other frame is a fresh scene of the
day (its lighting and class mix, :func:`.frames.sample_scene`) seen through its camera: the
camera's brightness offset and RGB tint (the constants the inference-log rows use,
:data:`.inference.CAMERA_BRIGHTNESS`, :data:`.inference.CAMERA_TINT`) are added to the
rendered pixels, so a new camera and the scenario's lighting are in the pixels the scorer
computes its features from. Same spec, same bytes; the day's other objects are unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import numpy as np

from driftloop.serving import layout
from driftloop_dev.synth.frames import (
    DEFAULT_SIZE,
    camera_look,
    day_scenes,
    draw_cameras,
    frame_stem,
    labeled_png,
    render,
    sample_scene,
    to_png,
)
from driftloop_dev.synth.inference import MICROS_PER_DAY, STREAM_TRAFFIC, day_rng
from driftloop_dev.synth.scenarios import WorldSpec
from driftloop_dev.synth.sinks import Sink

MAX_FRAMES_PER_DAY = 9999  # frame ids are D-0000 … D-9999
MANIFEST_CONTENT_TYPE = "application/x-ndjson"


def check_frames_per_day(spec: WorldSpec, frames_per_day: int) -> int:
    """``frames_per_day``: 0 (no traffic) or in [labeled_per_day, 9999]."""
    if isinstance(frames_per_day, bool) or not isinstance(frames_per_day, int):
        raise ValueError(f"frames_per_day must be an integer, got {frames_per_day!r}")
    if frames_per_day == 0:
        return 0
    low = max(1, spec.labeled_per_day)
    if not low <= frames_per_day <= MAX_FRAMES_PER_DAY:
        raise ValueError(
            f"frames_per_day must be 0 or in [labeled_per_day, {MAX_FRAMES_PER_DAY}] = "
            f"[{low}, {MAX_FRAMES_PER_DAY}] (the labeled frames are the first frames of the "
            f"day), got {frames_per_day}"
        )
    return frames_per_day


def _ts_text(micros: int) -> str:
    ts = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(micros))
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def traffic_files(
    spec: WorldSpec, day_index: int, frames_per_day: int, *, image_size: int = DEFAULT_SIZE
) -> list[tuple[str, bytes, str]]:
    """``(key, bytes, content type)`` of the day's traffic frames, the manifest last; [] when
    ``frames_per_day`` is 0."""
    n = check_frames_per_day(spec, frames_per_day)
    if n == 0:
        return []
    day = spec.date_of(day_index)
    text_day = day.isoformat()
    params = spec.day_params(day_index)
    rng = day_rng(spec, day_index, STREAM_TRAFFIC)
    cameras = draw_cameras(rng, params, n)
    day_start = (day - date(1970, 1, 1)).days * MICROS_PER_DAY
    # capture times spread over the day; the labeled frames (ids first) land anywhere in it
    ts = np.sort(rng.integers(0, MICROS_PER_DAY, n)) + day_start
    ts = ts[rng.permutation(n)]
    labeled = day_scenes(spec, day_index, image_size)
    files: list[tuple[str, bytes, str]] = []
    for i in range(n):
        image_id = frame_stem(text_day, i)
        if i < len(labeled):
            data = labeled_png(spec, labeled[i], cameras[i])  # byte for byte the labeled frame
        else:
            scene = sample_scene(rng, params, image_size)
            data = to_png(camera_look(render(scene), cameras[i]))
        files.append((layout.frame_key(day, image_id), data, "image/png"))
    lines = [
        json.dumps(
            {
                "image_id": frame_stem(text_day, i),
                "key": layout.frame_key(day, frame_stem(text_day, i)),
                "ts": _ts_text(ts[i]),
                "camera_id": cameras[i],
            },
            sort_keys=True,
        )
        for i in sorted(range(n), key=lambda i: (ts[i], i))
    ]
    manifest = "".join(line + "\n" for line in lines).encode()
    files.append((layout.manifest_key(day), manifest, MANIFEST_CONTENT_TYPE))
    return files


def _day_index(spec: WorldSpec, day: int | date | str) -> int:
    if isinstance(day, int) and not isinstance(day, bool):
        index = day
    else:
        try:
            when = day if isinstance(day, date) else date.fromisoformat(str(day))
        except ValueError:
            raise ValueError(f"day must be an index or YYYY-MM-DD, got {day!r}") from None
        index = (when - spec.start_date).days
    if not 0 <= index < spec.days:
        raise ValueError(f"day {day!r} is outside the world ({spec.start_date}..{spec.end_date})")
    return index


def write_traffic(
    sink: Sink,
    spec: WorldSpec,
    days: Iterable[int | date | str],
    frames_per_day: int,
    *,
    image_size: int = DEFAULT_SIZE,
) -> list[str]:
    """Write the traffic frames (and manifests) of the chosen ``days`` (indexes into the
    world or dates) to ``sink``; returns the manifests' keys. Nothing else is written: the
    demo writes the world's other days itself and lets the scorer log these."""
    check_frames_per_day(spec, frames_per_day)
    manifests = []
    for day in days:
        files = traffic_files(spec, _day_index(spec, day), frames_per_day, image_size=image_size)
        for key, data, content_type in files:
            sink.write(key, data, content_type)
        if files:
            manifests.append(files[-1][0])
    return manifests
