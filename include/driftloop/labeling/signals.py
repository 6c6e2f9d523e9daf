"""The labeling queue's per-frame signals, from arrays (numpy; no I/O).

Definitions and how they combine: :mod:`driftloop.labeling.select`. Distances are computed
in blocks of :data:`BLOCK_ROWS` frames, so memory stays at ``BLOCK_ROWS x reference rows``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from driftloop.promotion.rollout_agreement import agreement_f1

BLOCK_ROWS = 512
DISTANCES = ("cosine", "euclidean")


def uncertainty(confidence: np.ndarray) -> np.ndarray:
    """``1 - |2c - 1|`` of each confidence ``c`` (clipped to [0, 1]; NaN counts as 0)."""
    c = np.clip(np.nan_to_num(np.asarray(confidence, dtype=np.float64), nan=0.0), 0.0, 1.0)
    return 1.0 - np.abs(2.0 * c - 1.0)


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def _pairwise(a: np.ndarray, b: np.ndarray, distance: str) -> np.ndarray:
    if distance == "cosine":
        return np.clip(1.0 - _unit(a) @ _unit(b).T, 0.0, 2.0)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.clip(squared, 0.0, None))


def knn_distance(
    rows: np.ndarray, reference: np.ndarray, k: int, distance: str, *, skip_self: bool = False
) -> np.ndarray:
    """Each row's mean distance to its ``k`` nearest reference rows; ``skip_self``: ``rows``
    IS ``reference`` and each row's own (first-nearest) distance is left out."""
    if distance not in DISTANCES:
        raise ValueError(f"embedding distance must be one of {DISTANCES}, got {distance!r}")
    rows = np.asarray(rows, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if rows.ndim != 2 or reference.ndim != 2 or rows.shape[1] != reference.shape[1]:
        raise ValueError(f"embeddings of different shapes: {rows.shape} vs {reference.shape}")
    take = min(k + int(skip_self), reference.shape[0])
    if take - int(skip_self) < 1:
        raise ValueError(f"the reference has {reference.shape[0]} embeddings: too few for k={k}")
    out = np.empty(rows.shape[0], dtype=np.float64)
    for start in range(0, rows.shape[0], BLOCK_ROWS):
        d = _pairwise(rows[start : start + BLOCK_ROWS], reference, distance)
        nearest = np.sort(np.partition(d, take - 1, axis=1)[:, :take], axis=1)
        out[start : start + BLOCK_ROWS] = nearest[:, int(skip_self) :].mean(axis=1)
    return out


def novelty(rows: np.ndarray, reference: np.ndarray, k: int, distance: str) -> np.ndarray:
    """The share of reference embeddings whose own k-NN distance (leave-one-out) is below the
    row's k-NN distance to the reference: a percentile in [0, 1]."""
    own = np.sort(knn_distance(reference, reference, k, distance, skip_self=True))
    mine = knn_distance(rows, reference, k, distance)
    return np.searchsorted(own, mine, side="left") / own.size


def new_camera(cameras: Iterable[str], known: Iterable[str]) -> np.ndarray:
    """Whether each camera is absent from ``known`` (the reference's cameras)."""
    seen = set(known)
    return np.array([c not in seen for c in cameras], dtype=bool)


def disagreement(paired) -> dict[str, float]:
    """``{image_id: 1 - agreement F1}`` of the paired frames
    (:class:`driftloop.promotion.rollout_records.PairedFrames`) where neither model failed."""
    if len(paired) == 0:
        return {}
    f1 = agreement_f1(paired.subject.boxes, paired.baseline.boxes)
    ok = ~(paired.subject.error | paired.baseline.error)
    return {
        str(i): float(1.0 - f) for i, f, good in zip(paired.image_id, f1, ok, strict=True) if good
    }


def lookup(values: Mapping[str, float], ids: Iterable[str], default: float = 0.0) -> np.ndarray:
    return np.array([values.get(i, default) for i in ids], dtype=np.float64)
