"""Scored evaluation sets for the mAP and bootstrap tests: random records, the perfect
detector, and pycocotools' accumulate written out plainly as a reference."""

from __future__ import annotations

import numpy as np

from driftloop.evaluation.coco_map import IOU_THRESHOLDS, ImageRecord

T = len(IOU_THRESHOLDS)


def ref_ap(tp_sorted, n_gt):
    if n_gt == 0:
        return float("nan")
    tp_sum = fp_sum = 0
    precision, recall = [], []
    for flag in tp_sorted:
        tp_sum += bool(flag)
        fp_sum += not bool(flag)
        precision.append(tp_sum / (tp_sum + fp_sum))
        recall.append(tp_sum / n_gt)
    for i in range(len(precision) - 1, 0, -1):
        if precision[i] > precision[i - 1]:
            precision[i - 1] = precision[i]
    rec_thrs = np.linspace(0.0, 1.00, 101, endpoint=True)
    total = 0.0
    for r in rec_thrs:
        idx = next((i for i, x in enumerate(recall) if x >= r), None)
        total += precision[idx] if idx is not None else 0.0
    return total / 101


def ref_map(records, thresholds):
    classes = sorted({c for r in records for c in r.gt_counts})
    per_threshold = []
    for t in thresholds:
        aps = []
        for c in classes:
            n_gt = sum(r.gt_counts.get(c, 0) for r in records)
            if n_gt == 0:
                continue
            items = [
                (float(conf), bool(tp[t]))
                for r in records
                for conf, tp, k in zip(r.confidence, r.tp, r.classes, strict=True)
                if k == c
            ]
            items.sort(key=lambda x: -x[0])  # stable: image order on ties
            aps.append(ref_ap([f for _, f in items], n_gt))
        per_threshold.append(sum(aps) / len(aps))
    return sum(per_threshold) / len(per_threshold)


def random_records(n, rng, *, n_classes=3, max_preds=12, skill=0.6, gt=None):
    """Random scored images: TP flags are monotone in the IoU threshold, better-ranked
    predictions are likelier to be right."""
    records = []
    for i in range(n):
        counts = gt[i] if gt is not None else {c: int(rng.integers(0, 4)) for c in range(n_classes)}
        m = int(rng.integers(0, max_preds + 1))
        conf = rng.random(m)
        cls = rng.integers(0, n_classes, m)
        hit = rng.random(m) < skill * conf
        reach = rng.integers(0, T + 1, m)
        tp = hit[:, None] & (np.arange(T)[None, :] < reach[:, None])
        records.append(ImageRecord(conf, tp, cls, counts, f"img{i}"))
    return records


def perfect(record):
    """The ideal detector on ``record``'s ground truth: every GT box found, nothing else."""
    preds = [
        (0.9 - 0.01 * j, [True] * T, c)
        for c, k in sorted(record.gt_counts.items())
        for j in range(k)
    ]
    return ImageRecord.from_predictions(preds, record.gt_counts, record.image_id)
