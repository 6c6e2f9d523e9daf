"""COCO matching of detections to ground truth and the per-image records
(driftloop.evaluation.matching); compared with pycocotools end to end in test_coco_map."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.evaluation.coco_map import IOU_THRESHOLDS, ImageRecord, map_scores, per_class_scores
from driftloop.evaluation.detector import Detections
from driftloop.evaluation.matching import image_record, match_image

GT = np.array([[10.0, 10.0, 30.0, 30.0], [50.0, 50.0, 70.0, 90.0]])
GT_CLASSES = np.array([0, 1])


def _match(boxes, scores, classes):
    return match_image(
        np.asarray(boxes, float), np.asarray(scores, float), np.asarray(classes), GT, GT_CLASSES
    )


def test_perfect_prediction_is_tp_at_every_threshold():
    flags = _match(GT, [0.9, 0.8], [0, 1])
    assert flags == [[True] * 10, [True] * 10]


def test_shifted_box_is_tp_only_at_low_thresholds():
    # 20x20 box shifted 2 px right: IoU = 18*20 / (2*400 - 360) = 360/440 = 0.818
    flags = _match([[12.0, 10.0, 32.0, 30.0]], [0.9], [0])
    expected = [t <= 360 / 440 for t in IOU_THRESHOLDS]
    assert flags == [expected]
    assert expected.count(True) == 7  # 0.50 … 0.80


def test_duplicate_is_fp_and_the_higher_confidence_wins():
    # input order is not confidence order: the 0.95 one must take the GT box
    flags = _match([[10.0, 10.0, 30.0, 30.0], [10.0, 10.0, 30.0, 31.0]], [0.5, 0.95], [0, 0])
    assert flags[1] == [True] * 10
    assert flags[0] == [False] * 10


def test_wrong_class_and_empty_cases():
    assert _match(GT[:1], [0.9], [1]) == [[False] * 10]  # right box, wrong class
    assert match_image(np.zeros((0, 4)), [], [], GT, GT_CLASSES) == []
    no_gt = match_image(GT, [0.9, 0.8], [0, 1], np.zeros((0, 4)), np.zeros(0, int))
    assert no_gt == [[False] * 10, [False] * 10]


def test_greedy_prefers_the_best_iou_unmatched_gt():
    gt = np.array([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0]])
    classes = np.array([0, 0])
    # first prediction sits on GT 1 exactly; the second is closer to GT 0 than GT 1
    flags = match_image(
        np.array([[2.0, 0.0, 12.0, 10.0], [0.0, 0.0, 10.0, 10.0]]),
        np.array([0.9, 0.8]),
        np.array([0, 0]),
        gt,
        classes,
    )
    assert flags == [[True] * 10, [True] * 10]


def test_records_are_coco_map_records():
    det = Detections(
        boxes=np.array([[10.0, 10.0, 30.0, 30.0], [50.0, 50.0, 70.0, 90.0], [0, 0, 5, 5]]),
        scores=np.array([0.9, 0.8, 0.1]),
        classes=np.array([0, 1, 1]),
    )
    record = image_record("img-1", det, GT, GT_CLASSES)
    assert record["image_id"] == "img-1"
    assert record["gt_counts"] == {"0": 1, "1": 1}
    assert record["predictions"][0] == [0.9, [True] * 10, 0]
    parsed = ImageRecord.from_dict(record)
    assert parsed.to_dict() == record
    map50, map50_95 = map_scores([record])
    assert map50 == pytest.approx(1.0)
    assert map50_95 == pytest.approx(1.0)
    per_class = per_class_scores([record])
    assert set(per_class) == {0, 1}
    assert per_class[1]["ap50"] == pytest.approx(1.0)
