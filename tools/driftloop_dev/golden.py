"""The embedded stack's golden set: rendered by the synthetic world, published write-once.

Production curates its golden set; here frame ``i`` of version ``v1`` is drawn by the synthetic
frame renderer from a fixed seed over a spread of conditions (normal, dim and dark lighting;
baseline and ball-heavy class mix). Readers use :mod:`driftloop.evaluation.golden`.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from driftloop.contracts import storage
from driftloop.evaluation.golden import (
    DEFAULT_VERSION,
    FORMAT,
    frame_keys,
    golden_manifest_key,
    golden_prefix,
    golden_stem,
    load_golden_manifest,
)

DEFAULT_N = 48
#: the seed of golden set v1 (changing it would make a different set: use a new version)
GOLDEN_SEED = 0x601DE7
IMAGE_SIZE = 160


@dataclass(frozen=True)
class Condition:
    """One cell of the golden set's spread of conditions (see :data:`CONDITIONS`)."""

    name: str
    brightness_delta: float  # added to the baseline pitch brightness (0..255 units)
    contrast_scale: float
    p_ball_top: float  # share of ball-framed scenes


def _conditions() -> tuple[Condition, ...]:
    from driftloop_dev.synth.scenarios import (
        ABRUPT_CONTRAST_SCALE,
        BRIGHTNESS_DROP,
        CLASS_MIX_P_BALL_TOP,
        P_BALL_TOP,
    )

    lighting = (
        ("normal", 0.0, 1.0),
        ("dim", -BRIGHTNESS_DROP / 2, 1.0),
        ("dark", -BRIGHTNESS_DROP, ABRUPT_CONTRAST_SCALE),
    )
    mixes = (("mixed", P_BALL_TOP), ("ball-heavy", CLASS_MIX_P_BALL_TOP))
    return tuple(
        Condition(f"{light}/{mix}", delta, contrast, p_ball)
        for light, delta, contrast in lighting
        for mix, p_ball in mixes
    )


#: frame i of a golden set is drawn under ``CONDITIONS[i % len(CONDITIONS)]``
CONDITIONS: tuple[Condition, ...] = _conditions()


def golden_files(
    *, version: str = DEFAULT_VERSION, n: int = DEFAULT_N, seed: int = GOLDEN_SEED
) -> tuple[list[tuple[str, bytes, str]], dict[str, Any]]:
    """Render a golden set in memory: ``([(key, bytes, content type), ...], manifest)``.

    Pure and deterministic: frame ``i`` depends only on ``(seed, i)`` and its condition, so
    the same arguments give the same scenes (and, with the same numpy/PIL/zlib, the same
    bytes). Callers normally want :func:`publish_golden_set`.
    """
    import numpy as np

    from driftloop_dev.synth.frames import render, sample_scene, to_png, yolo_labels
    from driftloop_dev.synth.scenarios import DayParams

    prefix = golden_prefix(version)
    if isinstance(n, bool) or not isinstance(n, int) or n < len(CONDITIONS):
        raise ValueError(
            f"n must be an integer >= {len(CONDITIONS)} (one frame a condition), got {n!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    files: list[tuple[str, bytes, str]] = []
    frames: list[dict[str, Any]] = []
    for i in range(n):
        cond = CONDITIONS[i % len(CONDITIONS)]
        params = DayParams(
            brightness_delta=cond.brightness_delta,
            contrast_scale=cond.contrast_scale,
            p_ball_top=cond.p_ball_top,
        )
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(i,))))
        scene = sample_scene(rng, params, IMAGE_SIZE)
        stem = golden_stem(version, i)
        files.append((f"{prefix}images/{stem}.png", to_png(render(scene)), "image/png"))
        files.append((f"{prefix}labels/{stem}.txt", yolo_labels(scene).encode(), "text/plain"))
        frames.append(
            {
                "stem": stem,
                "condition": cond.name,
                "brightness": round(scene.brightness, 3),
                "boxes": {
                    "ball": sum(o.cls == 0 for o in scene.objects),
                    "player": sum(o.cls == 1 for o in scene.objects),
                },
            }
        )
    manifest = {
        "format": FORMAT,
        "version": version,
        "n": n,
        "seed": seed,
        "image_size": IMAGE_SIZE,
        "generator": "driftloop_dev.synth.frames.sample_scene + render, "
        "rng = PCG64(SeedSequence(seed, spawn_key=(i,))), condition = CONDITIONS[i % 6]",
        "conditions": [asdict(c) for c in CONDITIONS],
        "frames": frames,
        "files": {key: hashlib.sha256(data).hexdigest() for key, data, _ in files},
    }
    return files, manifest


def publish_golden_set(
    s3,
    bucket: str,
    *,
    version: str = DEFAULT_VERSION,
    n: int = DEFAULT_N,
    seed: int = GOLDEN_SEED,
) -> list[str]:
    """Make sure golden set ``version`` exists in ``bucket``; return its image and label keys.

    If the set's manifest exists nothing is written (the set never changes); its ``n`` and
    ``seed`` must then match the arguments, else ValueError (a different set needs a new
    version). Otherwise the frames are rendered and written with write-once keys, the
    manifest last, so an interrupted run completes on the next call.
    """
    existing = load_golden_manifest(s3, bucket, version)
    if existing is not None:
        if existing.get("n") != n or existing.get("seed") != seed:
            raise ValueError(
                f"golden set {version} already exists at s3://{bucket}/{golden_prefix(version)} "
                f"with n={existing.get('n')} seed={existing.get('seed')}, not n={n} seed={seed}; "
                "a golden set never changes: use a new version"
            )
        return frame_keys(existing)
    files, manifest = golden_files(version=version, n=n, seed=seed)
    for key, data, content_type in files:
        storage.put_once(s3, bucket, key, data, content_type)
    storage.put_json_once(s3, bucket, golden_manifest_key(version), manifest)
    return frame_keys(manifest)
