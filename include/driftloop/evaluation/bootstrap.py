"""Paired bootstrap confidence interval of a detection-metric delta (candidate − champion).

Both models are scored on the *same* evaluation images; the unit of resampling is the image.
A bootstrap resample draws image indices with replacement and uses the *same* indices for
both models (paired), so image difficulty cancels out of the delta. Each resample's mAP is
the COCO mAP of :mod:`driftloop.evaluation.coco_map`, evaluated with integer image weights
instead of copies (see there); the interval is the percentile interval of the resampled
deltas. Progress ("bootstrap 400/1000 resamples") goes to this module's logger.

numpy is imported inside functions so that importing this module (e.g. for :class:`DeltaCI`
in the gate) stays cheap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from driftloop.evaluation.coco_map import (
    METRICS,
    ImageRecord,
    as_records,
    flatten_records,
    thresholds_for,
    weighted_map,
)
from driftloop.evaluation.progress import ProgressLog

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "METRICS",
    "DeltaCI",
    "paired_bootstrap_delta",
    "paired_bootstrap_mean_delta",
    "percentile_interval",
    "resample_counts",
]

log = logging.getLogger(__name__)

#: resamples evaluated per batch: bounds memory, and sets how often progress is logged
RESAMPLE_BATCH = 100


@dataclass(frozen=True)
class DeltaCI:
    """Point estimate and percentile bootstrap interval of ``candidate − champion``."""

    point: float
    low: float
    high: float
    n_images: int
    n_resamples: int
    metric: str = ""
    confidence: float = 0.95
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return float(x) if x is not None and math.isfinite(x) else None

        return {
            "metric": self.metric,
            "point": num(self.point),
            "low": num(self.low),
            "high": num(self.high),
            "confidence": self.confidence,
            "n_images": self.n_images,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DeltaCI:
        def num(x: Any) -> float:
            return float("nan") if x is None else float(x)

        return cls(
            point=num(raw.get("point")),
            low=num(raw.get("low")),
            high=num(raw.get("high")),
            n_images=int(raw.get("n_images", 0)),
            n_resamples=int(raw.get("n_resamples", 0)),
            metric=str(raw.get("metric", "")),
            confidence=float(raw.get("confidence", 0.95)),
            seed=raw.get("seed"),
        )


# --------------------------------------------------------------------------------------------
# bootstrap


def resample_counts(n: int, n_resamples: int, seed: int | None = 0) -> np.ndarray:
    """(n_resamples, n) multiplicities of each image in each resample: image indices drawn
    uniformly with replacement, ``n`` per resample (``numpy.random.default_rng(seed)``)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    flat = (idx + (np.arange(n_resamples) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n)


def percentile_interval(samples: Sequence[float], confidence: float) -> tuple[float, float]:
    """Percentile interval (numpy's linear interpolation, as scipy's ``method='percentile'``).
    NaN bounds when any sample is NaN: an incomplete bootstrap never yields a usable CI."""
    import numpy as np

    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(low), float(high)


def _check_args(n: int, n_resamples: int, confidence: float) -> None:
    if n < 1:
        raise ValueError("the evaluation set is empty")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _paired(
    n: int,
    stat: Callable[[np.ndarray], np.ndarray],
    *,
    n_resamples: int,
    confidence: float,
    seed: int | None,
    metric: str,
) -> DeltaCI:
    """``stat(weights (b, n)) -> (b,) delta`` evaluated on the full set and on the resamples
    (in batches of :data:`RESAMPLE_BATCH` resamples, so memory stays bounded; each resample
    is a row of its own, so the batching does not change the numbers)."""
    import numpy as np

    _check_args(n, n_resamples, confidence)
    point = float(stat(np.ones((1, n), dtype=np.int64))[0])
    counts = resample_counts(n, n_resamples, seed)
    log.info(
        "bootstrap of the %s delta: %d resamples of %d images (point estimate %+.4f)",
        metric,
        n_resamples,
        n,
        point,
    )
    progress = ProgressLog(log, "bootstrap", n_resamples, "resamples")
    deltas = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, RESAMPLE_BATCH):
        stop = min(start + RESAMPLE_BATCH, n_resamples)
        deltas[start:stop] = stat(counts[start:stop])
        progress.update(stop)
    low, high = percentile_interval(deltas, confidence)
    log.info(
        "bootstrap of the %s delta: %+.4f, %.0f %% interval [%+.4f, %+.4f]",
        metric,
        point,
        100 * confidence,
        low,
        high,
    )
    return DeltaCI(point, low, high, n, n_resamples, metric, confidence, seed)


def paired_bootstrap_delta(
    candidate_records: Sequence[ImageRecord | Mapping[str, Any]],
    champion_records: Sequence[ImageRecord | Mapping[str, Any]],
    *,
    metric: str,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> DeltaCI:
    """Paired percentile-bootstrap CI of ``metric(candidate) − metric(champion)``.

    ``candidate_records[i]`` and ``champion_records[i]`` must be the same image (same
    ground-truth counts, and the same ``image_id`` where both carry one).
    """
    thr = thresholds_for(metric)
    cand = as_records(candidate_records)
    champ = as_records(champion_records)
    if len(cand) != len(champ):
        raise ValueError(
            f"paired bootstrap needs the same images: {len(cand)} candidate records, "
            f"{len(champ)} champion records"
        )
    for i, (a, b) in enumerate(zip(cand, champ, strict=True)):
        if a.image_id is not None and b.image_id is not None and a.image_id != b.image_id:
            raise ValueError(f"record {i}: image {a.image_id!r} vs {b.image_id!r}")
        if a.gt_counts != b.gt_counts:
            raise ValueError(
                f"record {i} ({a.image_id or b.image_id or 'no id'}): ground truth differs "
                f"between candidate {a.gt_counts} and champion {b.gt_counts}"
            )
    classes: set[int] = set()
    for r in (*cand, *champ):
        classes.update(r.gt_counts)
        classes.update(int(c) for c in r.classes)
    ordered = sorted(classes)
    flat_cand = flatten_records(cand, ordered)
    flat_champ = flatten_records(champ, ordered)

    def stat(weights: np.ndarray) -> np.ndarray:
        return weighted_map(flat_cand, weights, thr) - weighted_map(flat_champ, weights, thr)

    return _paired(
        len(cand),
        stat,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
        metric=metric,
    )


def paired_bootstrap_mean_delta(
    candidate_values: Sequence[float],
    champion_values: Sequence[float],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
    metric: str = "mean",
) -> DeltaCI:
    """The same paired bootstrap for a per-image scalar (e.g. per-image F1): CI of
    ``mean(candidate) − mean(champion)``."""
    import numpy as np

    a = np.asarray(candidate_values, dtype=np.float64).reshape(-1)
    b = np.asarray(champion_values, dtype=np.float64).reshape(-1)
    if a.size != b.size:
        raise ValueError(f"paired values differ in length: {a.size} vs {b.size}")
    diff = a - b

    def stat(weights: np.ndarray) -> np.ndarray:
        return (weights @ diff) / weights.sum(axis=1)

    return _paired(
        a.size, stat, n_resamples=n_resamples, confidence=confidence, seed=seed, metric=metric
    )
