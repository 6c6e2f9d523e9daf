"""COCO matching of one image's detections to its ground truth, and its per-image record.

At each IoU threshold 0.50:0.05:0.95 separately, predictions in order of decreasing
confidence each take the unmatched ground-truth box of their class with the highest IoU, if
that IoU is at least the threshold (pycocotools' ``evaluateImg`` with one area range and no
crowd boxes). The result is the record :mod:`driftloop.evaluation.coco_map` scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from driftloop.evaluation.coco_map import IOU_THRESHOLDS

if TYPE_CHECKING:  # pragma: no cover
    from driftloop.evaluation.detector import Detections


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: ``[len(a), len(b)]``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clip(0).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_image(
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    pred_classes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> list[list[bool]]:
    """COCO-style greedy matching, separately at each IoU threshold: predictions in order of
    decreasing confidence each take the unmatched ground-truth box of their class with the
    highest IoU, if that IoU ≥ the threshold (a true positive); otherwise they are false
    positives. Returns, per prediction (in the input order), one flag per threshold."""
    n_pred = len(pred_scores)
    tp = np.zeros((n_pred, len(iou_thresholds)), dtype=bool)
    if n_pred == 0 or len(gt_classes) == 0:
        return tp.tolist()
    ious = box_iou(pred_boxes, gt_boxes)
    same = np.asarray(pred_classes)[:, None] == np.asarray(gt_classes)[None, :]
    ious = np.where(same, ious, -1.0)
    order = np.argsort(-np.asarray(pred_scores, dtype=np.float64), kind="stable")
    for t, threshold in enumerate(iou_thresholds):
        taken = np.zeros(len(gt_classes), dtype=bool)
        for i in order:
            candidates = np.where(taken, -1.0, ious[i])
            j = int(candidates.argmax())
            if candidates[j] >= threshold - 1e-12:
                taken[j] = True
                tp[i, t] = True
    return tp.tolist()


def image_record(
    image_id: str, detections: Detections, gt_boxes: np.ndarray, gt_classes: np.ndarray
) -> dict[str, Any]:
    """The per-image record of :mod:`driftloop.evaluation.coco_map` (``ImageRecord.to_dict``
    format, JSON-serialisable): ``{"image_id", "gt_counts": {"class": n}, "predictions":
    [[confidence, [tp@0.50, …, tp@0.95], class], …]}``, predictions by decreasing confidence."""
    flags = match_image(
        detections.boxes, detections.scores, detections.classes, gt_boxes, gt_classes
    )
    classes, counts = np.unique(np.asarray(gt_classes, dtype=np.int64), return_counts=True)
    return {
        "image_id": image_id,
        "gt_counts": {str(int(c)): int(n) for c, n in zip(classes, counts, strict=True)},
        "predictions": [
            [float(s), [bool(f) for f in tp], int(c)]
            for s, tp, c in zip(detections.scores, flags, detections.classes, strict=True)
        ],
    }
