"""How far two models' detections agree on the same frames: the rollout guard's agreement F1.

Why a module of its own: in shadow there are no labels for most frames, but both models' boxes
are there; a subject that finds other objects than the baseline — or none where it found some
— shows it here first. :func:`agreement_f1` is, per frame, the F1 of the subject's boxes
against the baseline's: boxes of the same class with IoU >= 0.5 are matched greedily, highest
IoU first, each box at most once; a frame where both found nothing agrees fully (1). It runs
on all frames of a stage at once (the candidate pairs of all frames, in batches), with the
IoU of :func:`driftloop.evaluation.matching.box_iou` taken pair by pair (:func:`paired_iou`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: candidate box pairs per batch in :func:`agreement_f1`: bounds memory at any number of frames
PAIR_BUDGET = 1_000_000
AGREEMENT_IOU = 0.5


@dataclass(frozen=True, eq=False)
class FrameBoxes:
    """The boxes of n frames, flat: frame i owns rows ``offsets[i]:offsets[i + 1]``."""

    offsets: np.ndarray  # (n + 1,) int64
    classes: np.ndarray  # (m,) int64
    confidence: np.ndarray  # (m,) float64
    xyxy: np.ndarray  # (m, 4) float64, image pixels

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(xyxy, confidence, classes) of frame ``i``."""
        rows = slice(self.offsets[i], self.offsets[i + 1])
        return self.xyxy[rows], self.confidence[rows], self.classes[rows]


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a[k]`` with ``b[k]`` (xyxy): the diagonal of
    :func:`driftloop.evaluation.matching.box_iou`, for pairs of boxes of many frames at once."""
    lt = np.maximum(a[:, :2], b[:, :2])
    rb = np.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clip(0).prod(axis=1)
    union = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1) + (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    union = union - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _greedy_matches(s: np.ndarray, b: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """Subject boxes matched when candidate pairs are taken highest IoU first (ties: lower
    subject, then baseline index), each box at most once. Computed as rounds of mutual best
    pairs — a pair that is the best remaining one of both its boxes is one the greedy pass
    takes — so each round is vectorised and few rounds are needed."""
    order = np.lexsort((b, s, -iou))
    s, b = s[order], b[order]
    matched = []
    while s.size:
        first_s = np.zeros(s.size, dtype=bool)
        first_s[np.unique(s, return_index=True)[1]] = True
        first_b = np.zeros(b.size, dtype=bool)
        first_b[np.unique(b, return_index=True)[1]] = True
        mutual = first_s & first_b
        matched.append(s[mutual])
        keep = ~(np.isin(s, s[mutual]) | np.isin(b, b[mutual]))
        s, b = s[keep], b[keep]
    return np.concatenate(matched) if matched else np.zeros(0, dtype=np.int64)


def _by_frame_and_class(boxes: FrameBoxes, classes: np.ndarray):
    """Each box's (frame, class) group id, and the boxes' order grouped (stable)."""
    frame = np.repeat(np.arange(boxes.counts.size), boxes.counts)
    group = frame * max(1, classes.size) + np.searchsorted(classes, boxes.classes)
    return group, np.argsort(group, kind="stable")


def agreement_f1(subject: FrameBoxes, baseline: FrameBoxes) -> np.ndarray:
    """(n,) per-frame F1 of the subject's boxes against the baseline's: ``2 m / (a + b)`` with
    ``m`` greedy matches (same class, IoU >= 0.5, highest IoU first), ``a``/``b`` the two box
    counts; 1 when both models found nothing. Candidate pairs are the boxes of one frame and
    class, made in batches of groups."""
    n = subject.counts.size
    if baseline.counts.size != n:
        raise ValueError(f"agreement needs the same frames: {n} subject, {baseline.counts.size}")
    classes = np.union1d(subject.classes, baseline.classes)
    s_group, s_order = _by_frame_and_class(subject, classes)
    b_group, b_order = _by_frame_and_class(baseline, classes)
    groups = np.union1d(s_group, b_group)  # the (frame, class) groups with a box
    offsets = []
    for group in (s_group, b_group):
        size = np.bincount(np.searchsorted(groups, group), minlength=groups.size)
        offsets.append(np.concatenate([[0], np.cumsum(size)]).astype(np.int64))
    a, b = np.diff(offsets[0]), np.diff(offsets[1])
    s_xyxy, b_xyxy = subject.xyxy[s_order], baseline.xyxy[b_order]
    matches = np.zeros(groups.size, dtype=np.int64)
    pairs_before = np.concatenate([[0], np.cumsum(a * b)])
    start = 0
    while start < groups.size:
        stop = int(np.searchsorted(pairs_before, pairs_before[start] + PAIR_BUDGET, "right")) - 1
        stop = min(groups.size, max(stop, start + 1))
        group_of_s = np.repeat(np.arange(start, stop), a[start:stop])
        per_s = b[group_of_s]
        s_pair = np.repeat(np.arange(offsets[0][start], offsets[0][stop]), per_s)
        within = np.arange(s_pair.size) - np.repeat(np.cumsum(per_s) - per_s, per_s)
        b_pair = np.repeat(offsets[1][group_of_s], per_s) + within
        iou = paired_iou(s_xyxy[s_pair], b_xyxy[b_pair])
        close = iou >= AGREEMENT_IOU - 1e-12
        won = _greedy_matches(s_pair[close], b_pair[close], iou[close])
        matches += np.bincount(
            np.searchsorted(offsets[0], won, side="right") - 1, minlength=groups.size
        )
        start = stop
    per_frame = np.bincount(groups // max(1, classes.size), weights=matches, minlength=n)
    total = subject.counts + baseline.counts
    return np.where(total > 0, 2.0 * per_frame / np.where(total > 0, total, 1), 1.0)
