"""A labeled day's mAP, over all cameras and per camera, each with a bootstrap CI over images.

The numbers are :mod:`driftloop.evaluation.coco_map`'s (pycocotools' 101-point AP, mean over
the classes with ground truth), the definition the promotion gate scores the champion with,
so a day's ``map50_95`` is comparable with the champion's own evaluation. The CI is the
percentile interval of ``map50_95`` over image resamples (:func:`bootstrap_interval`: the
resampling of :mod:`driftloop.evaluation.bootstrap`, one model instead of a pair, integer
image weights instead of copies). A slice without ground truth has no mAP (``None``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from driftloop.evaluation.bootstrap import RESAMPLE_BATCH, percentile_interval, resample_counts
from driftloop.evaluation.coco_map import (
    as_records,
    flatten_records,
    map_scores,
    thresholds_for,
    weighted_map,
)
from driftloop.performance.tables import ALL_CAMERAS

#: resamples and level of a day's CI; the seed makes a re-run give the same interval
N_RESAMPLES = 1000
CONFIDENCE = 0.95
SEED = 0


def finite_or_none(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def bootstrap_interval(
    records: Sequence[Mapping[str, Any]],
    *,
    metric: str = "map50_95",
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int | None = SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric`` over image resamples of ``records``
    (NaN bounds when a resample has no ground truth at all, or the set is empty)."""
    import numpy as np

    if not records:
        return float("nan"), float("nan")
    thr = thresholds_for(metric)
    flat = flatten_records(as_records(records))
    counts = resample_counts(len(records), n_resamples, seed)
    values = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, RESAMPLE_BATCH):
        stop = min(start + RESAMPLE_BATCH, n_resamples)
        values[start:stop] = weighted_map(flat, counts[start:stop], thr)
    return percentile_interval(values, confidence)


def slice_scores(records: Sequence[Mapping[str, Any]], **bootstrap: Any) -> dict[str, Any]:
    """``n_frames``, ``map50``, ``map50_95`` and its CI (``map50_95_low/high``) of records."""
    if not records:
        return dict.fromkeys(("map50", "map50_95", "map50_95_low", "map50_95_high"), None) | {
            "n_frames": 0
        }
    map50, map50_95 = map_scores(records)
    low, high = (float("nan"), float("nan"))
    if math.isfinite(map50_95):
        low, high = bootstrap_interval(records, **bootstrap)
    return {
        "n_frames": len(records),
        "map50": finite_or_none(map50),
        "map50_95": finite_or_none(map50_95),
        "map50_95_low": finite_or_none(low),
        "map50_95_high": finite_or_none(high),
    }


def camera_scores(
    records: Sequence[Mapping[str, Any]], cameras: Sequence[str], **bootstrap: Any
) -> dict[str, dict[str, Any]]:
    """``{camera: scores}`` of a day: :data:`ALL_CAMERAS` over every record, then each camera
    over its own (``cameras[i]`` is the camera of ``records[i]``), cameras sorted."""
    if len(cameras) != len(records):
        raise ValueError(f"{len(cameras)} cameras for {len(records)} records")
    out = {ALL_CAMERAS: slice_scores(records, **bootstrap)}
    for camera in sorted(set(cameras)):
        if camera == ALL_CAMERAS:
            raise ValueError(f"camera id {ALL_CAMERAS!r} is reserved for every camera together")
        own = [r for r, c in zip(records, cameras, strict=True) if c == camera]
        out[camera] = slice_scores(own, **bootstrap)
    return out
