"""Ground truth of a day's traffic frames: the scene (hence the YOLO labels) behind each frame
:mod:`.traffic` renders, without rendering or changing any frame.

A traffic frame is a rendered scene, so its true boxes are known: :func:`traffic_scenes`
replays the draws of :func:`.traffic.traffic_files` (same day stream, same order: cameras,
capture times, their permutation, then one scene per frame after the labeled ones) and
returns each frame's scene and camera. The labeled frames (the first ``labeled_per_day``)
are the day's labeled scenes (:func:`.frames.day_scenes`). ``tests/unit/test_synth_truth.py``
checks that rendering these scenes gives the traffic frames byte for byte, so a change in
:mod:`.traffic`'s draw order fails there instead of silently mislabeling frames.

Used by ``bench/label_value.py``: its "labelers" return the true labels of the frames picked.
"""

from __future__ import annotations

import numpy as np

from driftloop_dev.synth.frames import (
    DEFAULT_SIZE,
    Scene,
    day_scenes,
    draw_cameras,
    frame_stem,
    sample_scene,
    yolo_labels,
)
from driftloop_dev.synth.inference import MICROS_PER_DAY, STREAM_TRAFFIC, day_rng
from driftloop_dev.synth.scenarios import WorldSpec
from driftloop_dev.synth.traffic import check_frames_per_day


def traffic_scenes(
    spec: WorldSpec, day_index: int, frames_per_day: int, *, image_size: int = DEFAULT_SIZE
) -> dict[str, tuple[Scene, str]]:
    """``{image_id: (scene, camera_id)}`` of the day's ``frames_per_day`` traffic frames."""
    n = check_frames_per_day(spec, frames_per_day)
    if n == 0:
        return {}
    day = spec.date_of(day_index).isoformat()
    params = spec.day_params(day_index)
    rng = day_rng(spec, day_index, STREAM_TRAFFIC)
    cameras = draw_cameras(rng, params, n)
    rng.integers(0, MICROS_PER_DAY, n)  # capture times (traffic.py draws them here)
    rng.permutation(n)
    labeled = day_scenes(spec, day_index, image_size)
    out: dict[str, tuple[Scene, str]] = {}
    for i in range(n):
        scene = labeled[i] if i < len(labeled) else sample_scene(rng, params, image_size)
        out[frame_stem(day, i)] = (scene, cameras[i])
    return out


def traffic_labels(
    spec: WorldSpec, day_index: int, frames_per_day: int, *, image_size: int = DEFAULT_SIZE
) -> dict[str, str]:
    """``{image_id: YOLO label text}`` of the day's traffic frames."""
    scenes = traffic_scenes(spec, day_index, frames_per_day, image_size=image_size)
    return {image_id: yolo_labels(scene) for image_id, (scene, _) in scenes.items()}


def uniform_pick(frame_ids, budget: int, seed: int, exclude=()) -> list[str]:
    """``budget`` frame ids drawn uniformly without replacement (seeded; all when fewer),
    sorted; ``exclude`` never drawn. The random arm of ``bench/label_value.py``."""
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    excluded = set(exclude)
    pool = sorted({str(f) for f in frame_ids} - excluded)
    if budget >= len(pool):
        return pool
    rng = np.random.Generator(np.random.PCG64(seed))
    return sorted(pool[i] for i in rng.choice(len(pool), size=budget, replace=False))
